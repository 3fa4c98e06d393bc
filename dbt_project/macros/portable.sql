{#- Dialect differences between DuckDB (embedded) and Spark (distributed profile) live here, so
    models stay the same on both. -#}

{#- A text as an SQL string literal: DuckDB doubles quotes and keeps backslashes; Spark's parser
    reads backslash escapes, so both are escaped with one. -#}
{% macro sql_string(text) -%}
    {{ return(adapter.dispatch('sql_string', 'shoprank')(text)) }}
{%- endmacro %}

{% macro default__sql_string(text) -%}
    {{ return("'" ~ text | replace('\\', '\\\\') | replace("'", "\\'") ~ "'") }}
{%- endmacro %}

{% macro duckdb__sql_string(text) -%}
    {{ return("'" ~ text | replace("'", "''") ~ "'") }}
{%- endmacro %}

{#- Replace every match of a regular expression (DuckDB replaces only the first without 'g'). -#}
{% macro regexp_replace_all(expression, pattern, replacement) -%}
    {{ return(adapter.dispatch('regexp_replace_all', 'shoprank')(expression, pattern, replacement)) }}
{%- endmacro %}

{% macro default__regexp_replace_all(expression, pattern, replacement) -%}
    regexp_replace({{ expression }}, {{ sql_string(pattern) }}, {{ sql_string(replacement) }})
{%- endmacro %}

{% macro duckdb__regexp_replace_all(expression, pattern, replacement) -%}
    regexp_replace({{ expression }}, {{ sql_string(pattern) }}, {{ sql_string(replacement) }}, 'g')
{%- endmacro %}

{#- Hex SHA-256 of a text expression. -#}
{% macro sha256_hex(expression) -%}
    {{ return(adapter.dispatch('sha256_hex', 'shoprank')(expression)) }}
{%- endmacro %}

{% macro default__sha256_hex(expression) -%}
    sha2({{ expression }}, 256)
{%- endmacro %}

{% macro duckdb__sha256_hex(expression) -%}
    sha256({{ expression }})
{%- endmacro %}

{#- The date `days` days after (or before, when negative) a date or timestamp expression. -#}
{% macro add_days(days, expression) -%}
    cast({{ dbt.dateadd('day', days, expression) }} as date)
{%- endmacro %}

{#- A date as the timestamp of its midnight (UTC). -#}
{% macro midnight(date_expression) -%}
    cast({{ date_expression }} as {{ dbt.type_timestamp() }})
{%- endmacro %}

{#- One row per date from `start_date` up to and excluding `end_date` (column `day`), where both
    bounds are columns of `bounds_relation` (a one-row CTE). -#}
{% macro day_series(bounds_relation, start_date, end_date) -%}
    {{ return(adapter.dispatch('day_series', 'shoprank')(bounds_relation, start_date, end_date)) }}
{%- endmacro %}

{% macro default__day_series(bounds_relation, start_date, end_date) -%}
    select explode(sequence({{ start_date }}, {{ add_days(-1, end_date) }}, interval 1 day)) as day
    from {{ bounds_relation }}
{%- endmacro %}

{% macro duckdb__day_series(bounds_relation, start_date, end_date) -%}
    select cast(range as date) as day
    from {{ bounds_relation }}, range({{ start_date }}, {{ end_date }}, interval 1 day)
{%- endmacro %}

{#- Microseconds elapsed from one timestamp to another (an integer; null when either is null).
    dbt.datediff counts boundaries on DuckDB (10:29:59 to 10:30:00 is one minute) and rounds
    whole seconds up on Spark, so the two disagree on a gap near a limit; this does not. -#}
{% macro micros_between(first, second) -%}
    {{ return(adapter.dispatch('micros_between', 'shoprank')(first, second)) }}
{%- endmacro %}

{% macro default__micros_between(first, second) -%}
    (unix_micros(cast({{ second }} as timestamp)) - unix_micros(cast({{ first }} as timestamp)))
{%- endmacro %}

{% macro duckdb__micros_between(first, second) -%}
    (epoch_us({{ second }}) - epoch_us({{ first }}))
{%- endmacro %}
