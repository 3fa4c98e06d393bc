{#- The rows of a raw table written by ingest runs that finished: a run commits chunk by chunk and
    becomes visible only when its journal entry says done (shoprank.ingest.journal). -#}
{% macro committed_rows(table) -%}
    select *
    from {{ source('shop', table) }}
    where _batch_id in (select batch_id from {{ source('shop', 'ingest_runs') }} where status = 'done')
{%- endmacro %}
