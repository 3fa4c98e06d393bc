-- One row per user: the latest known version, pseudonymized.
with users as (
    select * from {{ ref('stg_shop__users') }}
),

latest as (
    select
        user_id,
        signup_time,
        region,
        email_hash,
        phone_hash
    from users
    qualify row_number() over (partition by user_id order by _loaded_at desc, signup_time desc) = 1
)

select * from latest
