-- One row per distinct event: re-sent duplicates dropped, skewed clocks of list interactions
-- corrected to the list's time. Partitioned by the day the event was reported for.
{{ config(**day_partitioned('reported_date')) }}

with events as (
    select * from {{ ref('stg_shop__events') }}
    {% if is_incremental() %}
    where reported_date >= {{ rebuild_from(ref('stg_shop__events'), 'reported_date') }}
    {% endif %}
),

served_lists as (
    select request_id, min(request_time) as request_time
    from {{ ref('stg_shop__requests') }}
    group by request_id
),

flagged as (
    select
        *,
        {{ dbt.datediff(
            "lag(event_time) over (partition by user_id, item_id, event_type, request_id order by event_time, event_id)",
            'event_time', 'second') }} as seconds_since_same_event
    from events
),

deduplicated as (
    select * from flagged
    where seconds_since_same_event is null
       or seconds_since_same_event >= {{ var('duplicate_window_seconds') }}
),

deskewed as (
    select
        e.event_id,
        case
            when l.request_time is not null
                and (e.event_time < l.request_time
                     or e.event_time > {{ dbt.dateadd('hour', var('max_request_delay_hours'), 'l.request_time') }})
            then l.request_time
            else e.event_time
        end as event_time,
        e.event_time as reported_event_time,
        e.reported_date,
        e.user_id,
        e.source_session_id,
        e.event_type,
        e.item_id,
        e.request_id,
        e.position,
        e.price,
        e.quantity,
        e._loaded_at
    from deduplicated e
    left join served_lists l on e.request_id = l.request_id
)

select
    *,
    event_time <> reported_event_time as clock_corrected
from deskewed
