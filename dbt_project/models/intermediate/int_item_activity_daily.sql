-- One row per item and day with activity: interactions by type and impressions.
with events as (
    select * from {{ ref('int_events_sessionized') }}
),

impressions as (
    select * from {{ ref('int_impressions_labeled') }}
),

event_counts as (
    select
        item_id,
        event_date as activity_date,
        {{ event_type_counts() }},
        0 as impressions
    from events
    group by all
),

impression_counts as (
    select item_id, request_date as activity_date, 0, 0, 0, 0, 0, count(*)
    from impressions
    group by all
),

combined as (
    select
        item_id,
        activity_date,
        cast(sum(views) as bigint) as views,
        cast(sum(clicks) as bigint) as clicks,
        cast(sum(carts) as bigint) as carts,
        cast(sum(favorites) as bigint) as favorites,
        cast(sum(purchases) as bigint) as purchases,
        cast(sum(impressions) as bigint) as impressions
    from (select * from event_counts union all select * from impression_counts) unioned
    group by all
)

select * from combined
