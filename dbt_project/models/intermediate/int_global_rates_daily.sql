-- One row per day boundary: shop-wide 30-day rates, the priors that smoothed rates shrink toward.
with calendar as (
    select * from {{ ref('int_calendar') }}
),

items as (
    select
        activity_date,
        sum(views) as views,
        sum(clicks) as clicks,
        sum(purchases) as purchases,
        sum(impressions) as impressions
    from {{ ref('int_item_activity_daily') }}
    group by activity_date
),

search as (
    select
        request_date as activity_date,
        count(*) as search_impressions,
        count(*) filter (where label >= 1) as search_clicks
    from {{ ref('int_impressions_labeled') }}
    where surface = 'search'
    group by request_date
),

daily as (
    select
        c.activity_date,
        c.as_of_date,
        coalesce(i.views, 0) as views,
        coalesce(i.clicks, 0) as clicks,
        coalesce(i.purchases, 0) as purchases,
        coalesce(i.impressions, 0) as impressions,
        coalesce(s.search_impressions, 0) as search_impressions,
        coalesce(s.search_clicks, 0) as search_clicks
    from calendar c
    left join items i on c.activity_date = i.activity_date
    left join search s on c.activity_date = s.activity_date
),

windowed as (
    select
        as_of_date,
        sum(views) over last_30_days as views_30d,
        sum(clicks) over last_30_days as clicks_30d,
        sum(purchases) over last_30_days as purchases_30d,
        sum(impressions) over last_30_days as impressions_30d,
        sum(search_impressions) over last_30_days as search_impressions_30d,
        sum(search_clicks) over last_30_days as search_clicks_30d
    from daily
    window last_30_days as (order by activity_date rows between 29 preceding and current row)
)

select
    as_of_date,
    {{ rate('clicks_30d', 'impressions_30d') }} as ctr_30d,
    {{ rate('purchases_30d', 'views_30d') }} as cvr_30d,
    {{ rate('search_clicks_30d', 'search_impressions_30d') }} as search_ctr_30d
from windowed
