"""RetailRocket (Kaggle e-commerce dataset): ``,``-separated files, recognised by their header.

- ``events.csv`` (``timestamp,visitorid,event,itemid,transactionid``, ms epochs) -> events
  (view/addtocart/transaction -> view/add_to_cart/purchase)
- ``category_tree.csv`` (``categoryid,parentid``) -> categories
- ``item_properties*.csv`` (``timestamp,itemid,property,value``) -> items: one version per item and
  property timestamp, with the ``categoryid`` property as category (the leaf id; the tree gives the
  path) and property ``790`` as price (``n277200.000`` -> 277200.0). A version that has only one of
  the two leaves the other null.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl

from shoprank.ingest.adapters.common import wrong_format
from shoprank.ingest.batch import Batch
from shoprank.ingest.mapping import Mapping, TimeHint, ValueMap, parse_time, read_mapped
from shoprank.ingest.readers import CHUNK_ROWS, first_row, reading, scan

CATEGORY_PROPERTY = "categoryid"
PRICE_PROPERTY = "790"
PROPERTIES_HEADER = ("timestamp", "itemid", "property", "value")
MAPPED = {
    ("timestamp", "visitorid", "event", "itemid", "transactionid"): Mapping(
        table="events",
        columns={"event_time": "timestamp", "user_id": "visitorid", "item_id": "itemid"},
        values={
            "event_type": ValueMap("event", {"view": "view", "addtocart": "add_to_cart", "transaction": "purchase"})
        },
        times={"event_time": TimeHint(unit="ms")},
        derive_id="rr",
        format="csv",
    ),
    ("categoryid", "parentid"): Mapping(
        table="categories", columns={"category_id": "categoryid", "parent_id": "parentid"}, format="csv"
    ),
}


def read(path: Path) -> Iterator[Batch]:
    """Yield the batches of one RetailRocket file.

    Raises:
        InputError: The header is none of events.csv, category_tree.csv or item_properties*.csv.
    """
    header = tuple(first_row(path))
    if header in MAPPED:
        yield from read_mapped(path, MAPPED[header])
    elif header == PROPERTIES_HEADER:
        yield from _items(path)
    else:
        expected = " or ".join(f'"{",".join(h)}"' for h in (*MAPPED, PROPERTIES_HEADER))
        raise wrong_format(
            path,
            "RetailRocket events, category_tree or item_properties",
            f"the header {expected}",
            f'"{",".join(header)}"',
        )


def _items(path: Path) -> Iterator[Batch]:
    """Items from the category and price properties (only those rows are held in memory)."""
    wanted = pl.col("property").is_in([CATEGORY_PROPERTY, PRICE_PROPERTY])
    with reading(path, "csv"):
        rows = scan(path).filter(wanted).collect(engine="streaming")
    categories = rows.filter(pl.col("property") == CATEGORY_PROPERTY).select(
        "itemid", "timestamp", category_path="value"
    )
    value = pl.col("value")
    prices = rows.filter(pl.col("property") == PRICE_PROPERTY).select(
        "itemid",
        "timestamp",
        price=pl.when(value.str.contains(r"^n[-+]?[0-9.]")).then(value.str.slice(1)).otherwise(value),
    )
    versions = categories.join(prices, on=["itemid", "timestamp"], how="full", coalesce=True, nulls_equal=True)
    versions = versions.sort("itemid", "timestamp", maintain_order=True)
    for offset in range(0, versions.height, CHUNK_ROWS):
        part = versions.slice(offset, CHUNK_ROWS)
        frame = part.select(
            item_id="itemid",
            category_path="category_path",
            price="price",
            updated_at=parse_time(part["timestamp"], TimeHint(unit="ms")),
        )
        yield Batch("items", frame, str(path))
