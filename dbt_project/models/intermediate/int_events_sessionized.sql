-- One row per event of a human user, with sessions rebuilt from activity: a new session starts
-- after var('session_gap_minutes') of silence. session_id is stable across rebuilds.
{{ config(**day_partitioned('reported_date')) }}

{% set start = rebuild_from(ref('int_events_cleaned'), 'reported_date') %}

with events as (
    select e.*
    from {{ ref('int_events_cleaned') }} e
    inner join {{ ref('int_users_classified') }} u on e.user_id = u.user_id and not u.is_bot
    {% if is_incremental() %}
    -- one day of context, for sessions that run past midnight
    where e.reported_date >= {{ add_days(-1, start) }}
    {% endif %}
),

gaps as (
    select
        *,
        case
            when {{ micros_between(
                "lag(event_time) over (partition by user_id order by event_time, event_id)",
                'event_time') }} < {{ var('session_gap_minutes') * 60 * 1000000 }}
            then 0 else 1
        end as starts_session
    from events
),

numbered as (
    select
        *,
        sum(starts_session) over (
            partition by user_id order by event_time, event_id rows between unbounded preceding and current row
        ) as session_number
    from gaps
),

sessions as (
    select
        *,
        min(event_time) over (partition by user_id, session_number) as session_start
    from numbered
)

select
    event_id,
    event_time,
    cast(event_time as date) as event_date,
    reported_date,
    user_id,
    {{ dbt.hash(dbt.concat(['user_id', "'|'", 'cast(session_start as ' ~ dbt.type_string() ~ ')'])) }} as session_id,
    session_start,
    source_session_id,
    event_type,
    item_id,
    request_id,
    position,
    price,
    quantity,
    clock_corrected,
    _loaded_at
from sessions
{% if is_incremental() %}
where reported_date >= {{ start }}
{% endif %}
