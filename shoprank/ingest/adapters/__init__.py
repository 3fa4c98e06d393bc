"""Adapters of public e-commerce datasets: ``read(path)`` maps one source file onto raw tables.

Each yields ``Batch``es in contract column names; invalid values pass through for the ingest core
to quarantine. ``ADAPTERS`` is keyed by the ``--format`` name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from shoprank.ingest.adapters import diginetica, homedepot, retailrocket, taobao
from shoprank.ingest.batch import Batch

ADAPTERS: dict[str, Callable[[Path], Iterator[Batch]]] = {
    "taobao": taobao.read,
    "diginetica": diginetica.read,
    "retailrocket": retailrocket.read,
    "homedepot": homedepot.read,
}
