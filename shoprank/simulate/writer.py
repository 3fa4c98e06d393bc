"""Parquet output: raw tables in the contract's columns and types under ``landing/``, ground truth
under ``truth/``.

Layout: ``landing/events/part-00000.parquet`` and ``landing/requests/part-00000.parquet`` (one part
per chunk), ``landing/items.parquet``, ``landing/users.parquet``; the folder or file stem names
the raw table.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from shoprank.contracts import RAW_TABLES, SURFACES
from shoprank.simulate.arrays import gather, ids, timestamps
from shoprank.simulate.catalog import NO_TIME, Catalog
from shoprank.simulate.dirt import KINDS, TYPE_TEXTS, Dirty
from shoprank.simulate.policy import Lists

PART_TABLES = ("events", "requests")
EVENT_ID_WIDTH, SESSION_ID_WIDTH, REQUEST_ID_WIDTH = 10, 9, 10


def prepare(landing: Path, truth: Path) -> None:
    """Create the output folders and remove parts of an earlier run (a run never mixes with another)."""
    truth.mkdir(parents=True, exist_ok=True)
    for table in PART_TABLES:
        folder = landing / table
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("part-*.parquet"):
            old.unlink()


def write(frame: pl.DataFrame, path: Path) -> None:
    """Write one Parquet file (zstd, microsecond timestamps)."""
    frame.write_parquet(path, compression="zstd")


def write_blocks(frames: Iterable[pl.DataFrame], path: Path) -> None:
    """Write frames of one schema into one Parquet file, a row group each (bounded memory)."""
    with ExitStack() as stack:
        out = None
        for frame in frames:
            table = frame.to_arrow()
            out = out or stack.enter_context(pq.ParquetWriter(path, table.schema, compression="zstd"))
            out.write_table(table)


def part_path(landing: Path, table: str, index: int) -> Path:
    """Path of part ``index`` of a chunked raw table."""
    return landing / table / f"part-{index:05d}.parquet"


def conform(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Select and cast ``frame`` to the contract's columns of ``table``, in warehouse order."""
    return frame.select([pl.col(name).cast(dtype) for name, dtype in RAW_TABLES[table].columns.items()])


def events_frame(events: dict[str, np.ndarray], user_ids: pl.Series, item_ids: pl.Series) -> pl.DataFrame:
    """The raw ``events`` rows of dirty, globally numbered event columns."""
    frame = pl.DataFrame(
        {
            "event_id": ids("e", events["number"], EVENT_ID_WIDTH, "event_id"),
            "event_time": timestamps(events["time"], "event_time"),
            "user_id": user_ids.gather(events["user"]),
            "session_id": ids("s", events["session"], SESSION_ID_WIDTH, "session_id"),
            "event_type": pl.Series(TYPE_TEXTS).gather(events["kind"]),
            "item_id": gather(item_ids, events["item"]),
            "request_id": ids("r", events["request"], REQUEST_ID_WIDTH, "request_id"),
            "position": _nullable(events["position"], events["position"] >= 0),
            "price": _nullable(events["price"], ~np.isnan(events["price"])),
            "quantity": _nullable(events["quantity"], events["quantity"] > 0),
        }
    )
    return conform(frame, "events")


def requests_frame(
    lists: Lists,
    shown: tuple[np.ndarray, np.ndarray, np.ndarray],
    query: pl.Series,
    user_ids: pl.Series,
    item_ids: pl.Series,
) -> pl.DataFrame:
    """The raw ``requests`` rows: one per impression ``shown`` = (list, position, item).

    Args:
        lists: The chunk's served lists.
        shown: Impressions, with list numbers local to the chunk.
        query: Query text per list (any value off search; it is nulled there).
        user_ids: User id per user number.
        item_ids: Item id per item number.
    """
    row, position, item = shown
    surface = lists.surface[row]
    frame = pl.DataFrame(
        {
            "request_id": ids("r", lists.first + row, REQUEST_ID_WIDTH, "request_id"),
            "request_time": timestamps(lists.time_us[row], "request_time"),
            "user_id": user_ids.gather(lists.user[row]),
            "session_id": ids("s", lists.session[row], SESSION_ID_WIDTH, "session_id"),
            "surface": pl.Series(SURFACES).gather(surface),
            "query": _nullable(query.gather(row), surface == SURFACES.index("search")),
            "item_id": item_ids.gather(item),
            "position": position,
        }
    )
    return conform(frame, "requests")


def dirt_frame(dirty: Dirty) -> pl.DataFrame:
    """The ``truth/dirt`` rows of a chunk: ``(event_id, kind)`` per dirty event."""
    return pl.DataFrame(
        {"event_id": ids("e", dirty.numbers, EVENT_ID_WIDTH, "event_id"), "kind": pl.Series(KINDS).gather(dirty.kinds)}
    )


def _nullable(values: np.ndarray, valid: np.ndarray) -> pl.Series:
    return pl.Series(values).scatter(np.flatnonzero(~valid), None)


def items_frame(catalog: Catalog) -> pl.DataFrame:
    """The raw ``items`` table: one row per price version of every item."""
    item, version = np.nonzero(catalog.prices.times != NO_TIME)
    titles = catalog.vocab.join(catalog.terms, titles=True)
    paths = pl.Series([leaf.path for leaf in catalog.leaves])
    brands = pl.Series(catalog.brands)
    frame = pl.DataFrame(
        {
            "item_id": catalog.ids().gather(item),
            "title": titles.gather(item),
            "category_path": paths.gather(catalog.leaf[item]),
            "brand": gather(brands, catalog.brand[item]),
            "price": catalog.prices.values[item, version],
            "updated_at": timestamps(catalog.prices.times[item, version], "updated_at"),
        }
    )
    return conform(frame, "items")
