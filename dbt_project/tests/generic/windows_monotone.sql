{#- Counts over nested windows never shrink as the window grows: columns[0] <= columns[1] <= ... -#}
{% test windows_monotone(model, columns) %}
select *
from {{ model }}
where {% for i in range(columns | length - 1) -%}
    {{ columns[i] }} > {{ columns[i + 1] }}{{ ' or ' if not loop.last }}
{%- endfor %}
{% endtest %}
