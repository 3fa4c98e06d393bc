-- One row per user, category and day boundary where the user's activity changes: the user's
-- interactions in the category over 30 days and its share of all their categorized interactions
-- (affinity); see the shares macro.
{{ config(materialized='external') }}

{{ shares(ref('int_user_activity_daily'), 'category_path', 'category') }}
