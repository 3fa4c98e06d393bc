"""One ingest run: read files (raw contract, a real dataset's format, or a mapped CSV), enforce the
contracts, and load the warehouse all-or-nothing: either every file of a run lands, or none does
(``shoprank.ingest.journal``).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from shoprank import warehouse
from shoprank.errors import InputError
from shoprank.ingest import journal
from shoprank.ingest.adapters import ADAPTERS
from shoprank.ingest.batch import Batch
from shoprank.ingest.lake import publish
from shoprank.ingest.load import Sorted, TableCounts, record_counts, sort_rows, write_rows
from shoprank.ingest.mapping import load_mapping, read_mapped
from shoprank.ingest.readers import CHUNK_ROWS, files_under, read_contract
from shoprank.ingest.tombstones import buried, tombstones
from shoprank.salt import DEFAULT_SALT, configured_salt

FORMATS = ("contract", *ADAPTERS)


@dataclass
class IngestReport:
    """Counts of one ingest run, per raw table, with the source notes and timing."""

    batch_id: str
    tables: dict[str, TableCounts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files: int = 0
    seconds: float = 0.0
    recovered: list[str] = field(default_factory=list)


def ingest(
    warehouse_path: Path,
    paths: list[Path],
    fmt: str = "contract",
    mapping_file: Path | None = None,
    progress: Callable[[str, int], None] | None = None,
    lake: Path | None = None,
) -> IngestReport:
    """Load files into ``raw.*`` / ``quarantine.*`` in one transaction.

    Args:
        warehouse_path: The DuckDB warehouse file (created if missing).
        paths: Files or folders to read.
        fmt: ``contract`` or an adapter name (``taobao``, ``diginetica``, ``retailrocket``, ``homedepot``).
        mapping_file: A YAML column mapping; when given, ``fmt`` is ignored.
        progress: Called with (source, rows) after every batch.
        lake: Where to publish the committed runs as Parquet for Spark (``Settings.raw_lake``).

    Returns:
        The run's report. ``read = accepted + quarantined + duplicates`` holds per table.

    Raises:
        InputError: Unknown format, unreadable file or mapping; nothing is written then.
        WarehouseError: Another shoprank command (a build, an ingest) holds the warehouse.

    Example:
        >>> ingest(Path("data/warehouse.duckdb"), [Path("data/landing")])  # doctest: +SKIP
    """
    started = time.perf_counter()
    if mapping_file is None and fmt not in FORMATS:
        raise InputError(f'Unknown format "{fmt}"; use one of {", ".join(FORMATS)}, or --mapping FILE')
    reader = _reader(fmt, mapping_file)
    files = files_under(paths)
    report = IngestReport(batch_id=uuid.uuid4().hex[:12], files=len(files))
    now = datetime.now(UTC).replace(tzinfo=None)
    read: Counter[tuple[str, str]] = Counter()
    with warehouse.writing(warehouse_path, "ingest"):
        con = warehouse.connect(warehouse_path)
        try:
            warehouse.create_layout(con)
            graves, salt = tombstones(con), configured_salt() or DEFAULT_SALT
            report.recovered = journal.recover(con)
            journal.start(con, report.batch_id, now, len(files))
            # validation of a batch (Polars) overlaps the insert of the previous one (DuckDB)
            with ThreadPoolExecutor(max_workers=1) as writer:
                writing: Future | None = None
                try:
                    for batch, sources in _gathered(reader(path) for path in files):
                        dead = buried(batch.frame, graves, salt)  # forgotten users' rows: skipped, not kept
                        if dead.any():
                            note = f"{batch.table}: {dead.sum():,} rows of forgotten users skipped (shoprank forget)"
                            report.notes.append(note)
                        rows = sort_rows(replace(batch, frame=batch.frame.filter(~dead)), sources.filter(~dead), now)
                        if writing:
                            writing.result()
                        writing = writer.submit(_write_chunk, con, rows, now, report.batch_id)
                        read.update({(batch.table, source): n for source, n in sources.value_counts().iter_rows()})
                        report.notes.extend(n for n in batch.notes if n not in report.notes)
                        if progress:
                            progress(batch.source, batch.frame.height)
                    if writing:
                        writing.result()
                    con.begin()
                    report.tables.update(record_counts(con, report.batch_id, now, dict(read)))
                    journal.finish(con, report.batch_id)
                    con.commit()
                    if lake is not None:
                        publish(con, lake)
                except BaseException:
                    if writing:
                        wait([writing])
                    with suppress(duckdb.TransactionException):  # the final transaction, if it had begun
                        con.rollback()
                    journal.roll_back(con, report.batch_id)
                    raise
        finally:
            con.close()
    report.seconds = time.perf_counter() - started
    return report


def _write_chunk(con: duckdb.DuckDBPyConnection, rows: Sorted, now: datetime, batch_id: str) -> None:
    con.begin()
    try:
        write_rows(con, rows, now, batch_id)
        con.commit()
    except BaseException:
        con.rollback()
        raise


def _gathered(files: Iterator[Iterator[Batch]]) -> Iterator[tuple[Batch, pl.Series]]:
    """Gather the batches of small files into batches of about ``CHUNK_ROWS`` rows per table (each
    validation and insert has a fixed cost); yield each with the source file of every row."""
    pending: dict[str, list[Batch]] = defaultdict(list)

    def flush(table: str) -> tuple[Batch, pl.Series]:
        batches = pending.pop(table)
        frame = pl.concat([b.frame for b in batches], how="diagonal_relaxed")
        sources = pl.concat([pl.repeat(b.source, b.frame.height, dtype=pl.Utf8, eager=True) for b in batches])
        label = batches[0].source if len(batches) == 1 else f"{len(batches)} files"
        notes = tuple(n for b in batches for n in b.notes)
        return Batch(table, frame, label, notes), sources.alias("_source")

    for batches in files:
        for batch in batches:
            pending[batch.table].append(batch)
            if sum(b.frame.height for b in pending[batch.table]) >= CHUNK_ROWS:
                yield flush(batch.table)
    for table in list(pending):
        yield flush(table)


def _reader(fmt: str, mapping_file: Path | None) -> Callable[[Path], Iterator[Batch]]:
    if mapping_file is not None:
        mapping = load_mapping(mapping_file)
        return lambda path: read_mapped(path, mapping)
    return read_contract if fmt == "contract" else ADAPTERS[fmt]
