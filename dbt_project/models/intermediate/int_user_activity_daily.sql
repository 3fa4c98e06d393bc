-- One row per user, category and day with activity: interactions by type, impressions and
-- purchase prices. Items missing from the catalog count under a null category.
with events as (
    select * from {{ ref('int_events_sessionized') }}
),

impressions as (
    select * from {{ ref('int_impressions_labeled') }}
),

categories as (
    select item_id, category_path from {{ ref('int_item_versions') }} where valid_to is null
),

event_counts as (
    select
        e.user_id,
        c.category_path,
        e.event_date as activity_date,
        count(*) as interactions,
        {{ event_type_counts('e.event_type') }},
        count(e.price) filter (where e.event_type = 'purchase') as priced_purchases,
        sum(e.price) filter (where e.event_type = 'purchase') as purchase_price_sum,
        sum(e.price * e.price) filter (where e.event_type = 'purchase') as purchase_price_sq_sum,
        max(e.event_time) as last_event_at,
        0 as impressions
    from events e
    left join categories c on e.item_id = c.item_id
    group by all
),

impression_counts as (
    select
        i.user_id, c.category_path, i.request_date as activity_date,
        0, 0, 0, 0, 0, 0, 0, null, null, null,
        count(*)
    from impressions i
    left join categories c on i.item_id = c.item_id
    group by all
),

combined as (
    select
        user_id,
        category_path,
        activity_date,
        cast(sum(interactions) as bigint) as interactions,
        cast(sum(views) as bigint) as views,
        cast(sum(clicks) as bigint) as clicks,
        cast(sum(carts) as bigint) as carts,
        cast(sum(favorites) as bigint) as favorites,
        cast(sum(purchases) as bigint) as purchases,
        cast(sum(priced_purchases) as bigint) as priced_purchases,
        cast(sum(purchase_price_sum) as double) as purchase_price_sum,
        cast(sum(purchase_price_sq_sum) as double) as purchase_price_sq_sum,
        max(last_event_at) as last_event_at,
        cast(sum(impressions) as bigint) as impressions
    from (select * from event_counts union all select * from impression_counts) unioned
    group by all
)

select * from combined
