-- One row per user and day boundary where a value changes: activity over 1/7/30 days, smoothed
-- CTR and conversion, category breadth, purchase prices, recency and tenure, as known at
-- event_timestamp.
{{ config(materialized='external') }}

{% set counts = ['views', 'clicks', 'carts', 'favorites', 'purchases', 'impressions', 'priced_purchases'] %}

with activity as (
    select * from {{ ref('int_user_activity_daily') }}
),

priors as (
    select * from {{ ref('int_global_rates_daily') }}
),

users as (
    select * from {{ ref('dim_users') }}
),

-- a category the user interacted with counts in the 30-day breadth from its first day of activity
-- after a 30-day gap
-- (+1) until 30 days after its last day of activity (-1)
category_days as (
    select
        user_id,
        activity_date,
        {{ dbt.datediff('lag(activity_date) over (partition by user_id, category_path order by activity_date)', 'activity_date', 'day') }} as days_since_previous,
        {{ dbt.datediff('activity_date', 'lead(activity_date) over (partition by user_id, category_path order by activity_date)', 'day') }} as days_to_next
    from activity
    where category_path is not null and interactions > 0
),

category_changes as (
    select user_id, activity_date, 1 as category_change
    from category_days where days_since_previous is null or days_since_previous >= 30
    union all
    select user_id, {{ add_days(30, 'activity_date') }}, -1
    from category_days where days_to_next is null or days_to_next >= 30
),

daily as (
    select
        user_id,
        activity_date,
        {%- for c in counts %}
        sum({{ c }}) as {{ c }},
        {%- endfor %}
        sum(purchase_price_sum) as purchase_price_sum,
        sum(purchase_price_sq_sum) as purchase_price_sq_sum,
        max(last_event_at) as last_event_at,
        0 as category_change
    from activity
    group by user_id, activity_date
    union all
    select user_id, activity_date, {% for c in counts %}0, {% endfor %}0, 0, null, category_change
    from category_changes
),

windowed as (
    {{ windowed_sums(
        'daily', ['user_id'], counts,
        float_sums=['purchase_price_sum', 'purchase_price_sq_sum'],
        running_sums=['category_change'],
        running_maxima=['last_event_at']) }}
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
        w.category_change as categories_30d,
        w.purchase_price_sum_30d / nullif(w.priced_purchases_30d, 0) as purchase_price_mean_30d,
        sqrt(greatest(
            w.purchase_price_sq_sum_30d / nullif(w.priced_purchases_30d, 0)
            - power(w.purchase_price_sum_30d / nullif(w.priced_purchases_30d, 0), 2), 0)) as purchase_price_std_30d,
        -- whole seconds: Feast keeps a timestamp online in seconds, and training must read the value served
        date_trunc('second', w.last_event_at) as last_event_at,
        date_trunc('second', u.signup_time) as signup_time
    from windowed w
    left join priors p on w.as_of_date = p.as_of_date
    left join users u on w.user_id = u.user_id
    where {{ known_boundaries('w') }}
)

select
    *,
    cast({{ dbt.datediff('last_event_at', 'event_timestamp', 'hour') }} as double) / 24 as recency_days,
    cast({{ dbt.datediff('signup_time', 'event_timestamp', 'hour') }} as double) / 24 as tenure_days
from features
