{#- Event-sized models are rebuilt by day: a run deletes and rewrites every day from the first
    day that received new rows (rows loaded after the newest load this model has seen). -#}

{#- Config of a day-partitioned incremental model, for DuckDB and Spark alike. -#}
{% macro day_partitioned(date_column) -%}
    {%- if target.type == 'duckdb' -%}
        {{ return({'materialized': 'incremental', 'unique_key': date_column,
                   'incremental_strategy': 'delete+insert', 'on_schema_change': 'fail'}) }}
    {%- else -%}
        {{ return({'materialized': 'incremental', 'partition_by': [date_column],
                   'incremental_strategy': 'insert_overwrite', 'on_schema_change': 'fail'}) }}
    {%- endif -%}
{%- endmacro %}

{#- The first day to rebuild: the earliest `date_column` among rows of `relation` loaded after
    this model's newest `_loaded_at` (null when nothing new arrived). -#}
{% macro rebuild_from(relation, date_column) -%}
    (select min({{ date_column }}) from {{ relation }}
     where _loaded_at > (select max(_loaded_at) from {{ this }}))
{%- endmacro %}
