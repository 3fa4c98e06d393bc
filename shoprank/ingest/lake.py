"""The raw lake of the distributed profile: the accepted rows of every ingest run as Parquet files,
which Spark reads as the raw tables (``dbt_project/macros/spark.sql`` registers them).

``<lake>/<table>/<batch_id>.parquet`` holds the rows run ``batch_id`` accepted into
``raw.<table>`` (a file per table, empty ones too, so Spark always knows each table's columns);
``<lake>/ingest_runs/<batch_id>.parquet``, written last, is the run's journal row. Staging reads
only rows of runs listed there as done (``committed_rows``), so a run cut off while it was being
published stays invisible, and the next ingest publishes it again. Files are written under a
hidden name, which Spark skips, and renamed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from shoprank.contracts import RAW_TABLES
from shoprank.ingest.journal import DONE
from shoprank.warehouse import literal

JOURNAL = "ingest_runs"


def publish(con: duckdb.DuckDBPyConnection, lake: Path, again: bool = False) -> list[str]:
    """Write the runs marked done in the warehouse that the lake does not hold yet (``again``:
    every run, the lake rewritten, e.g. after ``shoprank forget``); return their ids."""
    if again:
        shutil.rmtree(lake, ignore_errors=True)
    done = con.execute(f"select batch_id from raw.{JOURNAL} where status = ? order by started_at", [DONE]).fetchall()
    published = {path.stem for path in (lake / JOURNAL).glob("*.parquet")}
    new = [batch for (batch,) in done if batch not in published]
    for batch in new:
        for table in RAW_TABLES:
            _write(con, f"select * from raw.{table} where _batch_id = ?", batch, lake / table / f"{batch}.parquet")
        _write(con, f"select * from raw.{JOURNAL} where batch_id = ?", batch, lake / JOURNAL / f"{batch}.parquet")
    return new


def _write(con: duckdb.DuckDBPyConnection, select: str, batch: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    hidden = path.with_name(f".{path.name}")
    con.execute(f"copy ({select}) to {literal(hidden)} (format parquet)", [batch])
    os.replace(hidden, path)
