"""The log of served lists: every list the service answers becomes rows of the raw ``requests``
contract (one per item and position) that ``shoprank ingest`` loads, so clicks posted to
``/v1/events`` with the ``request_id`` turn into training labels; beside them, the exact feature
vectors the items were scored on, for audits and training-serving parity: one line per list,
its columns in served order (``{"request_id", "request_time", "user_id", "model_version",
"items", "entities": {column: values}, "features": {name: values}}``; ``items[i]`` was served at
position i); a column with one value for every item (the user's features, the request's) holds
it once: ``[value]``.

``record`` writes a list's lines into memory (0.3 ms for 100 items; the service calls it once the
response is sent); a writer thread appends what was written in the last ``FLUSH_SECONDS`` to hidden
files (``landing/requests/.requests-*.jsonl`` and ``serving/features/.features-*.jsonl``; ingest
skips hidden files). A file is made visible by renaming once it holds ``ROTATE_ROWS`` rows, is
``ROTATE_SECONDS`` old, or the service stops: an ingest never reads a file still being written.
"""

from __future__ import annotations

import logging
import operator
import os
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydantic_core import to_json

from serving.features import one_object
from shoprank.config import Settings

ROTATE_ROWS = 100_000
ROTATE_SECONDS = 300.0
FLUSH_SECONDS = 0.25  # how late a served list reaches its file at most (while the service runs)
LOG = logging.getLogger(__name__)
KINDS = ("requests", "features")


class ServedLog:
    """Appends served lists to the landing area (thread-safe), from a writer thread."""

    def __init__(self, settings: Settings) -> None:
        self.folders = {
            "requests": settings.landing / "requests",
            "features": settings.workdir / "serving" / "features",
        }
        self._pending = {kind: bytearray() for kind in KINDS}  # lines written, not yet in a file
        self._pending_rows = 0
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
        candidate; ``order`` the candidates served, in served order (position 0 first). In its
        file within ``FLUSH_SECONDS``."""
        served = _served(np.asarray(order).tolist())
        items = served(vectors["item_id"])
        at = request_time.isoformat(timespec="microseconds")
        head = to_json(
            {"request_id": request_id, "request_time": at, "user_id": user_id, "surface": surface, "query": query}
        )[:-1].decode()
        requests = "".join(
            [f'{head},"item_id":{encode_basestring(item)},"position":{n}}}\n' for n, item in enumerate(items)]
        ).encode()
        features = to_json(
            {
                "request_id": request_id,
                "request_time": at,
                "user_id": user_id,
                "model_version": model_version,
                "items": items,
                "entities": {name: _column(vectors[name], served) for name in entities},
                "features": {
                    name: _column(values, served)
                    for name, values in vectors.items()
                    if name != "item_id" and name not in entities
                },
            },
            inf_nan_mode="null",
        )
        with self._pending_lock:
            self._pending["requests"] += requests
            self._pending["features"] += features + b"\n"
            self._pending_rows += len(items)

    def flush(self) -> None:
        """Write every list recorded so far."""
        with self._pending_lock:
            pending, rows = self._pending, self._pending_rows
            self._pending, self._pending_rows = {kind: bytearray() for kind in KINDS}, 0
        if rows:
            with self._files_lock:
                self._write(pending, rows)

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

    def _write(self, pending: dict[str, bytearray], rows: int) -> None:
        if self._files and (self._rows >= ROTATE_ROWS or time.monotonic() - self._opened >= ROTATE_SECONDS):
            self._rotate()
        if not self._files:
            self._open()
        for kind, lines in pending.items():
            self._files[kind].write(lines)
            self._files[kind].flush()
        self._rows += rows

    def _open(self) -> None:
        stamp = f"{datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
        for kind, folder in self.folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            self._files[kind] = (folder / f".{kind}-{stamp}.jsonl").open("ab")
        self._rows, self._opened = 0, time.monotonic()

    def _rotate(self) -> None:
        for file in self._files.values():
            file.flush()
            os.fsync(file.fileno())
            file.close()
            hidden = Path(file.name)
            hidden.rename(hidden.with_name(hidden.name.removeprefix(".")))
        self._files = {}


def _served(order: list[int]) -> Callable[[list[Any]], Sequence[Any]]:
    """What picks the served candidates' values from a column, in served ``order``."""
    if len(order) > 1:
        return operator.itemgetter(*order)  # a tuple of those values, picked in C
    return lambda values: [values[i] for i in order]  # itemgetter of one index gives the value itself


def _column(values: list[Any], served: Callable[[list[Any]], Sequence[Any]]) -> Sequence[Any]:
    """A column's values in served order; only the first when every item has that very value
    (the user's, the request's: one object, so nothing equal but different, 0.0 and -0.0, is
    merged)."""
    return values[:1] if one_object(values) else served(values)
