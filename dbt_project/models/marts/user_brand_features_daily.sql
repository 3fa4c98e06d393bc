-- One row per user, brand and day boundary where the user's activity changes: the user's
-- interactions with the brand over 30 days and its share of all their interactions with a
-- known brand (affinity); see the shares macro. The key is `item_brand`, not `brand`: in
-- Feast's request frames `brand` is the catalog feature that the query-title match reads.
{{ config(materialized='external') }}

{% set activity %}
(select user_id, brand as item_brand, activity_date, interactions, purchases from {{ ref('int_user_catalog_activity_daily') }})
{% endset %}
{{ shares(activity, 'item_brand', 'brand') }}
