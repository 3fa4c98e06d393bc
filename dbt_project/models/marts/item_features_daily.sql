-- One row per item and day boundary while it is active (from its first activity until its last
-- one leaves the 30-day window): interactions over 1/7/30 days,
-- smoothed CTR and conversion, price and its change vs the 7-day mean, catalog attributes as
-- known then, age, and popularity rank within its category (by 7-day views).
{{ config(materialized='external') }}

{% set measures = ['views', 'clicks', 'carts', 'favorites', 'purchases', 'impressions'] %}

with calendar as (
    select * from {{ ref('int_calendar') }}
),

activity as (
    select * from {{ ref('int_item_activity_daily') }}
),

versions as (
    select * from {{ ref('int_item_versions') }}
),

priors as (
    select * from {{ ref('int_global_rates_daily') }}
),

active_span as (
    select item_id, min(activity_date) as first_day, max(activity_date) as last_day
    from activity
    group by item_id
),

-- every day from the item's first activity until its last activity has left the 30-day window
-- (that boundary's row has zero counts and stays valid), so row windows are calendar windows
dense as (
    select
        f.item_id,
        c.activity_date,
        c.as_of_date,
        {%- for m in measures %}
        coalesce(a.{{ m }}, 0) as {{ m }}{{ ',' if not loop.last }}
        {%- endfor %}
    from active_span f
    inner join calendar c
        on c.activity_date >= f.first_day and c.activity_date <= {{ add_days(30, 'f.last_day') }}
    left join activity a on a.item_id = f.item_id and a.activity_date = c.activity_date
),

windowed as (
    select
        item_id,
        as_of_date
        {%- for m in measures %}{% for days in [1, 7, 30] %},
        cast(sum({{ m }}) over (
            partition by item_id order by activity_date rows between {{ days - 1 }} preceding and current row
        ) as bigint) as {{ m }}_{{ days }}d
        {%- endfor %}{% endfor %}
    from dense
),

-- the catalog version valid at the boundary
attributed as (
    select
        w.*,
        v.title,
        v.category_path,
        v.category_top,
        v.brand,
        v.price,
        v.first_seen_at
    from windowed w
    left join versions v
        on v.item_id = w.item_id
        and v.valid_from <= {{ midnight('w.as_of_date') }}
        and (v.valid_to is null or v.valid_to > {{ midnight('w.as_of_date') }})
),

features as (
    select
        a.item_id,
        {{ midnight('a.as_of_date') }} as event_timestamp,
        {%- for m in measures %}{% for days in [1, 7, 30] %}
        a.{{ m }}_{{ days }}d,
        {%- endfor %}{% endfor %}
        {{ smoothed_rate('a.clicks_30d', 'a.impressions_30d', 'coalesce(p.ctr_30d, 0)') }} as ctr_30d,
        {{ smoothed_rate('a.purchases_30d', 'a.views_30d', 'coalesce(p.cvr_30d, 0)') }} as cvr_30d,
        a.price,
        avg(a.price) over (partition by a.item_id order by a.as_of_date rows between 6 preceding and current row)
            as price_mean_7d,
        a.title,
        a.category_path,
        a.category_top,
        a.brand,
        cast({{ dbt.datediff('a.first_seen_at', midnight('a.as_of_date'), 'hour') }} as double) / 24 as age_days,
        cast(rank() over (
            partition by a.category_path, a.as_of_date order by a.views_7d desc
        ) as bigint) as popularity_rank_in_category
    from attributed a
    left join priors p on a.as_of_date = p.as_of_date
)

select
    *,
    price / nullif(price_mean_7d, 0) - 1 as price_change_vs_7d
from features
