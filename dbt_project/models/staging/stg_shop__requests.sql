-- One row per item shown in a served list; surfaces and queries normalized.
with source as (
    {{ committed_rows('requests') }}
),

renamed as (
    select
        request_id,
        request_time,
        cast(request_time as date) as request_date,
        user_id,
        session_id as source_session_id,
        lower(trim(surface)) as surface,
        {{ scrub_pii('query') }} as query,
        {{ normalize_query('query') }} as query_norm,
        item_id,
        position,
        _loaded_at
    from source
)

select * from renamed
