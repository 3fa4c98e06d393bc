{#- Every value is a whole second: Feast keeps a timestamp online in seconds, so a feature served
    from the online store equals the one training reads offline only at that precision. -#}
{% test whole_seconds(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} <> date_trunc('second', {{ column_name }})
{% endtest %}
