{#- One count per event type of the contract, named as the marts name them. -#}
{% macro event_type_counts(event_type='event_type') -%}
    {%- set names = {'view': 'views', 'click': 'clicks', 'add_to_cart': 'carts', 'favorite': 'favorites', 'purchase': 'purchases'} -%}
    {%- for value, name in names.items() %}
        count(*) filter (where {{ event_type }} = '{{ value }}') as {{ name }}{{ ',' if not loop.last }}
    {%- endfor %}
{%- endmacro %}
