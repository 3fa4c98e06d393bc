"""The log of served lists: every list the service answers becomes rows of the raw ``requests``
contract (one per item and position) that ``shoprank ingest`` loads, so clicks posted to
``/v1/events`` with the ``request_id`` turn into training labels; beside them, the exact feature
vector each item was scored on, for audits and training-serving parity.

A request only hands its lists over (``record``); a writer thread turns what arrived in the last
``FLUSH_SECONDS`` into rows in one go (per list, building the frames cost 2 ms of the request's
time) and appends them as JSON lines to hidden files (``landing/requests/.requests-*.jsonl`` and
``serving/features/.features-*.jsonl``; ingest skips hidden files), flushed per batch. A file is
made visible by renaming once it holds ``ROTATE_ROWS`` rows, is ``ROTATE_SECONDS`` old, or the
service stops: an ingest never reads a file still being written.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import polars as pl

from shoprank.config import Settings

ROTATE_ROWS = 100_000
ROTATE_SECONDS = 300.0
FLUSH_SECONDS = 0.25  # how late a served list reaches its file at most (while the service runs)
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Served:
    """One served list as ``ServedLog.record`` takes it."""

    request_id: str
    request_time: str
    user_id: str
    surface: str
    query: str | None
    model_version: str
    vectors: dict[str, list[Any]]
    order: np.ndarray
    entities: tuple[str, ...]


class ServedLog:
    """Appends served lists to the landing area (thread-safe), from a writer thread."""

    def __init__(self, settings: Settings) -> None:
        self.folders = {
            "requests": settings.landing / "requests",
            "features": settings.workdir / "serving" / "features",
        }
        self._pending: list[_Served] = []
        self._pending_lock = threading.Lock()
        self._files_lock = threading.Lock()
        self._files: dict[str, IO[str]] = {}
        self._rows = 0
        self._opened = 0.0
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_every, name="served-log", daemon=True)
        self._writer.start()

    def record(
        self,
        request_id: str,
        request_time: datetime,
        user_id: str,
        surface: str,
        query: str | None,
        model_version: str,
        vectors: dict[str, list[Any]],
        order: Sequence[int],
        entities: Sequence[str] = (),
    ) -> None:
        """Log one served list: ``vectors`` holds, as Python values by column, ``item_id``, the
        ``entities`` columns (the entity row the features were read for) and the features of each
        candidate; ``order`` the candidates served, in served order (position 0 first). Written
        within ``FLUSH_SECONDS``; the lists must not change meanwhile."""
        served = _Served(
            request_id, request_time.isoformat(), user_id, surface, query, model_version, vectors,
            np.asarray(order, "int64"), tuple(entities),
        )  # fmt: skip
        with self._pending_lock:
            self._pending.append(served)

    def flush(self) -> None:
        """Write every list recorded so far."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        batches: dict[tuple, list[_Served]] = {}
        for served in pending:  # lists of one model (the same columns) are written together
            batches.setdefault((tuple(served.vectors), served.entities), []).append(served)
        with self._files_lock:
            for batch in batches.values():
                self._write(*_frames(batch))

    def close(self) -> None:
        """Write what is pending and make every open file visible to ingest."""
        self._stop.set()
        self._writer.join()
        self.flush()
        with self._files_lock:
            if self._files:
                self._rotate()

    def _write_every(self) -> None:
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the service keeps serving; the error is logged
                LOG.exception("The served log could not be written to %s", self.folders)

    def _write(self, requests: pl.DataFrame, features: pl.DataFrame) -> None:
        if self._files and (self._rows >= ROTATE_ROWS or time.monotonic() - self._opened >= ROTATE_SECONDS):
            self._rotate()
        if not self._files:
            self._open()
        for kind, rows in (("requests", requests), ("features", features)):
            file = self._files[kind]
            file.write(rows.write_ndjson())
            file.flush()
        self._rows += requests.height

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


def _frames(batch: list[_Served]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows of the requests contract and of the feature log of lists with the same columns,
    in served order: every candidate's values are converted once, then the served ones picked."""
    first = batch[0]
    names = list(first.vectors)
    columns: dict[str, list[Any]] = {name: [] for name in names}
    picked, offset = [], 0
    for served in batch:
        for name in names:
            columns[name].extend(served.vectors[name])
        picked.append(served.order + offset)
        offset += len(served.vectors["item_id"])
    vectors = pl.DataFrame(columns, strict=False)[np.concatenate(picked)]
    sizes = [len(served.order) for served in batch]
    fields = ("request_id", "request_time", "user_id", "surface", "query", "model_version")
    common = pl.DataFrame(
        {field: np.repeat(np.array([getattr(s, field) for s in batch], object), sizes) for field in fields},
        schema=dict.fromkeys(fields, pl.Utf8),
    ).with_columns(position=np.concatenate([np.arange(size) for size in sizes]))
    schema = vectors.schema
    features = [name for name in names if name != "item_id" and name not in first.entities]
    vectors = vectors.select(
        "item_id",
        _json_object(schema, first.entities).alias("entities"),
        _json_object(schema, features).alias("features"),
    )
    rows = pl.concat([common, vectors], how="horizontal")
    requests = rows.select("request_id", "request_time", "user_id", "surface", "query", "item_id", "position")
    logged = rows.select(
        "request_id", "request_time", "user_id", "item_id", "position", "model_version", "entities", "features"
    )
    return requests, logged


def _json_object(schema: pl.Schema, names: Sequence[str]) -> pl.Expr:
    """The columns ``names`` as one JSON object per row (null when there are none)."""
    return pl.struct([_json_column(schema, name) for name in names]) if names else pl.lit(None)


def _json_column(schema: pl.Schema, name: str) -> pl.Expr:
    """A column as JSON keeps it: floats exactly (shortest round-trip digits), NaN as null, times
    in ISO 8601."""
    if schema[name] == pl.Datetime:
        return pl.col(name).dt.to_string("%Y-%m-%dT%H:%M:%S%.6f")
    return pl.col(name)
