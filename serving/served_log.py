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

import itertools
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
_FIELDS = ("request_id", "request_time", "user_id", "surface", "query", "model_version")  # one per list


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
        self._files: dict[str, IO[bytes]] = {}
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
            rows.write_ndjson(file)  # the bytes straight to the file, not through a str
            file.flush()
        self._rows += requests.height

    def _open(self) -> None:
        stamp = f"{datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
        for kind, folder in self.folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            self._files[kind] = (folder / f".{kind}-{stamp}.jsonl").open("ab")  # UTF-8, as polars writes
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
    columns = {name: _column(name, [served.vectors[name] for served in batch]) for name in first.vectors}
    starts = np.cumsum([0] + [len(served.vectors["item_id"]) for served in batch[:-1]])
    picked = np.concatenate([served.order + start for served, start in zip(batch, starts, strict=True)])
    sizes = np.array([len(served.order) for served in batch])
    lists = np.repeat(np.arange(len(batch)), sizes)  # the list of each row
    rows = {field: pl.Series(field, [getattr(s, field) for s in batch], pl.Utf8).gather(lists) for field in _FIELDS}
    rows["position"] = pl.Series("position", np.arange(len(lists)) - np.repeat(np.cumsum(sizes) - sizes, sizes))
    rows["item_id"] = columns["item_id"].gather(picked)
    features = [name for name in columns if name != "item_id" and name not in first.entities]
    rows["entities"] = _json_object("entities", [columns[name] for name in first.entities], picked)
    rows["features"] = _json_object("features", [columns[name] for name in features], picked)
    requests = ("request_id", "request_time", "user_id", "surface", "query", "item_id", "position")
    logged = ("request_id", "request_time", "user_id", "item_id", "position", "model_version", "entities", "features")
    return pl.DataFrame([rows[name] for name in requests]), pl.DataFrame([rows[name] for name in logged])


def _column(name: str, lists: list[list[Any]]) -> pl.Series:
    """One column of several lists as JSON keeps it, its type inferred from all its values: floats
    exactly (shortest round-trip digits), NaN as null, times in ISO 8601. Times that are one value
    per list (the request time on every row) are converted once per list: converting a datetime
    costs some twenty times a number."""
    # equal datetimes (count compares by value) convert alike: aware ones all become UTC
    if lists[0] and isinstance(lists[0][0], datetime) and all(v and v.count(v[0]) == len(v) for v in lists):
        once = _json_times(pl.Series(name, [values[0] for values in lists], strict=False))
        return once.gather(np.repeat(np.arange(len(lists)), [len(values) for values in lists]))
    return _json_times(pl.Series(name, list(itertools.chain.from_iterable(lists)), strict=False))


def _json_times(series: pl.Series) -> pl.Series:
    """Datetimes as ISO 8601 text (to the microsecond); other columns as they are."""
    return series.dt.to_string("%Y-%m-%dT%H:%M:%S%.6f") if series.dtype == pl.Datetime else series


def _json_object(name: str, columns: list[pl.Series], rows: np.ndarray) -> pl.Series:
    """The ``rows`` of ``columns`` as one JSON object each (null when there are no columns)."""
    if not columns:
        return pl.Series(name, [None] * len(rows))
    return pl.DataFrame(columns).to_struct(name).gather(rows)
