-- One row per item version, valid from its `updated_at` until the next version's.
with items as (
    select * from {{ ref('stg_shop__items') }}
),

versioned as (
    select
        item_id,
        title,
        category_path,
        category_top,
        brand,
        price,
        updated_at as valid_from,
        lead(updated_at) over (partition by item_id order by updated_at) as valid_to,
        min(updated_at) over (partition by item_id) as first_seen_at
    from items
)

select * from versioned
