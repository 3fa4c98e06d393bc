{#- No value is later than the end of the last day with events: a mart row from the future would
    leak into point-in-time joins. -#}
{% test not_after_horizon(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} > {{ midnight(data_horizon()) }}
{% endtest %}
