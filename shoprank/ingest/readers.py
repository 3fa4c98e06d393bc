"""Readers for files already in the raw contract: Parquet, CSV and JSONL, in bounded chunks.

A file's table comes from its name or its folder: ``events.parquet``, ``events-2024-05.csv`` and
``events/part-00000.parquet`` all hold ``events``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import polars as pl
import pyarrow.parquet as pq

from shoprank.contracts import RAW_TABLES
from shoprank.errors import InputError
from shoprank.ingest.batch import Batch

CHUNK_ROWS = 1_000_000
SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson")


def files_under(paths: list[Path]) -> list[Path]:
    """Expand folders into the data files they hold, in a stable order.

    Raises:
        InputError: A path does not exist, or a folder holds no data file.
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f'Input "{path}" does not exist; check the path')
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
            if not inside:
                raise InputError(f'Folder "{path}" holds no {"/".join(SUFFIXES)} file; point at the data files')
            found.extend(inside)
        else:
            found.append(path)
    return found


def table_of(path: Path) -> str:
    """The raw table a contract file holds, from its name or its parent folder's name.

    Raises:
        InputError: Neither names a raw table.
    """
    stem = path.name.split(".")[0].split("-")[0].split("_")[0].lower()
    for candidate in (stem, path.parent.name.lower()):
        if candidate in RAW_TABLES:
            return candidate
    raise InputError(
        f'Cannot tell which raw table "{path}" holds; name the file or its folder after one of '
        f"{', '.join(RAW_TABLES)} (e.g. events.parquet), or pass --format / --mapping"
    )


def read_contract(path: Path) -> Iterator[Batch]:
    """Yield the rows of a contract file in chunks of at most ``CHUNK_ROWS``.

    Raises:
        InputError: Unknown extension or a file the format's reader rejects.
    """
    table = table_of(path)
    for frame in _chunks(path):
        yield Batch(table=table, frame=frame, source=str(path))


def _chunks(path: Path) -> Iterator[pl.DataFrame]:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            for record_batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS):
                yield pl.from_arrow(record_batch)
        elif suffix == ".csv":
            reader = pl.read_csv_batched(path, infer_schema=False, batch_size=CHUNK_ROWS)
            while batches := reader.next_batches(1):
                yield from batches
        elif suffix in (".jsonl", ".ndjson"):
            frame = pl.scan_ndjson(path, infer_schema_length=None)
            height = frame.select(pl.len()).collect().item()
            for offset in range(0, max(height, 1), CHUNK_ROWS):
                yield frame.slice(offset, CHUNK_ROWS).collect()
        else:
            raise InputError(f'File "{path}" has an unknown extension; use one of {", ".join(SUFFIXES)}')
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f'File "{path}" cannot be read as {suffix[1:]} ({str(exc).splitlines()[0]}); check the file') from None
