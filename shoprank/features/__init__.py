"""The Feast feature store over the dbt marts: profiles, apply, fast materialization, status."""
