"""One ingest run: read files (raw contract, a real dataset's format, or a mapped CSV), enforce the
contracts, and load the warehouse atomically: either every file of a run lands, or none does.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from shoprank import warehouse
from shoprank.errors import InputError
from shoprank.ingest.adapters import ADAPTERS
from shoprank.ingest.batch import Batch
from shoprank.ingest.load import TableCounts, load_batch
from shoprank.ingest.mapping import load_mapping, read_mapped
from shoprank.ingest.readers import files_under, read_contract

FORMATS = ("contract", *ADAPTERS)


@dataclass
class IngestReport:
    """Counts of one ingest run, per raw table, with the source notes and timing."""

    batch_id: str
    tables: dict[str, TableCounts] = field(default_factory=lambda: defaultdict(TableCounts))
    notes: list[str] = field(default_factory=list)
    files: int = 0
    seconds: float = 0.0

    @property
    def read(self) -> int:
        """Rows read over all tables."""
        return sum(c.read for c in self.tables.values())


def ingest(
    warehouse_path: Path,
    paths: list[Path],
    fmt: str = "contract",
    mapping_file: Path | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> IngestReport:
    """Load files into ``raw.*`` / ``quarantine.*`` in one transaction.

    Args:
        warehouse_path: The DuckDB warehouse file (created if missing).
        paths: Files or folders to read.
        fmt: ``contract`` or an adapter name (``taobao``, ``diginetica``, ``retailrocket``, ``homedepot``).
        mapping_file: A YAML column mapping; when given, ``fmt`` is ignored.
        progress: Called with (source, rows) after every batch.

    Returns:
        The run's report. ``read = accepted + quarantined + duplicates`` holds per table.

    Raises:
        InputError: Unknown format, unreadable file or mapping; nothing is written then.

    Example:
        >>> ingest(Path("data/warehouse.duckdb"), [Path("data/landing")])  # doctest: +SKIP
    """
    started = time.perf_counter()
    if mapping_file is None and fmt not in FORMATS:
        raise InputError(f'Unknown format "{fmt}"; use one of {", ".join(FORMATS)}, or --mapping FILE')
    reader = _reader(fmt, mapping_file)
    files = files_under(paths)
    report = IngestReport(batch_id=uuid.uuid4().hex[:12], files=len(files))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    con = warehouse.connect(warehouse_path)
    try:
        warehouse.create_layout(con)
        con.begin()
        try:
            for path in files:
                for batch in reader(path):
                    report.tables[batch.table].add(load_batch(con, batch, now, report.batch_id))
                    report.notes.extend(n for n in batch.notes if n not in report.notes)
                    if progress:
                        progress(batch.source, batch.frame.height)
            con.commit()
        except BaseException:
            con.rollback()
            raise
    finally:
        con.close()
    report.seconds = time.perf_counter() - started
    return report


def _reader(fmt: str, mapping_file: Path | None) -> Callable[[Path], Iterator[Batch]]:
    if mapping_file is not None:
        mapping = load_mapping(mapping_file)
        return lambda path: read_mapped(path, mapping)
    return read_contract if fmt == "contract" else ADAPTERS[fmt]
