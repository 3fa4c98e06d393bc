"""The ingest journal (``raw.ingest_runs``): how a run stays all-or-nothing with bounded memory.

A run writes its rows chunk by chunk, each chunk in its own transaction (one transaction for a
whole run would hold every uncommitted row in memory), tagged with the run's ``_batch_id``. The
run becomes visible in one final transaction that marks it ``done``; the staging models of
``dbt_project`` read only rows of ``done`` runs. A run that fails is rolled back on the spot
(its rows deleted); a run cut off harder (a killed process) is rolled back by the next ingest.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

from shoprank.contracts import RAW_TABLES

RUNNING, DONE, ROLLED_BACK = "running", "done", "rolled back"


def start(con: duckdb.DuckDBPyConnection, batch_id: str, now: datetime, files: int) -> None:
    """Record a run as running (committed at once, so a crash leaves a trace to roll back)."""
    con.execute("insert into raw.ingest_runs values (?, ?, null, ?, ?)", [batch_id, now, RUNNING, files])


def finish(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Mark a run done: its rows become visible. Call inside the run's final transaction."""
    con.execute(
        "update raw.ingest_runs set status = ?, finished_at = current_timestamp where batch_id = ?", [DONE, batch_id]
    )


def roll_back(con: duckdb.DuckDBPyConnection, batch_id: str) -> None:
    """Delete every row a run wrote, in one transaction, and mark it rolled back."""
    con.begin()
    for table in RAW_TABLES:
        for schema in ("raw", "quarantine"):
            con.execute(f"delete from {schema}.{table} where _batch_id = ?", [batch_id])
    con.execute("delete from raw.ingest_batches where batch_id = ?", [batch_id])
    con.execute("update raw.ingest_runs set status = ? where batch_id = ?", [ROLLED_BACK, batch_id])
    con.commit()


def recover(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Roll back the runs a crash left running; return their ids."""
    stale = [b for (b,) in con.execute("select batch_id from raw.ingest_runs where status = ?", [RUNNING]).fetchall()]
    for batch_id in stale:
        roll_back(con, batch_id)
    return stale


def committed_counts(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, int]:
    """Rows of each contract table of ``schema`` (``raw`` or ``quarantine``) written by runs marked
    done: what staging reads (a running or cut-off run's rows are not counted)."""
    return {
        table: con.execute(
            f"select count(*) from {schema}.{table} where _batch_id in "
            "(select batch_id from raw.ingest_runs where status = ?)",
            [DONE],
        ).fetchone()[0]
        for table in RAW_TABLES
    }
