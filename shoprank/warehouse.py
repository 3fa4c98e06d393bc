"""The DuckDB warehouse: connections and the layout of the ``raw`` and ``quarantine`` schemas.

``raw.<table>`` holds accepted rows in contract types plus lineage columns; ``quarantine.<table>``
holds rejected rows as text, exactly as read, with the reason; ``raw.ingest_runs`` journals every
ingest run (see ``shoprank.ingest.journal``) and ``raw.ingest_batches`` its counts per source file.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

from shoprank.config import Settings
from shoprank.contracts import RAW_TABLES
from shoprank.errors import WarehouseError

LINEAGE = {"_source": "VARCHAR", "_batch_id": "VARCHAR", "_loaded_at": "TIMESTAMP"}
_SQL_TYPES = {pl.Utf8: "VARCHAR", pl.Int32: "INTEGER", pl.Float64: "DOUBLE", pl.Datetime("us"): "TIMESTAMP"}


MEMORY_VARIABLE = "SHOPRANK_DUCKDB_MEMORY"
DEFAULT_MEMORY = "4GB"
DRIVER_MEMORY = "2GB"  # the distributed profile's default: half the driver's 4 GB, the rest for Python


def memory_limit() -> str:
    """DuckDB's memory cap (``SHOPRANK_DUCKDB_MEMORY``; default 4GB, and ``DRIVER_MEMORY`` where the
    CLI runs the distributed profile): beyond it, DuckDB spills to disk."""
    return os.environ.get(MEMORY_VARIABLE, DEFAULT_MEMORY)


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file, creating its folder when writing.

    DuckDB's memory is capped (``SHOPRANK_DUCKDB_MEMORY``, default 4GB, as for dbt in
    ``profiles.yml``): beyond it, large loads and joins spill to disk instead of growing with
    the data.

    Raises:
        WarehouseError: The file is missing (read-only) or locked by another process.
    """
    if read_only and not path.is_file():
        raise WarehouseError(f'Warehouse "{path}" does not exist; run "shoprank ingest" or "shoprank pipeline" first')
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return duckdb.connect(str(path), read_only=read_only, config={"memory_limit": memory_limit()})
    except duckdb.IOException as exc:
        raise WarehouseError(
            f'Warehouse "{path}" cannot be opened ({str(exc).splitlines()[0]}); '
            "close the other program that holds it (a DuckDB shell, a notebook, dbt) and retry"
        ) from None


@contextmanager
def writing(path: Path, command: str) -> Iterator[int]:
    """Hold the warehouse at ``path`` for ``command`` (``build``, ``ingest``...) while the block
    runs: one writing shoprank command at a time. The hold is an exclusive ``flock`` on the file
    beside it (``<warehouse>.lock``, which names the holder's pid and command); the kernel drops it
    when the holder ends, however it ends. Yields the lock's file descriptor: a child process given
    it (``pass_fds``) holds the warehouse with its parent, until both have ended.

    Raises:
        WarehouseError: Another process holds the warehouse; the message names its command and pid.
    """
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, held_by = os.pread(fd, 256, 0).decode(errors="replace").strip().partition(" ")
            holder = f"another shoprank {held_by} (pid {pid})" if held_by else "another shoprank command"
            raise WarehouseError(
                f'{holder} holds the warehouse "{path}"; wait for it to finish (or stop it) and retry'
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        yield fd
    finally:
        os.close(fd)


def create_layout(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw and quarantine schemas and tables if they do not exist yet."""
    con.execute("create schema if not exists raw; create schema if not exists quarantine")
    lineage = ", ".join(f"{name} {kind}" for name, kind in LINEAGE.items())
    for table in RAW_TABLES.values():
        typed = ", ".join(f'"{name}" {_SQL_TYPES[dtype]}' for name, dtype in table.columns.items())
        text = ", ".join(f'"{name}" VARCHAR' for name in table.columns)
        con.execute(f"create table if not exists raw.{table.name} ({typed}, {lineage})")
        con.execute(
            f"create table if not exists quarantine.{table.name} ({text}, _reason VARCHAR, _row_hash UBIGINT, {lineage})"
        )
    con.execute(
        """create table if not exists raw.ingest_runs (
            batch_id VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP, status VARCHAR, files BIGINT)"""
    )
    con.execute(
        """create table if not exists raw.ingest_batches (
            batch_id VARCHAR, "table" VARCHAR, _source VARCHAR, _loaded_at TIMESTAMP,
            "read" BIGINT, accepted BIGINT, quarantined BIGINT, duplicates BIGINT)"""
    )


def literal(text: str | Path) -> str:
    """``text`` as a DuckDB string literal (a file path in ``read_parquet``, ``copy ... to``)."""
    return "'" + str(text).replace("'", "''") + "'"


def parquet(path: Path) -> str:
    """A Parquet table for DuckDB's ``read_parquet`` or Polars' ``scan_parquet``: the file, or
    the parts of a folder (a table as Spark writes it)."""
    return str(path / "*.parquet") if path.is_dir() else str(path)


def mart(settings: Settings, name: str) -> str:
    """A dbt mart's Parquet, as ``parquet`` gives it.

    Raises:
        WarehouseError: The mart is missing.
    """
    path = settings.mart(name)
    if not path.exists():
        raise WarehouseError(f'Mart "{path}" does not exist; run "shoprank build" (or "shoprank pipeline")')
    return parquet(path)


def attach_tables(con: duckdb.DuckDBPyConnection, schema: str, tables: Path) -> None:
    """Make the tables Spark wrote under ``tables`` (a folder of Parquet parts per table, day
    partitions as ``day=...`` subfolders) views of ``schema`` in the warehouse, so every reader of
    the warehouse reads them as it reads DuckDB's (the distributed profile). Timestamps Spark
    stored as UTC instants read as naive UTC."""
    con.execute(f"create schema if not exists {schema}")
    for folder in sorted(path for path in tables.iterdir() if path.is_dir() and any(path.rglob("*.parquet"))):
        files = f"read_parquet({literal(folder / '**' / '*.parquet')}, hive_partitioning = true)"
        columns = [
            f'timezone(\'UTC\', "{name}") as "{name}"' if kind.startswith("TIMESTAMP WITH") else f'"{name}"'
            for name, kind, *_ in con.execute(f"describe select * from {files}").fetchall()
        ]
        con.execute(f'create or replace view {schema}."{folder.name}" as select {", ".join(columns)} from {files}')


def table_counts(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, int]:
    """Row count of every table in ``schema`` (empty when the schema does not exist)."""
    names = con.execute(
        "select table_name from information_schema.tables where table_schema = ? order by table_name", [schema]
    ).fetchall()
    return {name: con.execute(f'select count(*) from {schema}."{name}"').fetchone()[0] for (name,) in names}


def read(path: Path, select: str) -> pl.DataFrame:
    """The rows of a ``select`` over the warehouse at ``path``, opened read-only.

    Raises:
        WarehouseError: The warehouse, or a model the select reads, is missing.
    """
    with connect(path, read_only=True) as warehouse:
        try:
            return warehouse.sql(select).pl()
        except duckdb.CatalogException as exc:
            raise WarehouseError(
                f'Warehouse "{path}" cannot answer "{select}" ({str(exc).splitlines()[0]}); run "shoprank build"'
            ) from None
