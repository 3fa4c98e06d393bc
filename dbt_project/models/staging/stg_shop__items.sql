-- One row per item version; category path split into its top level.
with source as (
    {{ committed_rows('items') }}
),

renamed as (
    select
        item_id,
        trim(title) as title,
        trim(category_path) as category_path,
        trim({{ dbt.split_part('category_path', "' > '", 1) }}) as category_top,
        nullif(trim(brand), '') as brand,
        price,
        updated_at,
        _loaded_at
    from source
)

select * from renamed
