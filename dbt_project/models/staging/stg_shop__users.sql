-- One row per user version. PII is pseudonymized here and never leaves staging in clear.
with source as (
    {{ committed_rows('users') }}
),

pseudonymized as (
    select
        user_id,
        signup_time,
        nullif(trim(region), '') as region,
        {{ pseudonymize('email') }} as email_hash,
        {{ pseudonymize('phone') }} as phone_hash,
        _loaded_at
    from source
)

select * from pseudonymized
