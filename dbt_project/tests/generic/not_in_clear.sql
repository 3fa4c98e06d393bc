{#- A pseudonymized column holds only 64-hex-digit hashes: no e-mail address or phone number. -#}
{% test not_in_clear(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and (length({{ column_name }}) <> 64 or {{ column_name }} like '%@%' or {{ column_name }} like '+%')
{% endtest %}
