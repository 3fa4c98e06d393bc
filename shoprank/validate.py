"""``shoprank validate``: check the built marts against their Pandera contracts."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

import duckdb
import pandera.polars as pa
import polars as pl
import pyarrow as pa_lib

from shoprank import warehouse
from shoprank.config import Settings
from shoprank.contracts.marts import MartContract, mart_contracts
from shoprank.errors import ContractError, WarehouseError

_FIX = 'fix the dbt model (dbt_project/models/marts) and run "shoprank build"'


@dataclass(frozen=True)
class MartReport:
    """One mart that passed its contract."""

    name: str
    rows: int
    columns: int
    seconds: float


CHUNK_ROWS = 1_000_000


def validate_marts(settings: Settings, progress: Callable[..., None] | None = None) -> list[MartReport]:
    """Validate every mart of the warehouse (through the views dbt made over their Parquet files).

    Rows are checked chunk by chunk and keys by DuckDB, so memory stays bounded at any scale.
    ``progress(1, mart, total)`` is called after each mart.

    Raises:
        WarehouseError: The marts have not been built.
        ContractError: A mart breaks its contract; the message lists each failed check.
    """
    con = warehouse.connect(settings.warehouse, read_only=True)
    try:
        contracts = mart_contracts(_horizon(con))
        reports = []
        for name, contract in contracts.items():
            started = time.perf_counter()
            rows, columns = _check_rows(con, name, contract)
            _check_key(con, name, contract.key)
            reports.append(MartReport(name, rows, columns, time.perf_counter() - started))
            if progress:
                progress(1, name, len(contracts))
        return reports
    finally:
        con.close()


def _check_rows(con: duckdb.DuckDBPyConnection, name: str, contract: MartContract) -> tuple[int, int]:
    rows, columns = 0, len(contract.schema.columns)
    for batch in _read_mart(con, name):
        frame = pl.from_arrow(batch)
        try:
            contract.schema.validate(frame, lazy=True)
        except pa.errors.SchemaErrors as exc:
            raise ContractError(
                f'Mart "{name}" breaks its contract: {describe_failures(exc.failure_cases)}; {_FIX}'
            ) from None
        rows, columns = rows + frame.height, frame.width
    return rows, columns


def _check_key(con: duckdb.DuckDBPyConnection, name: str, key: tuple[str, ...]) -> None:
    columns = ", ".join(key)
    repeated = con.execute(
        f"select {columns}, count(*) from marts.{name} group by all having count(*) > 1 limit 1"
    ).fetchall()
    if repeated:
        *values, count = repeated[0]
        raise ContractError(
            f'Mart "{name}" breaks its contract: key ({columns}) is not unique, e.g. {tuple(values)} '
            f"appears {count} times; {_FIX}"
        )


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


def _read_mart(con: duckdb.DuckDBPyConnection, name: str) -> Iterator[pa_lib.RecordBatch]:
    try:
        return con.sql(f"select * from marts.{name}").to_arrow_reader(CHUNK_ROWS)
    except (duckdb.CatalogException, duckdb.IOException) as exc:
        raise WarehouseError(
            f'Mart "{name}" cannot be read ({str(exc).splitlines()[0]}); run "shoprank build" first'
        ) from None
