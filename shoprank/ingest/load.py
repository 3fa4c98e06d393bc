"""Validate a batch against its contract and write it: accepted rows to ``raw``, rejected rows to
``quarantine`` with their reason, duplicates counted and skipped.

For every batch ``read = accepted + quarantined + duplicates``. A row is a duplicate when a row
with the same key (``RawTable.key``) is already in the warehouse or earlier in the batch; a
rejected row is a duplicate when the same text was already quarantined from the same source.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandera.polars as pa
import polars as pl

from shoprank.contracts import RAW_TABLES
from shoprank.ingest.batch import Batch, coerce


@dataclass
class TableCounts:
    """What happened to the rows of one table."""

    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    reasons: Counter = field(default_factory=Counter)

    def add(self, other: TableCounts) -> None:
        """Accumulate another batch's counts."""
        self.read += other.read
        self.accepted += other.accepted
        self.quarantined += other.quarantined
        self.duplicates += other.duplicates
        self.reasons.update(other.reasons)


def rejection_reasons(batch: Batch, now: datetime) -> tuple[pl.DataFrame, pl.Series]:
    """Cast and validate a batch lazily (collecting every failure).

    Returns:
        The typed frame and one reason per row: null for valid rows, otherwise every failed check
        as ``"<column>: <check>"`` joined by ``"; "``.
    """
    typed, cast_reasons = coerce(batch.frame, batch.table)
    reasons = cast_reasons
    try:
        RAW_TABLES[batch.table].schema(now).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        failures = (
            exc.failure_cases.filter(pl.col("index").is_not_null())
            .select(
                pl.col("index"),
                pl.when(pl.col("column").is_null())
                .then(pl.col("check"))
                .otherwise(pl.col("column") + ": " + pl.col("check"))
                .alias("reason"),
            )
            .unique(maintain_order=True)
            .group_by("index", maintain_order=True)
            .agg(pl.col("reason").str.join("; "))
        )
        check_reasons = (
            pl.DataFrame({"index": pl.int_range(typed.height, eager=True, dtype=pl.Int32)})
            .join(failures.with_columns(pl.col("index").cast(pl.Int32)), on="index", how="left")
            .get_column("reason")
        )
        reasons = pl.select(
            pl.concat_str([cast_reasons, check_reasons], separator="; ", ignore_nulls=True)
        ).to_series().replace("", None)
    return typed, reasons


def load_batch(con: duckdb.DuckDBPyConnection, batch: Batch, now: datetime, batch_id: str) -> TableCounts:
    """Validate ``batch`` and insert it into the warehouse inside the caller's transaction."""
    table = RAW_TABLES[batch.table]
    typed, reasons = rejection_reasons(batch, now)
    rejected_mask = reasons.is_not_null()
    counts = TableCounts(read=batch.frame.height)
    lineage = [batch.source, batch_id, now]

    key = pl.col(table.key[0]) if len(table.key) == 1 else pl.struct(table.key)
    accepted = typed.filter(~rejected_mask).filter(key.is_first_distinct())
    con.register("accepted_rows", accepted.to_arrow())
    on = " and ".join(f'a."{k}" is not distinct from r."{k}"' for k in table.key)
    counts.accepted = con.execute(
        f"insert into raw.{table.name} select a.*, ?, ?, ? from accepted_rows a anti join raw.{table.name} r on {on}",
        lineage,
    ).fetchone()[0]
    con.unregister("accepted_rows")

    if rejected_mask.any():
        rejected = _as_text(batch.frame.filter(rejected_mask), list(table.columns)).with_columns(
            reasons.filter(rejected_mask).alias("_reason")
        )
        rejected = rejected.with_columns(_row_hash=rejected.drop("_reason").hash_rows(seed=0)).unique(
            subset="_row_hash", keep="first", maintain_order=True
        )
        con.register("rejected_rows", rejected.to_arrow())
        inserted = con.execute(
            f"""insert into quarantine.{table.name}
                select q.*, ?, ?, ? from rejected_rows q
                anti join (select _row_hash from quarantine.{table.name} where _source = ?) seen using (_row_hash)
                returning _reason""",
            [*lineage, batch.source],
        ).fetchall()
        counts.quarantined = len(inserted)
        counts.reasons = Counter(reason for (reason,) in inserted)
        con.unregister("rejected_rows")

    counts.duplicates = counts.read - counts.accepted - counts.quarantined
    con.execute(
        "insert into raw.ingest_batches values (?, ?, ?, ?, ?, ?, ?, ?)",
        [batch_id, table.name, batch.source, now, counts.read, counts.accepted, counts.quarantined, counts.duplicates],
    )
    return counts


def _as_text(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The contract columns of ``frame`` as text, exactly as read (absent ones null)."""
    return frame.select(
        [
            (pl.col(c).cast(pl.Utf8) if c in frame.columns else pl.lit(None, dtype=pl.Utf8)).alias(c)
            for c in columns
        ]
    )
