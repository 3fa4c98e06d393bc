"""DIGINETICA (CIKM Cup 2016): ``;``-separated files, recognised by their header.

- ``train-item-views.csv`` (``session_id;user_id;item_id;timeframe;eventdate``) -> view events
- ``train-purchases.csv`` (``sessionId;userId;timeframe;eventdate;ordernumber;itemId``) -> purchase events
- ``product-categories.csv`` (``itemId;categoryId``) -> items, dated at the dataset's start

``event_time`` is ``eventdate`` plus ``timeframe`` milliseconds (the dataset gives no time of day,
only the offset within the session). Sessions are kept as ``dg-s<sessionId>``. The contract needs
a user on every event but most sessions are anonymous (user ``NA``): the session is the best
identity available, so those events get the per-session pseudo user ``dg-s<sessionId>``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from shoprank.ingest.adapters.common import wrong_format
from shoprank.ingest.batch import Batch
from shoprank.ingest.mapping import Mapping, derive_ids, read_mapped, typed_or_text
from shoprank.ingest.readers import chunks, first_row, scan

DELIMITER = ";"
START = datetime(2016, 1, 1)
ANONYMOUS = "NA"
# header -> (event type, session column, user column, item column)
EVENT_FILES = {
    ("session_id", "user_id", "item_id", "timeframe", "eventdate"): ("view", "session_id", "user_id", "item_id"),
    ("sessionId", "userId", "timeframe", "eventdate", "ordernumber", "itemId"): (
        "purchase",
        "sessionId",
        "userId",
        "itemId",
    ),
}
CATEGORIES_HEADER = ("itemId", "categoryId")
ITEMS = Mapping(
    table="items",
    columns={"item_id": "itemId", "category_path": "categoryId"},
    constants={"updated_at": START},
    format="csv",
    delimiter=DELIMITER,
)


def read(path: Path) -> Iterator[Batch]:
    """Yield the batches of one DIGINETICA file: events for views/purchases, items for categories.

    Raises:
        InputError: The header is none of the supported files'.
    """
    header = tuple(first_row(path, DELIMITER))
    if header == CATEGORIES_HEADER:
        yield from read_mapped(path, ITEMS)
    elif header in EVENT_FILES:
        for chunk in chunks(scan(path, delimiter=DELIMITER), path):
            yield _events(chunk, *EVENT_FILES[header], path)
    else:
        expected = " or ".join(f'"{DELIMITER.join(h)}"' for h in (*EVENT_FILES, CATEGORIES_HEADER))
        raise wrong_format(
            path,
            "DIGINETICA train-item-views, train-purchases or product-categories",
            f"the header {expected}",
            f'"{DELIMITER.join(header)}"',
        )


def _events(chunk: pl.DataFrame, event_type: str, session: str, user: str, item: str, path: Path) -> Batch:
    session_id = "dg-s" + pl.col(session)
    anonymous = pl.col(user) == ANONYMOUS
    date = pl.col("eventdate").str.strip_chars().str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
    offset = pl.duration(milliseconds=pl.col("timeframe").str.strip_chars().cast(pl.Int64, strict=False))
    times = chunk.select(parsed=date + offset, raw=pl.col("eventdate") + " + " + pl.col("timeframe") + " ms")
    frame = chunk.select(
        event_id=derive_ids(chunk, "dg"),
        event_time=typed_or_text(times["parsed"], times["raw"]),
        user_id=pl.when(anonymous).then(session_id).otherwise(pl.col(user)),
        session_id=session_id,
        event_type=pl.lit(event_type),
        item_id=pl.col(item),
    )
    anonymous_rows = chunk.select(anonymous.sum()).item()
    notes: tuple[str, ...] = ()
    if anonymous_rows:
        notes = (
            f'{anonymous_rows} of {chunk.height} events in "{path}" have no user (NA); '
            "their user_id is the session's pseudo user dg-s<sessionId>",
        )
    return Batch("events", frame, str(path), notes)
