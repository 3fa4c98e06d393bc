-- One row per user, category and day boundary where the user's activity changes: the user's
-- interactions in the category over 30 days and its share of all their categorized interactions
-- (affinity). A category that leaves the window gets a last row with zeros.
{{ config(materialized='external') }}

with activity as (
    select * from {{ ref('int_user_activity_daily') }} where category_path is not null
),

windowed as (
    {{ windowed_sums('activity', ['user_id'], ['interactions', 'purchases'], windows=[30], detail_keys=['category_path']) }}
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
