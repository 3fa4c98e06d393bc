-- One row per judged (normalized query, item): the raters' grade and its graded label. query_id
-- is the normalized query (the ranking group, and the unit of a query-grouped split); raw queries
-- that normalize alike are merged, averaging their grades. The label cuts the grade scale
-- var('judgment_scale') (default [1, 3], Home Depot's rater averages) into quarters: for 1..3,
-- [1, 1.5) 0, [1.5, 2) 1, [2, 2.5) 2, [2.5, 3] 3. Judgments carry no time, so event_timestamp is
-- the end of the last day with data (events or catalog versions): features see all that is known.
{{ config(materialized='external') }}

{% set lowest, highest = var('judgment_scale', [1, 3]) %}

with judgments as (
    select * from {{ ref('stg_shop__judgments') }}
),

calendar as (
    select * from {{ ref('int_calendar') }}
),

item_versions as (
    select * from {{ ref('int_item_versions') }}
),

known_days as (
    select max(as_of_date) as known_until from calendar
    union all
    select {{ add_days(1, 'max(valid_from)') }} from item_versions
),

merged as (
    select query_norm, item_id, min(query) as query, avg(grade) as grade
    from judgments
    where query_norm is not null
    group by query_norm, item_id
),

labeled as (
    select
        m.query_norm as query_id,
        'anonymous' as user_id,
        m.item_id,
        {{ midnight('(select max(known_until) from known_days)') }} as event_timestamp,
        'search' as surface,
        m.query,
        m.query_norm,
        cast(null as integer) as position,
        cast(case
            when m.grade = {{ highest }} then 3
            else floor(4 * (m.grade - {{ lowest }}) / ({{ highest }} - {{ lowest }}))
        end as integer) as label,
        m.grade
    from merged m
)

select * from labeled
