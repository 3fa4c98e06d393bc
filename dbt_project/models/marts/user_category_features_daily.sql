-- One row per user, category and day boundary where the user's activity changes: the user's
-- interactions in the category over 30 days and its share of all their categorized interactions
-- (affinity). The share changes with any of the user's activity, so every category active in
-- the window gets a row at each of the user's boundaries; a category leaving the window gets a
-- last row of zeros.
{{ config(materialized='external') }}

with activity as (
    select user_id, category_path, activity_date, interactions, purchases
    from {{ ref('int_user_activity_daily') }}
    where category_path is not null and interactions > 0
),

-- the user's boundaries: the end of each active day, and the day it leaves the 30-day window
boundaries as (
    select distinct user_id, as_of_date
    from (
        select user_id, {{ add_days(1, 'activity_date') }} as as_of_date from activity
        union all
        select user_id, {{ add_days(31, 'activity_date') }} from activity
    ) candidates
    where as_of_date <= {{ data_horizon() }}
),

-- 31 days back: the 30 of the window, and the one just left (zero rows)
windowed as (
    select
        b.user_id,
        a.category_path,
        b.as_of_date,
        cast(coalesce(sum(case when a.activity_date >= {{ add_days(-30, 'b.as_of_date') }} then a.interactions end), 0) as bigint)
            as interactions_30d,
        cast(coalesce(sum(case when a.activity_date >= {{ add_days(-30, 'b.as_of_date') }} then a.purchases end), 0) as bigint)
            as purchases_30d
    from boundaries b
    inner join activity a
        on a.user_id = b.user_id
        and a.activity_date < b.as_of_date
        and a.activity_date >= {{ add_days(-31, 'b.as_of_date') }}
    group by all
)

select
    user_id,
    category_path,
    {{ midnight('as_of_date') }} as event_timestamp,
    interactions_30d as category_interactions_30d,
    purchases_30d as category_purchases_30d,
    coalesce(
        cast(interactions_30d as double) / nullif(sum(interactions_30d) over (partition by user_id, as_of_date), 0),
        0
    ) as category_affinity_30d
from windowed
