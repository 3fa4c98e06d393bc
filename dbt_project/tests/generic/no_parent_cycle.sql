{#- No row reaches itself by following its parents (1 -> 2 -> 1), up to `depth` steps: the raw
    contract refuses a cycle within one file; this finds one that files of several ingests make
    together. Plain joins, one per step (no recursive CTE: every target runs them). -#}
{% test no_parent_cycle(model, column_name, parent, depth=32) %}
with edges as (
    select {{ column_name }} as child, {{ parent }} as parent
    from {{ model }}
    where {{ parent }} is not null
),

walk_0 as (select child as start, parent as node from edges),
{%- for step in range(1, depth) %}

walk_{{ step }} as (
    select w.start, e.parent as node
    from walk_{{ step - 1 }} w
    inner join edges e on e.child = w.node
){{ "," if not loop.last }}
{%- endfor %}

select distinct start as {{ column_name }}
from (
    {%- for step in range(depth) %}
    select start, node from walk_{{ step }}{{ " union all" if not loop.last }}
    {%- endfor %}
) walks
where start = node
{% endtest %}
