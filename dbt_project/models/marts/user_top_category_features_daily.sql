-- One row per user, top-level category and day boundary where the user's activity changes: the
-- user's interactions in the top category over 30 days and its share of all their interactions
-- with a known top category (affinity); see the shares macro.
{{ config(materialized='external') }}

{{ shares(ref('int_user_catalog_activity_daily'), 'category_top', 'top_category') }}
