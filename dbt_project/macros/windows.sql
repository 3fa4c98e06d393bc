{#-
  Trailing-window sums of additive daily measures, as of every day boundary where a value can
  change, so a point-in-time join never reads a stale window:

    as_of_date = d + 1        the day d of activity becomes known (its end, midnight UTC)
    as_of_date = d + w + 1    day d leaves the w-day window

  The row at as_of_date D covers activity on days D - w .. D - 1, i.e. strictly before D.
  Boundaries after the data horizon (the end of the last day with events) are not emitted: the
  future is unknown.

  Arguments:
    daily       a relation or CTE name with `keys`, `date_column` and the measures
    keys        columns that identify an entity (change points are per entity)
    measures    additive integer measures; output `<measure>_<w>d` as bigint
    windows     window lengths in days
    float_sums  additive float measures; output `<measure>_<w>d` as double
    distinct    {output name: column}: `<name>_<w>d` = distinct non-null values in the window
    maxima      {output name: column}: `<name>` = the column's maximum in the longest window
    detail_keys columns under the entity reported per entity and boundary (e.g. a category),
                for every detail active in the window or leaving it at that boundary (then
                with zeros, so its last value is not stale)
-#}
{% macro windowed_sums(daily, keys, measures, windows=[1, 7, 30], float_sums=[], distinct={}, maxima={}, detail_keys=[], date_column='activity_date') -%}
{%- set longest = windows | max -%}
{#- one day more than the longest window, so the boundary where a day leaves still joins it -#}
{%- set lookback = longest + 1 -%}
{%- set offsets = [1] -%}
{%- for w in windows %}{% do offsets.append(w + 1) %}{% endfor -%}
{%- set key_match = [] -%}
{%- for k in keys %}{% do key_match.append('d.' ~ k ~ ' = cp.' ~ k) %}{% endfor -%}
select
    {% for k in keys %}cp.{{ k }},{% endfor %}
    {% for k in detail_keys %}d.{{ k }},{% endfor %}
    cp.as_of_date
    {%- for w in windows %}
    {%- set in_window = 'd.' ~ date_column ~ ' >= ' ~ add_days(-w, 'cp.as_of_date') %}
    {%- for m in measures %},
    cast(coalesce(sum(case when {{ in_window }} then d.{{ m }} end), 0) as bigint) as {{ m }}_{{ w }}d
    {%- endfor %}
    {%- for m in float_sums %},
    cast(coalesce(sum(case when {{ in_window }} then d.{{ m }} end), 0) as double) as {{ m }}_{{ w }}d
    {%- endfor %}
    {%- for name, column in distinct.items() %},
    cast(count(distinct case when {{ in_window }} then d.{{ column }} end) as bigint) as {{ name }}_{{ w }}d
    {%- endfor %}
    {%- endfor %}
    {%- for name, column in maxima.items() %},
    max(case when d.{{ date_column }} >= {{ add_days(-longest, 'cp.as_of_date') }} then d.{{ column }} end) as {{ name }}
    {%- endfor %}
from (
    select distinct {% for k in keys %}{{ k }}, {% endfor %}as_of_date
    from (
        {%- for offset in offsets %}
        select {% for k in keys %}{{ k }}, {% endfor %}{{ add_days(offset, date_column) }} as as_of_date from {{ daily }}
        {% if not loop.last %}union all{% endif %}
        {%- endfor %}
    ) boundaries
    where as_of_date <= {{ data_horizon() }}
) cp
inner join {{ daily }} d
    on {{ key_match | join(' and ') }}
    and d.{{ date_column }} < cp.as_of_date
    and d.{{ date_column }} >= {{ add_days(-lookback, 'cp.as_of_date') }}
group by all
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
