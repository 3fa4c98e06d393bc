-- One row per item shown in a served list, with its graded label (3 purchase, 2 add_to_cart,
-- 1 click, 0 nothing within the label window). query_id is the served list: the training group.
{{ config(materialized='external') }}

with impressions as (
    select * from {{ ref('int_impressions_labeled') }}
)

select
    request_id as query_id,
    user_id,
    item_id,
    request_time as event_timestamp,
    surface,
    query,
    query_norm,
    position,
    label
from impressions
