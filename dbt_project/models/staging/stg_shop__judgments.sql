-- One row per (query, item) human grade, with the normalized query.
with source as (
    {{ committed_rows('judgments') }}
),

renamed as (
    select
        {{ scrub_pii('query') }} as query,
        {{ normalize_query('query') }} as query_norm,
        item_id,
        grade,
        _loaded_at
    from source
)

select * from renamed
