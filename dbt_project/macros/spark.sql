{#- The distributed profile (Spark): ingest writes each raw table as a folder of Parquet files
    under <workdir>/raw/<table>/ (shoprank.ingest.lake); before a run each table of the `shop`
    source is registered in the `raw` schema, which the source reads as it reads DuckDB's. -#}
{% macro register_raw_tables() -%}
    {{ return(adapter.dispatch('register_raw_tables', 'shoprank')()) }}
{%- endmacro %}

{% macro default__register_raw_tables() -%}
    {%- if execute -%}
        {%- set root = env_var('SHOPRANK_HOME', '../data') ~ '/raw' -%}
        {%- do run_query('create schema if not exists raw') -%}
        {%- for source in graph.sources.values() if source.source_name == 'shop' -%}
            {%- set table = 'raw.' ~ source.name -%}
            {%- do run_query('create table if not exists ' ~ table ~ ' using parquet location '
                             ~ sql_string(root ~ '/' ~ source.name)) -%}
            {%- do run_query('refresh table ' ~ table) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__register_raw_tables() -%}
{%- endmacro %}

{#- A mart Feast reads (DuckDB: `external`, one Parquet file in marts/): on Spark a Parquet table
    at marts/<name>/, a folder of part files (`location_root`, set for marts in dbt_project.yml).
    Its timestamps are written without a time zone (timestamp_ntz), as DuckDB writes them: naive
    UTC, so every reader of the marts sees the same types on both profiles. -#}
{% materialization external, adapter='spark' -%}
    {%- set target_relation = api.Relation.create(
            identifier=model['alias'], schema=schema, database=database, type='table') -%}
    {%- set columns = [] -%}
    {%- for row in run_query('describe query ' ~ compiled_code).rows -%}
        {%- set name = '`' ~ row[0] ~ '`' -%}
        {%- do columns.append('cast(' ~ name ~ ' as timestamp_ntz) as ' ~ name if row[1] == 'timestamp' else name) -%}
    {%- endfor -%}
    {{ run_hooks(pre_hooks) }}
    {%- do adapter.drop_relation(target_relation) -%}
    {%- call statement('main') -%}
        create table {{ target_relation }} using parquet
        location '{{ config.get('location_root') }}/{{ model['alias'] }}'
        as select {{ columns | join(', ') }} from ({{ compiled_code }}) as mart
    {%- endcall -%}
    {{ run_hooks(post_hooks) }}
    {{ return({'relations': [target_relation]}) }}
{%- endmaterialization %}

{#- Snapshots on Spark without Delta, Iceberg or Hudi (their jars cannot be fetched here): the
    same staging of dbt's snapshot strategy, then instead of `merge into` (which Parquet tables do
    not support) the table is rewritten: its rows with the closed versions' dbt_valid_to set, plus
    the new versions. -#}
{% materialization snapshot, adapter='spark' -%}
    {%- set target_relation_exists, target_relation = get_or_create_relation(
            database=none, schema=model.schema, identifier=model.get('alias', model.get('name')), type='table') -%}
    {%- if not adapter.check_schema_exists(model.database, model.schema) -%}
        {%- do create_schema(model.schema) -%}
    {%- endif -%}
    {{ run_hooks(pre_hooks) }}
    {%- set strategy = strategy_dispatch(config.get('strategy'))(
            model, "snapshotted_data", "source_data", model['config'], target_relation_exists) -%}
    {%- if not target_relation_exists -%}
        {%- call statement('main') -%}
            {{ create_table_as(False, target_relation, build_snapshot_table(strategy, model['compiled_code'])) }}
        {%- endcall -%}
    {%- else -%}
        {%- set columns = config.get("snapshot_table_column_names") or get_snapshot_table_column_names() -%}
        {%- set staging = spark_build_snapshot_staging_table(strategy, sql, target_relation) -%}
        {%- set names = adapter.get_columns_in_relation(target_relation) | map(attribute='name') | list -%}
        {%- set rewritten = make_temp_relation(target_relation, '__dbt_rewrite') -%}
        {%- call statement('rewrite') -%}
            create table {{ rewritten }} using parquet as
            select
                {%- for name in names %}
                {% if name == columns.dbt_valid_to -%}
                coalesce(d.{{ name }}, closed.{{ columns.dbt_valid_to }}) as {{ name }}
                {%- else -%}
                d.{{ name }}
                {%- endif %}{{ ',' if not loop.last }}
                {%- endfor %}
            from {{ target_relation }} d
            left join (
                select {{ columns.dbt_scd_id }}, {{ columns.dbt_valid_to }} from {{ staging }}
                where dbt_change_type in ('update', 'delete')
            ) closed on closed.{{ columns.dbt_scd_id }} = d.{{ columns.dbt_scd_id }}
            union all
            select {{ names | join(', ') }} from {{ staging }} where dbt_change_type = 'insert'
        {%- endcall -%}
        {%- call statement('main') -%}
            insert overwrite table {{ target_relation }} select * from {{ rewritten }}
        {%- endcall -%}
        {%- do adapter.drop_relation(rewritten) -%}
        {%- do post_snapshot(staging) -%}
    {%- endif -%}
    {{ run_hooks(post_hooks) }}
    {{ adapter.commit() }}
    {{ return({'relations': [target_relation]}) }}
{%- endmaterialization %}
