-- One row per reported event; event types normalized (case, blanks).
with source as (
    {{ committed_rows('events') }}
),

renamed as (
    select
        event_id,
        event_time,
        cast(event_time as date) as reported_date,
        user_id,
        session_id as source_session_id,
        lower(trim(event_type)) as event_type,
        item_id,
        request_id,
        position,
        price,
        quantity,
        _loaded_at
    from source
)

select * from renamed
