"""Validate a batch against its contract and write it: accepted rows to ``raw``, rejected rows to
``quarantine`` with their reason, duplicates skipped; then count what happened.

For every table and source ``read = accepted + quarantined + duplicates``. A row is a duplicate
when a row with the same key (``RawTable.key``) is already in the warehouse or earlier in the
batch; a rejected row is a duplicate when the same text was already quarantined (from any file:
a file moved or copied elsewhere is not quarantined twice).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pandera.polars as pa
import polars as pl

from shoprank.contracts import RAW_TABLES
from shoprank.contracts.raw import in_parent_cycles
from shoprank.errors import InputError
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
        _refuse_unchecked(batch, exc.failure_cases)
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
        reasons = (
            pl.select(pl.concat_str([cast_reasons, check_reasons], separator="; ", ignore_nulls=True))
            .to_series()
            .replace("", None)
        )
    return typed, reasons


def _refuse_unchecked(batch: Batch, failures: pl.DataFrame) -> None:
    """A check that failed without naming rows (it raised) leaves rows unchecked: refuse the batch
    rather than accept them."""
    unchecked = failures.filter(pl.col("index").is_null())
    if unchecked.height:
        column, check, case = unchecked.select("column", "check", "failure_case").row(0)
        raise InputError(
            f'File "{batch.source}": the {batch.table} contract could not check column "{column}" ({check}: {case}); '
            "fix the values of that column, or report it with the file's first rows if they look right"
        )


@dataclass(frozen=True)
class Sorted:
    """A batch split by its contract: rows to accept and rows to quarantine (as text, with reasons)."""

    table: str
    accepted: pl.DataFrame
    rejected: pl.DataFrame


def sort_rows(batch: Batch, sources: pl.Series, now: datetime) -> Sorted:
    """Validate ``batch``; keep the first row of each key among the valid ones.

    ``sources`` holds each row's source file (a batch may gather several small files).
    """
    table = RAW_TABLES[batch.table]
    typed, reasons = rejection_reasons(batch, now)
    conflicting = _conflicting(typed, reasons.is_null(), table)
    reasons = pl.select(pl.when(conflicting).then(pl.lit(conflict(table))).otherwise(reasons)).to_series()
    rejected_mask = reasons.is_not_null()
    accepted = typed.with_columns(_source=sources).filter(~rejected_mask).filter(_key(table).is_first_distinct())
    rejected = _rejected(
        _as_text(batch.frame.filter(rejected_mask), list(table.columns)),
        reasons.filter(rejected_mask),
        sources.filter(rejected_mask),
    ).unique(subset=["_row_hash"], keep="first", maintain_order=True)
    return Sorted(batch.table, accepted, rejected)


def _rejected(text: pl.DataFrame, reasons: pl.Series | pl.Expr, sources: pl.Series) -> pl.DataFrame:
    """Rows to quarantine: their contract columns as text, their reason, the hash of their text
    (what makes a quarantined row a duplicate) and their source."""
    return text.with_columns(_reason=reasons, _row_hash=text.hash_rows(seed=0), _source=sources)


def conflict(table) -> str:
    """The quarantine reason of a row whose key an accepted row with other values has."""
    return f"{', '.join(table.key)}: conflict (a row with this key and other values was accepted first)"


def _key(table) -> pl.Expr:
    """A row's key (``RawTable.key``) as one expression."""
    return pl.col(table.key[0]) if len(table.key) == 1 else pl.struct(table.key)


def _content(table) -> list[str]:
    """The columns of ``table`` outside its key: what a conflict differs in."""
    return [column for column in table.columns if column not in table.key]


def _conflicting(typed: pl.DataFrame, valid: pl.Series, table) -> pl.Series:
    """Per row of ``typed``: whether it is valid and an earlier valid row has its key but other values."""
    content = _content(table)
    flags = pl.Series("conflict", [False] * typed.height)
    if not content or not typed.height:
        return flags
    rows = typed.with_row_index("_row").filter(valid).filter(_key(table).is_duplicated())  # the rest cannot conflict
    first = [pl.col(column).first().over(table.key) for column in content]
    differs = pl.any_horizontal([pl.col(c).ne_missing(f) for c, f in zip(content, first, strict=True)])
    return flags.scatter(rows.filter(differs)["_row"], True)


def write_rows(con: duckdb.DuckDBPyConnection, rows: Sorted, now: datetime, batch_id: str) -> None:
    """Insert sorted rows inside the caller's transaction, skipping rows already in the warehouse
    (quarantining those whose key is stored with other values: conflicts)."""
    table = RAW_TABLES[rows.table]
    lineage = [batch_id, now]
    accepted = rows.accepted
    if table.name == "categories" and accepted.height:
        accepted = _without_stored_cycles(con, accepted, lineage)
    if accepted.height:
        # probing only the stored rows within the batch's range of its first key column lets
        # DuckDB skip most row groups when keys arrive roughly in order (sequential ids, times)
        first = table.key[0]
        low, high = accepted.get_column(first).min(), accepted.get_column(first).max()
        on = " and ".join(f'a."{k}" is not distinct from r."{k}"' for k in table.key)
        columns = ", ".join(f'a."{c}"' for c in table.columns)
        con.register("accepted_rows", accepted.to_arrow())
        _quarantine_conflicts(con, table, on, columns, (low, high), lineage)
        con.execute(
            f"""insert into raw.{table.name}
                select {columns}, a._source, ?, ? from accepted_rows a
                anti join (select * from raw.{table.name} where "{first}" between ? and ?) r on {on}""",
            [*lineage, low, high],
        ).fetchall()
        con.unregister("accepted_rows")
    if rows.rejected.height:
        _quarantine(con, table.name, rows.rejected, lineage)


def _quarantine(con: duckdb.DuckDBPyConnection, table: str, rejected: pl.DataFrame, lineage: list) -> None:
    """Insert ``rejected`` rows (text, ``_reason``, ``_row_hash``, ``_source``) into
    ``quarantine.<table>``, but those whose text is quarantined already."""
    con.register("rejected_rows", rejected.to_arrow())
    con.execute(
        f"""insert into quarantine.{table}
            select q.*, ?, ? from rejected_rows q
            anti join quarantine.{table} seen using (_row_hash)""",
        lineage,
    ).fetchall()
    con.unregister("rejected_rows")


def _quarantine_conflicts(
    con: duckdb.DuckDBPyConnection, table, on: str, columns: str, bounds: tuple, lineage: list
) -> None:
    """Quarantine the accepted rows (registered as ``accepted_rows``; ``on``: their key's join with
    a stored row ``r``; ``columns``: theirs as selected) whose key is stored with other values, as
    text of their typed values, with the conflict's reason."""
    content = _content(table)
    if not content:
        return
    differs = " or ".join(f'a."{c}" is distinct from r."{c}"' for c in content)
    stored = f'select * from raw.{table.name} where "{table.key[0]}" between ? and ?'
    query = f"select {columns}, a._source from accepted_rows a join ({stored}) r on {on} where {differs}"
    _quarantine_typed(con, table, con.sql(query, params=list(bounds)).pl(), conflict(table), lineage)


def _without_stored_cycles(con: duckdb.DuckDBPyConnection, accepted: pl.DataFrame, lineage: list) -> pl.DataFrame:
    """Quarantine the accepted categories that close a cycle of parents with the stored ones (each
    file a tree, two files a cycle); the rest of ``accepted``."""
    stored = dict(con.execute("select category_id, parent_id from raw.categories").fetchall())
    new = accepted.filter(pl.col("category_id").is_in(list(stored)).not_())
    cycling = in_parent_cycles({**dict(zip(new["category_id"], new["parent_id"], strict=True)), **stored})
    closing = pl.col("category_id").is_in(list(cycling - stored.keys()))
    _quarantine_typed(con, RAW_TABLES["categories"], new.filter(closing), "categories: parent_cycle", lineage)
    return accepted.filter(closing.not_())


def _quarantine_typed(con: duckdb.DuckDBPyConnection, table, found: pl.DataFrame, reason: str, lineage: list) -> None:
    """Quarantine typed rows (with their ``_source``) as text of their values, with ``reason``."""
    if found.height:
        text = _as_text(found, list(table.columns))
        _quarantine(con, table.name, _rejected(text, pl.lit(reason), found["_source"]), lineage)


def record_counts(
    con: duckdb.DuckDBPyConnection, batch_id: str, now: datetime, read: dict[tuple[str, str], int]
) -> dict[str, TableCounts]:
    """Count what a run did per table and source file, and log it in ``raw.ingest_batches``.

    Args:
        read: Rows read per (table, source file).

    Returns:
        The counts per table; duplicates are the rows neither accepted nor quarantined.
    """
    totals: dict[str, TableCounts] = {}
    for table in sorted({t for t, _ in read}):
        accepted = dict(
            con.execute(
                f"select _source, count(*) from raw.{table} where _batch_id = ? group by 1", [batch_id]
            ).fetchall()
        )
        reasons = con.execute(
            f"select _source, _reason, count(*) from quarantine.{table} where _batch_id = ? group by 1, 2", [batch_id]
        ).fetchall()
        counts = totals.setdefault(table, TableCounts())
        for (name, source), rows in read.items():
            if name != table:
                continue
            quarantined = sum(n for src, _, n in reasons if src == source)
            file_counts = TableCounts(rows, accepted.get(source, 0), quarantined)
            file_counts.duplicates = rows - file_counts.accepted - quarantined
            file_counts.reasons = Counter({reason: n for src, reason, n in reasons if src == source})
            counts.add(file_counts)
            con.execute(
                "insert into raw.ingest_batches values (?, ?, ?, ?, ?, ?, ?, ?)",
                [batch_id, table, source, now, rows, file_counts.accepted, quarantined, file_counts.duplicates],
            )
    return totals


def _as_text(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """The contract columns of ``frame`` as text, exactly as read (absent ones null)."""
    return frame.select(
        [(pl.col(c).cast(pl.Utf8) if c in frame.columns else pl.lit(None, dtype=pl.Utf8)).alias(c) for c in columns]
    )
