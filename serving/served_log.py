"""The log of served lists: every list the service answers becomes rows of the raw ``requests``
contract (one per item and position) that ``shoprank ingest`` loads, so clicks posted to
``/v1/events`` with the ``request_id`` turn into training labels; beside them, the exact feature
vector each item was scored on, for audits and training-serving parity.

Rows are appended as JSON lines to hidden files (``landing/requests/.requests-*.jsonl`` and
``serving/features/.features-*.jsonl``; ingest skips hidden files), flushed per list, and made
visible by renaming once a file holds ``ROTATE_ROWS`` rows, is ``ROTATE_SECONDS`` old, or the
service stops: an ingest never reads a file still being written.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import IO

import polars as pl

from shoprank.config import Settings

ROTATE_ROWS = 100_000
ROTATE_SECONDS = 300.0


class ServedLog:
    """Appends served lists to the landing area (thread-safe)."""

    def __init__(self, settings: Settings) -> None:
        self.folders = {
            "requests": settings.landing / "requests",
            "features": settings.workdir / "serving" / "features",
        }
        self._lock = threading.Lock()
        self._files: dict[str, IO[str]] = {}
        self._rows = 0
        self._opened = 0.0

    def record(
        self,
        request_id: str,
        request_time: datetime,
        user_id: str,
        surface: str,
        query: str | None,
        model_version: str,
        vectors: pl.DataFrame,
        entities: Sequence[str] = (),
    ) -> None:
        """Log one served list: ``vectors`` holds ``item_id``, the ``entities`` columns (the entity
        row the features were read for) and the features of each served item, in served order
        (position 0 first)."""
        common = {"request_id": request_id, "request_time": request_time.isoformat(), "user_id": user_id}
        requests, features = [], []
        for position, row in enumerate(vectors.iter_rows(named=True)):
            item_id = row.pop("item_id")
            requests.append({**common, "surface": surface, "query": query, "item_id": item_id, "position": position})
            entity = {name: _json_value(row.pop(name)) for name in entities}
            vector = {name: _json_value(value) for name, value in row.items()}
            logged = {"item_id": item_id, "position": position, "model_version": model_version}
            features.append({**common, **logged, "entities": entity, "features": vector})
        with self._lock:
            if self._files and (self._rows >= ROTATE_ROWS or time.monotonic() - self._opened >= ROTATE_SECONDS):
                self._rotate()
            if not self._files:
                self._open()
            for kind, rows in (("requests", requests), ("features", features)):
                file = self._files[kind]
                file.writelines(json.dumps(r) + "\n" for r in rows)
                file.flush()
            self._rows += len(requests)

    def close(self) -> None:
        """Make every open file visible to ingest."""
        with self._lock:
            if self._files:
                self._rotate()

    def _open(self) -> None:
        stamp = f"{datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
        for kind, folder in self.folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            self._files[kind] = (folder / f".{kind}-{stamp}.jsonl").open("a", encoding="utf-8")
        self._rows, self._opened = 0, time.monotonic()

    def _rotate(self) -> None:
        for file in self._files.values():
            file.flush()
            os.fsync(file.fileno())
            file.close()
            hidden = Path(file.name)
            hidden.rename(hidden.with_name(hidden.name.removeprefix(".")))
        self._files = {}


def _json_value(value: object) -> object:
    """A feature value as JSON keeps it: floats exactly (their repr), NaN as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value
