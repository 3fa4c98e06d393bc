-- One row per item version: the catalog attributes a ranker reads about any item, active or not,
-- known from the moment the version appeared (event_timestamp = its valid_from), so a
-- point-in-time join reads the version current at the request.
{{ config(materialized='external') }}

with versions as (
    select * from {{ ref('int_item_versions') }}
)

select
    item_id,
    valid_from as event_timestamp,
    title,
    brand,
    category_path,
    category_top,
    price
from versions
