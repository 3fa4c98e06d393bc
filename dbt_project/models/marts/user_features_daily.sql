-- One row per user and day boundary where a value changes: activity over 1/7/30 days, smoothed
-- CTR and conversion, breadth, purchase prices, recency and tenure, as known at event_timestamp.
{{ config(materialized='external') }}

with activity as (
    select * from {{ ref('int_user_activity_daily') }}
),

priors as (
    select * from {{ ref('int_global_rates_daily') }}
),

users as (
    select * from {{ ref('dim_users') }}
),

windowed as (
    {{ windowed_sums(
        'activity', ['user_id'],
        ['views', 'clicks', 'carts', 'favorites', 'purchases', 'impressions', 'priced_purchases'],
        float_sums=['purchase_price_sum', 'purchase_price_sq_sum'],
        distinct={'categories': 'category_path'},
        maxima={'last_event_at': 'last_event_at'}) }}
),

features as (
    select
        w.user_id,
        {{ midnight('w.as_of_date') }} as event_timestamp,
        {%- for measure in ['views', 'clicks', 'carts', 'favorites', 'purchases'] %}
        {%- for days in [1, 7, 30] %}
        w.{{ measure }}_{{ days }}d,
        {%- endfor %}
        {%- endfor %}
        w.impressions_30d,
        {{ smoothed_rate('w.clicks_30d', 'w.impressions_30d', 'coalesce(p.ctr_30d, 0)') }} as ctr_30d,
        {{ smoothed_rate('w.purchases_30d', 'w.views_30d', 'coalesce(p.cvr_30d, 0)') }} as cvr_30d,
        w.categories_30d,
        w.purchase_price_sum_30d / nullif(w.priced_purchases_30d, 0) as purchase_price_mean_30d,
        sqrt(greatest(
            w.purchase_price_sq_sum_30d / nullif(w.priced_purchases_30d, 0)
            - power(w.purchase_price_sum_30d / nullif(w.priced_purchases_30d, 0), 2), 0)) as purchase_price_std_30d,
        max(w.last_event_at) over (
            partition by w.user_id order by w.as_of_date rows between unbounded preceding and current row
        ) as last_event_at,
        u.signup_time
    from windowed w
    left join priors p on w.as_of_date = p.as_of_date
    left join users u on w.user_id = u.user_id
)

select
    *,
    cast({{ dbt.datediff('last_event_at', 'event_timestamp', 'hour') }} as double) / 24 as recency_days,
    cast({{ dbt.datediff('signup_time', 'event_timestamp', 'hour') }} as double) / 24 as tenure_days
from features
