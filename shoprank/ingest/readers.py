"""Reading data files in bounded chunks (CSV, Parquet, JSONL), shared by every input format, and
the reader of files already in the raw contract.

A contract file's table comes from its name or its folder: ``events.parquet``,
``events-2024-05.csv`` and ``events/part-00000.parquet`` all hold ``events``.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from shoprank.contracts import RAW_TABLES
from shoprank.errors import InputError
from shoprank.ingest.batch import Batch

CHUNK_ROWS = 1_000_000
FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def files_under(paths: list[Path]) -> list[Path]:
    """Expand folders into the data files they hold, in a stable order.

    Raises:
        InputError: A path does not exist, or a folder holds no data file.
    """
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f'Input "{path}" does not exist; check the path')
        if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
            raise InputError(f'Input "{path}" cannot be read (permission denied); give this user read access')
        if not path.is_dir() and not path.is_file():
            raise InputError(f'Input "{path}" is not a regular file (a device, pipe or socket); pass a data file')
        if path.is_dir():
            inside = sorted(  # hidden files are being written (e.g. events the service is landing)
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FORMATS and not p.name.startswith(".")
            )
            if not inside:
                raise InputError(f'Folder "{path}" holds no {"/".join(FORMATS)} file; point at the data files')
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
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f'File "{path}" has an unknown extension; use one of {", ".join(FORMATS)}')
    lazy = scan(path, fmt)
    check_columns(path, fmt, table, first_row(path) if fmt == "csv" else None, lazy)
    for frame in chunks(lazy, path, fmt):
        yield Batch(table=table, frame=frame, source=str(path))


def scan(
    path: Path, fmt: str = "csv", delimiter: str = ",", header: bool = True, names: list[str] | None = None
) -> pl.LazyFrame:
    """A lazy reader of ``path``; CSV values are read as text so nothing is cast on the way in."""
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "jsonl":
        return pl.scan_ndjson(path, infer_schema_length=None)
    return pl.scan_csv(path, separator=delimiter, has_header=header, infer_schema=False, new_columns=names)


def check_columns(path: Path, fmt: str, table: str, header: list[str] | None, frame: pl.LazyFrame) -> None:
    """A contract file's columns as ``table`` needs them: a header without repeats (``header``,
    a CSV's), at least one contract column, and one value per row in each (no lists or structs).

    Raises:
        InputError: They are not; the message names the file, the column and the fix.
    """
    if header is not None:
        repeated = sorted(name for name, n in Counter(header).items() if n > 1)
        if repeated:
            raise InputError(
                f'File "{path}" repeats the column(s) {", ".join(map(repr, repeated))} in its header; '
                "keep one column of each name"
            )
    with reading(path, fmt):
        schema = frame.collect_schema()
    contract = RAW_TABLES[table].columns
    if not any(name in contract for name in schema):
        found = ", ".join(list(schema)[:5]) + (", ..." if len(schema) > 5 else "")
        raise InputError(
            f'File "{path}" has none of the {table} contract columns ({", ".join(contract)}) but "{found}"; '
            'if it is not comma-separated UTF-8, re-encode it or read it with a mapping (csv: {delimiter: ";"})'
        )
    refuse_nested(path, schema, contract)


def refuse_nested(path: Path, schema: pl.Schema, read: Iterable[str]) -> None:
    """Refuse a file whose columns ``read`` hold lists or structs (``schema``: the file's).

    Raises:
        InputError: One does; the message names the file, the column and its type.
    """
    for name in read:
        dtype = schema.get(name)
        if dtype is not None and dtype.is_nested():
            raise InputError(
                f'File "{path}": column "{name}" holds {dtype} values, not one value per row; '
                f"write one {name} per row (or flatten it)"
            )


def chunks(frame: pl.LazyFrame, path: Path, fmt: str = "csv") -> Iterator[pl.DataFrame]:
    """Evaluate ``frame`` in streaming chunks of at most ``CHUNK_ROWS`` rows (source order kept).

    Raises:
        InputError: The file cannot be read in its format.
    """
    with reading(path, fmt):
        for chunk in frame.collect_batches(chunk_size=CHUNK_ROWS):
            if chunk.height:
                yield chunk


def first_row(path: Path, delimiter: str = ",") -> list[str]:
    """The first row of a delimited text file (its header, if it has one), to recognise a format.

    Raises:
        InputError: The file is missing, empty or not UTF-8 text.
    """
    try:
        with Path(path).open("rb") as raw:
            if raw.read(4) == b"PAR1":
                raise InputError(
                    f'File "{path}" is Parquet, not delimited text; read it as a contract file or with a mapping '
                    "(format: parquet), or convert it to CSV"
                )
        with Path(path).open(encoding="utf-8-sig", newline="") as file:
            line = file.readline()
    except FileNotFoundError:
        raise InputError(f'File "{path}" does not exist; check the path') from None
    except PermissionError:
        raise InputError(f'File "{path}" cannot be read (permission denied); give this user read access') from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f'File "{path}" cannot be read as UTF-8 text ({exc}); re-encode it as UTF-8') from None
    if not line.strip():
        raise InputError(f'File "{path}" is empty or starts with a blank line; pass a file with rows')
    return next(csv.reader([line], delimiter=delimiter))


@contextmanager
def reading(path: Path, fmt: str) -> Iterator[None]:
    """Turn a reader's failure into an ``InputError`` naming the file and the format."""
    try:
        yield
    except pl.exceptions.NoDataError:
        raise InputError(f'File "{path}" is empty; pass a file with rows') from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise InputError(
            f'File "{path}" cannot be read as {fmt} ({reason}); check that it is well-formed {fmt} '
            "(text in UTF-8), or pass the right --format"
        ) from None
