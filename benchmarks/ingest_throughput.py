"""Ingest throughput from Parquet, side by side with its anchors, in one run.

    python benchmarks/ingest_throughput.py [preset]      # default: medium (~2.3M events)

Paths, each in its own process (wall time includes reading the files and starting Python):
  duckdb load     DuckDB reads the Parquet parts into a table: no contract, no dedup (the limit)
  pandera only    Polars reads the parts and the events contract validates them lazily
  shoprank        `shoprank ingest` of the events: cast, validate, quarantine, dedup, one transaction
  shoprank again  the same files again: every row found to be a duplicate
Target of the foundation issue: at least 500k events/s.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

WORK = Path(__file__).resolve().parent / "work" / "ingest"
TARGET = 500_000

DUCKDB_LOAD = """
import duckdb, sys
con = duckdb.connect(sys.argv[2])
con.execute(f"create table events as select * from read_parquet('{sys.argv[1]}/*.parquet')")
print(con.execute("select count(*) from events").fetchall()[0][0])
"""
PANDERA_ONLY = """
import sys, datetime, polars as pl, pandera.polars as pa
from shoprank.contracts import RAW_TABLES
frame = pl.read_parquet(sys.argv[1] + "/*.parquet")
try:
    RAW_TABLES["events"].schema(datetime.datetime.now()).validate(frame, lazy=True)
except pa.errors.SchemaErrors as exc:
    print(len(exc.failure_cases), file=sys.stderr)
print(frame.height)
"""


def main(preset: str) -> None:
    landing = WORK / preset / "landing"
    shoprank = str(Path(sys.executable).with_name("shoprank"))
    env = {**os.environ, "SHOPRANK_HOME": str(WORK / preset)}
    if not (landing / "events").is_dir():
        measure([shoprank, "simulate", "--preset", preset], env)
    events = landing / "events"
    warehouse = WORK / preset / "warehouse.duckdb"
    anchor_db = WORK / preset / "anchor.duckdb"
    for path in (warehouse, anchor_db):
        path.unlink(missing_ok=True)
        Path(str(path) + ".wal").unlink(missing_ok=True)

    runs = {
        "duckdb load": measure([sys.executable, "-c", DUCKDB_LOAD, str(events), str(anchor_db)], env),
        "pandera only": measure([sys.executable, "-c", PANDERA_ONLY, str(events)], env),
        "shoprank": measure([shoprank, "ingest", str(events)], env),
        "shoprank again": measure([shoprank, "ingest", str(events)], env),
    }
    rows = int(runs["duckdb load"].output.split()[-1])
    print(f"{rows:,} events from {events}")
    print(f"{'path':<16}{'seconds':>9}{'events/s':>12}{'peak MB':>9}")
    for name, run in runs.items():
        print(f"{name:<16}{run.seconds:>9.2f}{rows / run.seconds:>12,.0f}{run.peak_mb:>9.0f}")
    ours = rows / runs["shoprank"].seconds
    verdict = "meets" if ours >= TARGET else "MISSES"
    print(
        f"target: >= {TARGET:,} events/s -> {ours:,.0f} ({verdict}); "
        f"{runs['shoprank'].seconds / runs['duckdb load'].seconds:.1f}x the plain DuckDB load"
    )
    print(runs["shoprank"].output.strip())


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "medium")
