-- One row per category of a category tree.
with source as (
    {{ committed_rows('categories') }}
),

renamed as (
    select
        category_id,
        parent_id,
        nullif(trim(name), '') as category_name,
        _loaded_at
    from source
)

select * from renamed
