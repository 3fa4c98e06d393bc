{#- Salted SHA-256 of a PII value (trimmed, lower case), so equal values still join while the
    clear value never leaves staging. The salt comes from SHOPRANK_PII_SALT. -#}
{% macro pseudonymize(expression) -%}
    case when {{ expression }} is null then null
         else {{ sha256_hex(dbt.concat(["'" ~ var('pii_salt') ~ "'", "lower(trim(" ~ expression ~ "))"])) }}
    end
{%- endmacro %}
