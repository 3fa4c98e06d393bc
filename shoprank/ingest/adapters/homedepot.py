"""Home Depot product search relevance (Kaggle): ``id,product_uid,product_title,search_term,relevance``.

Each row becomes one judgment (query, item, grade); items are emitted once per product with its
title, dated at the competition's start.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from shoprank.ingest.adapters.common import FirstSeen, wrong_format
from shoprank.ingest.batch import Batch
from shoprank.ingest.mapping import Mapping
from shoprank.ingest.readers import chunks, first_row, scan

HEADER = ["id", "product_uid", "product_title", "search_term", "relevance"]
START = datetime(2016, 1, 18)

JUDGMENTS = Mapping(table="judgments", columns={"query": "search_term", "item_id": "product_uid", "grade": "relevance"})
ITEMS = Mapping(
    table="items", columns={"item_id": "product_uid", "title": "product_title"}, constants={"updated_at": START}
)


def read(path: Path) -> Iterator[Batch]:
    """Yield judgments and items batches of a Home Depot relevance file (UTF-8), chunk by chunk.

    Raises:
        InputError: The file does not have the Home Depot header, or is not UTF-8.
    """
    header = first_row(path)
    if header != HEADER:
        raise wrong_format(
            path, "Home Depot search relevance", f'the header "{",".join(HEADER)}"', f'"{",".join(header)}"'
        )
    items = FirstSeen(path, "item_id", "title")
    for chunk in chunks(scan(path), path):
        yield Batch("judgments", JUDGMENTS.apply(chunk), str(path))
        new_items, notes = items.keep(ITEMS.apply(chunk))
        yield Batch("items", new_items, str(path), notes)
