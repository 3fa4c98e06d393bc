{#- Query text as it is grouped and matched: lower case, every run of characters that are not
    letters or digits turned into one blank, trimmed. -#}
{% macro normalize_query(expression) -%}
    nullif(trim({{ regexp_replace_all('lower(' ~ expression ~ ')', '[^\\p{L}\\p{N}]+', ' ') }}), '')
{%- endmacro %}
