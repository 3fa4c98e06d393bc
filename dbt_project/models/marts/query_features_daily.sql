-- One row per normalized query and day boundary where a value changes: how often it was searched
-- (served search lists) over 7 and 30 days, the clicks on its results, and its click-through rate
-- smoothed toward the shop-wide search CTR (how well the shop answers it).
{{ config(materialized='external') }}

with activity as (
    select
        query_norm,
        request_date as activity_date,
        cast(count(distinct request_id) as bigint) as searches,
        cast(count(*) as bigint) as impressions,
        cast(count(*) filter (where label >= 1) as bigint) as clicks
    from {{ ref('int_impressions_labeled') }}
    where surface = 'search' and query_norm is not null
    group by all
),

priors as (
    select * from {{ ref('int_global_rates_daily') }}
),

windowed as (
    {{ windowed_sums('activity', ['query_norm'], ['searches', 'impressions', 'clicks'], windows=[7, 30]) }}
)

select
    w.query_norm,
    {{ midnight('w.as_of_date') }} as event_timestamp,
    w.searches_7d,
    w.searches_30d,
    w.clicks_30d,
    {{ smoothed_rate('w.clicks_30d', 'w.impressions_30d', 'coalesce(p.search_ctr_30d, 0)') }} as query_ctr_30d
from windowed w
left join priors p on w.as_of_date = p.as_of_date
where {{ known_boundaries('w') }}
