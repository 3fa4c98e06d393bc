-- One row per item shown in a served list, with its graded label (3 purchase, 2 add_to_cart,
-- 1 click, 0 nothing within the label window). query_id is the served list: the training group.
-- Only lists whose label window closed by the data horizon (the end of the last day with events):
-- a list served later (by a service running past the events, or in the last minutes of that
-- day) is not known to be a 0 yet; it comes with the build that has the events after it.
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
where {{ dbt.dateadd('minute', var('label_window_minutes'), 'request_time') }} <= {{ midnight(data_horizon()) }}
