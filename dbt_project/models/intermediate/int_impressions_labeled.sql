-- One row per item shown in a served list (to a human user), with its graded label: the best
-- interaction with that item by that user within var('label_window_minutes') of the list:
-- 3 purchase, 2 add_to_cart, 1 click (or favorite), 0 nothing.
{{ config(**day_partitioned('request_date')) }}

{% set window_days = (var('label_window_minutes') // 1440) + 1 %}

with requests as (
    select r.*
    from {{ ref('stg_shop__requests') }} r
    inner join {{ ref('int_users_classified') }} u on r.user_id = u.user_id and not u.is_bot
    {% if is_incremental() %}
    where r.request_date >= least(
        {{ rebuild_from(ref('stg_shop__requests'), 'request_date') }},
        -- new interactions label lists served up to the label window earlier
        {{ add_days(-window_days, rebuild_from(ref('int_events_sessionized'), 'event_date')) }}
    )
    {% endif %}
),

interactions as (
    select user_id, item_id, event_time,
        case event_type
            when 'purchase' then 3
            when 'add_to_cart' then 2
            when 'click' then 1
            when 'favorite' then 1
            else 0
        end as grade
    from {{ ref('int_events_sessionized') }}
    where event_type <> 'view'
),

labeled as (
    select
        r.request_id,
        r.position,
        max(r.request_time) as request_time,
        max(r.request_date) as request_date,
        max(r.user_id) as user_id,
        max(r.source_session_id) as source_session_id,
        max(r.surface) as surface,
        max(r.query) as query,
        max(r.query_norm) as query_norm,
        max(r.item_id) as item_id,
        cast(coalesce(max(i.grade), 0) as integer) as label,
        max(r._loaded_at) as _loaded_at
    from requests r
    left join interactions i
        on i.user_id = r.user_id
        and i.item_id = r.item_id
        and i.event_time >= r.request_time
        and i.event_time < {{ dbt.dateadd('minute', var('label_window_minutes'), 'r.request_time') }}
    group by r.request_id, r.position
)

select * from labeled
