-- One row per user with events: peak activity per minute, and whether that makes them a bot.
with events as (
    select * from {{ ref('int_events_cleaned') }}
),

per_minute as (
    select user_id, {{ dbt.date_trunc('minute', 'event_time') }} as minute, count(*) as events
    from events
    group by all
),

classified as (
    select
        user_id,
        cast(sum(events) as bigint) as events,
        cast(max(events) as bigint) as peak_events_per_minute,
        max(events) >= {{ var('bot_events_per_minute') }} as is_bot
    from per_minute
    group by user_id
)

select * from classified
