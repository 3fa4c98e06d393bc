"""``shoprank validate``: check the built marts against their Pandera contracts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandera.polars as pa
import polars as pl

from shoprank import warehouse
from shoprank.config import Settings
from shoprank.contracts.marts import mart_schemas
from shoprank.errors import ContractError, WarehouseError


@dataclass(frozen=True)
class MartReport:
    """One mart that passed its contract."""

    name: str
    rows: int
    columns: int
    seconds: float


def validate_marts(settings: Settings, progress: Callable[..., None] | None = None) -> list[MartReport]:
    """Validate every mart of the warehouse (through the views dbt made over their Parquet files).

    ``progress(1, mart, total)`` is called after each mart.

    Raises:
        WarehouseError: The marts have not been built.
        ContractError: A mart breaks its contract; the message lists each failed check.
    """
    con = warehouse.connect(settings.warehouse, read_only=True)
    try:
        horizon = _horizon(con)
        reports = []
        schemas = mart_schemas(horizon)
        for name, schema in schemas.items():
            started = time.perf_counter()
            frame = _read_mart(con, name)
            try:
                schema.validate(frame, lazy=True)
            except pa.errors.SchemaErrors as exc:
                raise ContractError(
                    f'Mart "{name}" breaks its contract: {describe_failures(exc.failure_cases)}; '
                    'fix the dbt model (dbt_project/models/marts) and run "shoprank build"'
                ) from None
            reports.append(MartReport(name, frame.height, frame.width, time.perf_counter() - started))
            if progress:
                progress(1, name, len(schemas))
        return reports
    finally:
        con.close()


def describe_failures(failures: pl.DataFrame, limit: int = 5) -> str:
    """One line per failed check: where, what, how many rows and an example value."""
    grouped = (
        failures.group_by("column", "check", maintain_order=True)
        .agg(pl.len().alias("rows"), pl.col("failure_case").first().alias("example"))
        .head(limit)
    )
    parts = [
        f"{row['column'] or 'table'}: {row['check']} ({row['rows']} rows, e.g. {row['example']})"
        for row in grouped.iter_rows(named=True)
    ]
    return "; ".join(parts)


def _horizon(con: duckdb.DuckDBPyConnection) -> datetime:
    try:
        (horizon,) = con.execute("select max(as_of_date) from intermediate.int_calendar").fetchall()[0]
    except duckdb.CatalogException:
        raise WarehouseError('The marts have not been built yet; run "shoprank build" first') from None
    return datetime.combine(horizon, datetime.min.time()) if horizon else datetime.max


def _read_mart(con: duckdb.DuckDBPyConnection, name: str) -> pl.DataFrame:
    try:
        return con.sql(f"select * from marts.{name}").pl()
    except (duckdb.CatalogException, duckdb.IOException) as exc:
        raise WarehouseError(
            f'Mart "{name}" cannot be read ({str(exc).splitlines()[0]}); run "shoprank build" first'
        ) from None
