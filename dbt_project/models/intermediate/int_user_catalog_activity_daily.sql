-- One row per user, top-level category, brand and day with activity: interactions and
-- purchases, by the current catalog attributes of the items (null when unknown).
with events as (
    select * from {{ ref('int_events_sessionized') }}
),

items as (
    select item_id, category_top, brand from {{ ref('int_item_versions') }} where valid_to is null
)

select
    e.user_id,
    i.category_top,
    i.brand,
    e.event_date as activity_date,
    cast(count(*) as bigint) as interactions,
    cast(count(*) filter (where e.event_type = 'purchase') as bigint) as purchases
from events e
left join items i on e.item_id = i.item_id
group by all
