-- One row per item: its current catalog attributes (from the catalog snapshot) and when it first
-- appeared.
with current_items as (
    select * from {{ ref('items_snapshot') }} where dbt_valid_to is null
),

first_seen as (
    select item_id, min(valid_from) as first_seen_at from {{ ref('int_item_versions') }} group by item_id
)

select
    c.item_id,
    c.title,
    c.category_path,
    c.category_top,
    c.brand,
    c.price,
    c.updated_at,
    f.first_seen_at
from current_items c
inner join first_seen f on c.item_id = f.item_id
