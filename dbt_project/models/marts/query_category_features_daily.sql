-- One row per normalized query, leaf category and day boundary where the query's search clicks
-- change: the clicks on the category's items shown for the query over 30 days (interactions),
-- their purchases, and the category's share of all the query's clicks (affinity) — which
-- categories shoppers mean by the query; see the shares macro. Items go by their current category.
{{ config(materialized='external') }}

{% set activity %}
(
    select
        l.query_norm,
        i.category_path,
        l.request_date as activity_date,
        cast(count(*) filter (where l.label >= 1) as bigint) as interactions,
        cast(count(*) filter (where l.label >= 3) as bigint) as purchases
    from {{ ref('int_impressions_labeled') }} l
    inner join {{ ref('int_item_versions') }} i on l.item_id = i.item_id and i.valid_to is null
    where l.surface = 'search' and l.query_norm is not null
    group by all
)
{% endset %}
{{ shares(activity, 'category_path', 'query_category', owner='query_norm') }}
