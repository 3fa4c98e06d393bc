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

matched as (
    select r.request_id, r.position, max(i.grade) as label
    from requests r
    inner join interactions i
        on i.user_id = r.user_id
        and i.item_id = r.item_id
        and i.event_time >= r.request_time
        and i.event_time < {{ dbt.dateadd('minute', var('label_window_minutes'), 'r.request_time') }}
    group by r.request_id, r.position
),

labeled as (
    select
        r.request_id,
        r.position,
        r.request_time,
        r.request_date,
        r.user_id,
        r.source_session_id,
        r.surface,
        r.query,
        r.query_norm,
        r.item_id,
        cast(coalesce(m.label, 0) as integer) as label,
        r._loaded_at
    from requests r
    left join matched m on m.request_id = r.request_id and m.position = r.position
)

select * from labeled
