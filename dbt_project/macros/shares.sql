{#-
  An owner's (a user's, a query's) 30-day interactions and purchases per value of one item
  attribute (a category, a brand...), and that value's share of all the owner's attributed
  interactions (affinity), at every day boundary where the owner's activity changes. The share
  moves with any of the owner's activity, so every value active in the window gets a row at each
  of the owner's boundaries; a value leaving the window gets a last row of zeros.

  Arguments:
    activity  a relation with `owner`, `key`, activity_date, interactions and purchases (per
              owner and day at the key's grain or finer: rows of a value and day are summed)
    key       the attribute column
    prefix    output columns: `<prefix>_interactions_30d`, `_purchases_30d`, `_affinity_30d`
    owner     the column of whose activity it is (default user_id)
-#}
{% macro shares(activity, key, prefix, owner='user_id') -%}
with activity as (
    select {{ owner }}, {{ key }}, activity_date, sum(interactions) as interactions, sum(purchases) as purchases
    from {{ activity }}
    where {{ key }} is not null
    group by all
    having sum(interactions) > 0
),

-- the owner's boundaries: the end of each active day, and the day it leaves the 30-day window
boundaries as (
    select distinct {{ owner }}, as_of_date
    from (
        select {{ owner }}, {{ add_days(1, 'activity_date') }} as as_of_date from activity
        union all
        select {{ owner }}, {{ add_days(31, 'activity_date') }} from activity
    ) candidates
    where as_of_date <= {{ data_horizon() }}
),

-- 31 days back: the 30 of the window, and the one just left (zero rows)
windowed as (
    select
        b.{{ owner }},
        a.{{ key }},
        b.as_of_date,
        cast(coalesce(sum(case when a.activity_date >= {{ add_days(-30, 'b.as_of_date') }} then a.interactions end), 0) as bigint)
            as interactions_30d,
        cast(coalesce(sum(case when a.activity_date >= {{ add_days(-30, 'b.as_of_date') }} then a.purchases end), 0) as bigint)
            as purchases_30d
    from boundaries b
    inner join activity a
        on a.{{ owner }} = b.{{ owner }}
        and a.activity_date < b.as_of_date
        and a.activity_date >= {{ add_days(-31, 'b.as_of_date') }}
    group by all
)

select
    {{ owner }},
    {{ key }},
    {{ midnight('as_of_date') }} as event_timestamp,
    interactions_30d as {{ prefix }}_interactions_30d,
    purchases_30d as {{ prefix }}_purchases_30d,
    coalesce(
        cast(interactions_30d as double) / nullif(sum(interactions_30d) over (partition by {{ owner }}, as_of_date), 0),
        0
    ) as {{ prefix }}_affinity_30d
from windowed
{%- endmacro %}
