{#- Salted SHA-256 of a PII value (trimmed, lower case), so equal values still join while the
    clear value never leaves staging. The salt comes from SHOPRANK_PII_SALT. -#}
{% macro pseudonymize(expression) -%}
    case when {{ expression }} is null then null
         else {{ sha256_hex(dbt.concat(["'" ~ var('pii_salt') ~ "'", "lower(trim(" ~ expression ~ "))"])) }}
    end
{%- endmacro %}

{#- Free text (queries) with e-mail addresses replaced by EMAIL and phone numbers (9 to 15 digits,
    each after at most two of -.() and blanks, after an optional +) by PHONE: the rule and the
    regular expressions of shoprank.text.pii, where it is documented; tests/code/test_text.py
    checks that both agree. The phone pattern keeps the characters around the number (RE2 has no
    lookarounds), so it runs twice: two numbers one character apart are both replaced. -#}
{% macro scrub_pii(expression) -%}
    {%- set email = '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Za-z]{2,}' -%}
    {%- set phone = '(^|[^A-Za-z0-9+])\\+?[0-9](?:[-. ()]{0,2}[0-9]){8,14}($|[^A-Za-z0-9])' -%}
    {%- set replacement = text_group(1) ~ 'PHONE' ~ text_group(2) -%}
    {%- set once = regexp_replace_all(regexp_replace_all(expression, email, 'EMAIL'), phone, replacement) -%}
    {{ regexp_replace_all(once, phone, replacement) }}
{%- endmacro %}
