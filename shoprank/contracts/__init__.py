"""Pandera contracts at the boundaries: raw input tables (``raw``) and dbt marts (``marts``)."""

from shoprank.contracts.raw import EVENT_TYPES, RAW_TABLES, SURFACES, RawTable

__all__ = ["EVENT_TYPES", "RAW_TABLES", "SURFACES", "RawTable"]
