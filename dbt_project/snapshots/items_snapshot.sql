{#- The catalog as the warehouse knew it at each build (type-2 history keyed by item_id): catalog
    feeds that overwrite their rows keep their past here. The latest version per item is
    snapshotted; int_item_versions keeps every version that was ever ingested. -#}
{% snapshot items_snapshot %}
{{ config(unique_key='item_id', strategy='timestamp', updated_at='updated_at') }}

select *
from {{ ref('stg_shop__items') }}
qualify row_number() over (partition by item_id order by updated_at desc) = 1

{% endsnapshot %}
