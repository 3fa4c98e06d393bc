"""Alibaba Taobao UserBehavior (Tianchi): ``user_id,item_id,category_id,behavior,timestamp``, no header.

Each row becomes one event (pv/cart/fav/buy -> view/add_to_cart/favorite/purchase; other behaviors
pass through and are quarantined as unknown types). Items are emitted once per item so that each
item's category is known, dated at the dataset's documented start.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl

from shoprank.ingest.adapters.common import FirstSeen, wrong_format
from shoprank.ingest.batch import Batch
from shoprank.ingest.mapping import Mapping, TimeHint, ValueMap
from shoprank.ingest.readers import chunks, first_row, scan

COLUMNS = ["user_id", "item_id", "category_id", "behavior", "timestamp"]
BEHAVIORS = {"pv": "view", "cart": "add_to_cart", "fav": "favorite", "buy": "purchase"}
START = datetime(2017, 11, 24, 16)  # 2017-11-25 00:00 China time (UTC+8), the official window's start
WINDOW_SECONDS = (1511539200, 1512316800)  # 2017-11-25 00:00 .. 2017-12-04 00:00 China time

EVENTS = Mapping(
    table="events",
    columns={"user_id": "user_id", "item_id": "item_id", "event_time": "timestamp"},
    values={"event_type": ValueMap("behavior", BEHAVIORS)},
    times={"event_time": TimeHint(unit="s")},
    derive_id="tb",
)
ITEMS = Mapping(
    table="items", columns={"item_id": "item_id", "category_path": "category_id"}, constants={"updated_at": START}
)


def read(path: Path) -> Iterator[Batch]:
    """Yield events and items batches of a UserBehavior file, chunk by chunk.

    Raises:
        InputError: The file is not UserBehavior CSV (5 columns, no header).
    """
    _check(path)
    items = FirstSeen(path, "item_id", "category")
    for chunk in chunks(scan(path, header=False, names=COLUMNS), path):
        yield Batch("events", EVENTS.apply(chunk), str(path), _window_note(chunk, path))
        new_items, notes = items.keep(ITEMS.apply(chunk))
        yield Batch("items", new_items, str(path), notes)


def _check(path: Path) -> None:
    row = first_row(path)
    expected = f"5 columns {','.join(COLUMNS)} without a header"
    if len(row) != len(COLUMNS):
        raise wrong_format(path, "Taobao UserBehavior", expected, str(len(row)))
    if {value.strip().lower() for value in row} & set(COLUMNS):
        raise wrong_format(path, "Taobao UserBehavior", expected, f'a header row "{",".join(row)}"')


def _window_note(chunk: pl.DataFrame, path: Path) -> tuple[str, ...]:
    seconds = chunk["timestamp"].str.strip_chars().cast(pl.Float64, strict=False)
    outside = (~seconds.is_between(*WINDOW_SECONDS, closed="left")).sum()
    if not outside:
        return ()
    return (
        f'{outside} of {chunk.height} Taobao events in "{path}" lie outside the dataset\'s window '
        "2017-11-25..2017-12-03 (China time); kept as they are",
    )
