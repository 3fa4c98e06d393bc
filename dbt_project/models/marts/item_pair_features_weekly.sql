-- One row per item, neighbour and snapshot (every var('similarity_every_days') days and at the
-- data horizon): co-visitation over the previous var('similarity_window_days') days — sessions
-- holding both items — and its cosine similarity. Only the var('similarity_neighbours') most
-- similar neighbours seen together in at least two sessions are kept per item and snapshot.
{{ config(materialized='external') }}

{% set window_days = var('similarity_window_days') %}

with events as (
    select * from {{ ref('int_events_sessionized') }}
),

calendar as (
    select * from {{ ref('int_calendar') }}
),

session_items as (
    select session_id, item_id, min(event_time) as first_seen
    from events
    group by session_id, item_id
),

-- the first items of each session, dated by the day its last item was seen: a session that
-- crosses midnight is known whole only then, so a snapshot at that midnight leaves it out
capped as (
    select *, cast(max(first_seen) over (partition by session_id) as date) as session_date
    from session_items
    qualify row_number() over (partition by session_id order by first_seen, item_id) <= {{ var('session_items_cap') }}
),

pairs_daily as (
    select a.item_id, b.item_id as neighbour_item_id, a.session_date, count(*) as sessions
    from capped a
    inner join capped b on a.session_id = b.session_id and a.item_id <> b.item_id
    group by all
),

items_daily as (
    select item_id, session_date, count(*) as sessions
    from capped
    group by all
),

snapshots as (
    select as_of_date
    from calendar
    where {{ dbt.datediff('(select min(as_of_date) from calendar)', 'as_of_date', 'day') }} % {{ var('similarity_every_days') }} = 0
       or as_of_date = {{ data_horizon() }}
),

pair_counts as (
    select s.as_of_date, p.item_id, p.neighbour_item_id, sum(p.sessions) as co_sessions
    from snapshots s
    inner join pairs_daily p
        on p.session_date < s.as_of_date and p.session_date >= {{ add_days(-window_days, 's.as_of_date') }}
    group by all
    having sum(p.sessions) >= 2
),

item_counts as (
    select s.as_of_date, i.item_id, sum(i.sessions) as sessions
    from snapshots s
    inner join items_daily i
        on i.session_date < s.as_of_date and i.session_date >= {{ add_days(-window_days, 's.as_of_date') }}
    group by all
),

scored as (
    select
        p.item_id,
        p.neighbour_item_id,
        p.as_of_date,
        cast(p.co_sessions as bigint) as co_sessions_{{ window_days }}d,
        p.co_sessions / sqrt(cast(a.sessions as double) * b.sessions) as cosine_{{ window_days }}d
    from pair_counts p
    inner join item_counts a on a.as_of_date = p.as_of_date and a.item_id = p.item_id
    inner join item_counts b on b.as_of_date = p.as_of_date and b.item_id = p.neighbour_item_id
)

select
    item_id,
    neighbour_item_id,
    {{ midnight('as_of_date') }} as event_timestamp,
    co_sessions_{{ window_days }}d,
    cosine_{{ window_days }}d,
    cast(row_number() over (
        partition by item_id, as_of_date order by cosine_{{ window_days }}d desc, neighbour_item_id
    ) as bigint) as neighbour_rank
from scored
qualify neighbour_rank <= {{ var('similarity_neighbours') }}
