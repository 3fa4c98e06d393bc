-- One row per normalized query, item and day boundary where a value changes: how the item fared
-- when shown for the query (impressions, clicks, carts, purchases) over 7 and 30 days, and its
-- CTR for the query smoothed toward the shop-wide search CTR.
{{ config(materialized='external') }}

with activity as (
    select
        query_norm,
        item_id,
        request_date as activity_date,
        cast(count(*) as bigint) as impressions,
        cast(count(*) filter (where label >= 1) as bigint) as clicks,
        cast(count(*) filter (where label >= 2) as bigint) as carts,
        cast(count(*) filter (where label >= 3) as bigint) as purchases
    from {{ ref('int_impressions_labeled') }}
    where surface = 'search' and query_norm is not null
    group by all
),

priors as (
    select * from {{ ref('int_global_rates_daily') }}
),

windowed as (
    {{ windowed_sums('activity', ['query_norm', 'item_id'], ['impressions', 'clicks', 'carts', 'purchases'], windows=[7, 30]) }}
)

select
    w.query_norm,
    w.item_id,
    {{ midnight('w.as_of_date') }} as event_timestamp,
    w.impressions_7d,
    w.impressions_30d,
    w.clicks_7d,
    w.clicks_30d,
    w.carts_30d,
    w.purchases_30d,
    {{ smoothed_rate('w.clicks_30d', 'w.impressions_30d', 'coalesce(p.search_ctr_30d, 0)') }} as query_item_ctr_30d
from windowed w
left join priors p on w.as_of_date = p.as_of_date
where {{ known_boundaries('w') }}
