{#-
  Trailing-window sums of additive daily measures, as of every day boundary where a value can
  change, so a point-in-time join never reads a stale window:

    as_of_date = d + 1        the day d of activity becomes known (its end, midnight UTC)
    as_of_date = d + w + 1    day d leaves the w-day window

  The row at as_of_date D covers activity on days D - w .. D - 1, i.e. strictly before D.
  Boundaries after the data horizon (the end of the last day with events) are not emitted: the
  future is unknown. Windows are range frames over the days of each entity, so the cost grows
  with the rows, not with rows times window length.

  Arguments:
    daily          a relation or CTE name with `keys`, `date_column` and the measures
    keys           columns that identify an entity (boundaries are per entity)
    measures       additive integer measures; output `<measure>_<w>d` as bigint
    windows        window lengths in days
    float_sums     additive float measures; output `<measure>_<w>d` as double
    running_sums   measures summed over all history up to the boundary (e.g. +1/-1 deltas)
    running_maxima measures whose maximum over all history up to the boundary is kept
-#}
{% macro windowed_sums(daily, keys, measures, windows=[1, 7, 30], float_sums=[], running_sums=[], running_maxima=[], date_column='activity_date') -%}
{%- set offsets = [1] -%}
{%- for w in windows %}{% do offsets.append(w + 1) %}{% endfor -%}
{%- set entity = keys | join(', ') -%}
{%- set additive = measures + float_sums + running_sums -%}
{%- set days = 'partition by ' ~ entity ~ ' order by day' -%}
select
    {{ entity }},
    {{ add_days(1, 'day') }} as as_of_date
    {%- for w in windows %}
    {%- for m in measures %},
    cast(sum({{ m }}) over ({{ days }} range between interval {{ w - 1 }} days preceding and current row) as bigint) as {{ m }}_{{ w }}d
    {%- endfor %}
    {%- for m in float_sums %},
    cast(sum({{ m }}) over ({{ days }} range between interval {{ w - 1 }} days preceding and current row) as double) as {{ m }}_{{ w }}d
    {%- endfor %}
    {%- endfor %}
    {%- for m in running_sums %},
    cast(sum({{ m }}) over ({{ days }} rows between unbounded preceding and current row) as bigint) as {{ m }}
    {%- endfor %}
    {%- for m in running_maxima %},
    max({{ m }}) over ({{ days }} rows between unbounded preceding and current row) as {{ m }}
    {%- endfor %},
    is_boundary
from (
    -- one row per entity and day: the day's activity, and whether a boundary closes it
    select
        {{ entity }},
        day,
        {%- for m in additive %}
        sum({{ m }}) as {{ m }},
        {%- endfor %}
        {%- for m in running_maxima %}
        max({{ m }}) as {{ m }},
        {%- endfor %}
        max(is_boundary) as is_boundary
    from (
        select {{ entity }}, {{ date_column }} as day,
            {%- for m in additive + running_maxima %} {{ m }},{% endfor %} 0 as is_boundary
        from {{ daily }}
        {%- for offset in offsets %}
        union all
        -- the last day covered by the boundary `offset` days after an active day
        select {{ entity }}, {{ add_days(offset - 1, date_column) }},
            {%- for m in additive %} 0,{% endfor %}{% for m in running_maxima %} null,{% endfor %} 1
        from {{ daily }}
        {%- endfor %}
    ) entity_days
    group by {{ entity }}, day
) per_day
{%- endmacro %}

{#- Keep the boundary rows of a `windowed_sums` result that are known by the data horizon. -#}
{% macro known_boundaries(alias='w') -%}
    {{ alias }}.is_boundary = 1 and {{ alias }}.as_of_date <= {{ data_horizon() }}
{%- endmacro %}

{#- The end of the last day with events: the latest moment any feature can be known at. -#}
{% macro data_horizon() -%}
    (select max(as_of_date) from {{ ref('int_calendar') }})
{%- endmacro %}

{#- Bayesian smoothing of successes / trials toward a prior rate with var('smoothing_strength')
    pseudo-trials. A success implies a trial (a purchase whose view was not logged was still
    viewed), so the rate stays within [0, 1] on partial logs. -#}
{% macro smoothed_rate(successes, trials, prior_rate) -%}
    cast(({{ successes }} + {{ var('smoothing_strength') }} * {{ prior_rate }})
         / (greatest({{ trials }}, {{ successes }}) + {{ var('smoothing_strength') }}) as double)
{%- endmacro %}

{#- successes / trials, where a success implies a trial; null without trials. -#}
{% macro rate(successes, trials) -%}
    cast({{ successes }} as double) / nullif(greatest({{ trials }}, {{ successes }}), 0)
{%- endmacro %}
