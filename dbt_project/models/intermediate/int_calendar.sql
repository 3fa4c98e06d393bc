-- One row per day from the first to the last day with events: `activity_date`, and `as_of_date`,
-- the boundary (its end, midnight UTC) at which that day's activity becomes known.
with bounds as (
    select min(event_date) as first_day, {{ add_days(1, 'max(event_date)') }} as end_day
    from {{ ref('int_events_sessionized') }}
),

days as (
    {{ day_series('bounds', 'first_day', 'end_day') }}
)

select
    day as activity_date,
    {{ add_days(1, 'day') }} as as_of_date
from days
