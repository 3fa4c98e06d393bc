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
        common = [
            pl.lit(request_id).alias("request_id"),
            pl.lit(request_time.isoformat()).alias("request_time"),
            pl.lit(user_id).alias("user_id"),
        ]
        position = pl.int_range(vectors.height).alias("position")
        requests = vectors.select(
            *common, pl.lit(surface).alias("surface"), pl.lit(query, pl.Utf8).alias("query"), "item_id", position
        )
        schema = vectors.schema
        features = [name for name in schema if name != "item_id" and name not in entities]
        logged = vectors.select(
            *common,
            "item_id",
            position,
            pl.lit(model_version).alias("model_version"),
            _json_object(schema, entities).alias("entities"),
            _json_object(schema, features).alias("features"),
        )
        with self._lock:
            if self._files and (self._rows >= ROTATE_ROWS or time.monotonic() - self._opened >= ROTATE_SECONDS):
                self._rotate()
            if not self._files:
                self._open()
            for kind, rows in (("requests", requests), ("features", logged)):
                file = self._files[kind]
                file.write(rows.write_ndjson())
                file.flush()
            self._rows += requests.height

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


def _json_object(schema: pl.Schema, names: Sequence[str]) -> pl.Expr:
    """The columns ``names`` as one JSON object per row (null when there are none)."""
    return pl.struct([_json_column(schema, name) for name in names]) if names else pl.lit(None)


def _json_column(schema: pl.Schema, name: str) -> pl.Expr:
    """A column as JSON keeps it: floats exactly (shortest round-trip digits), NaN as null, times
    in ISO 8601."""
    if schema[name] == pl.Datetime:
        return pl.col(name).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f")
    return pl.col(name)
