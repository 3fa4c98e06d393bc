"""The log of served lists: every list the service answers becomes rows of the raw ``requests``
contract (one per item and position) that ``shoprank ingest`` loads, so clicks posted to
``/v1/events`` with the ``request_id`` turn into training labels; beside them, the exact feature
vectors the items were scored on, for audits and training-serving parity: one line per list,
its columns in served order (``{"request_id", "request_time", "user_id", "model_version",
"items", "entities": {column: values}, "features": {name: values}}``; ``items[i]`` was served at
position i); a column with one value for every item (the user's features, the request's) holds
it once: ``[value]``.

``record`` writes a list's lines to hidden files (``landing/requests/.requests-*.jsonl`` and
``serving/features/.features-*.jsonl``; ingest skips hidden files) at once: one ``write`` per file
and list, straight to the page cache (0.3 ms for 100 items, most of it the JSON; the service calls
it once the response is sent). A writer thread fsyncs the files every ``FSYNC_SECONDS`` and makes
them visible by renaming once they hold ``ROTATE_ROWS`` rows or are ``ROTATE_SECONDS`` old (the next
files opened first, so ``record`` never waits on a disk), and ``close`` when the service stops: an
ingest never reads a file still being written.

What a stop can lose of the lists the service acknowledged (answered with a 200):

- SIGTERM or Ctrl-C (uvicorn's graceful shutdown, of each worker): nothing. The server stops
  accepting, waits for the responses in flight and their background tasks (``record``), then the
  app's lifespan calls ``close``, which renames the files visible.
- The process killed (``kill -9``, out of memory, a crash): only the lists whose response was sent
  but whose background task had not run yet (normally under a millisecond after the response).
  What ``record`` wrote is in the page cache and survives the process: its hidden files stay
  behind, and the next ``ServedLog`` on the workdir (the next start, or the worker uvicorn starts
  in its place) cuts a torn last line (a write the kill interrupted) and renames them visible.
- The machine crashing: besides, what was written since the last fsync, ``FSYNC_SECONDS`` at most.

A process holds an exclusive ``flock`` on each of its hidden files while it writes it; the kernel
drops it when the process ends, however it ends. So a hidden file whose lock can be taken belongs
to a process that is gone, whatever process holds its name's pid now (pids are reused), and the
files of live processes (the other workers of ``--workers N``, a second service on the workdir)
stay untouched, with no guess from pids or clocks. Of a list cut short by a kill, the requests
file may keep its first positions while the features file lacks its line (a list's request rows
are written before its vectors); ``shoprank parity`` reads the features files alone, so it samples
whole lists only.
"""

from __future__ import annotations

import fcntl
import logging
import operator
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydantic_core import to_json

from serving.features import one_object
from shoprank.config import Settings
from shoprank.text import scrub_pii

ROTATE_ROWS = 100_000
ROTATE_SECONDS = 300.0
FSYNC_SECONDS = 1.0  # how late what reached a file is on disk at most (what a machine crash loses)
TICK_SECONDS = 0.25  # how often the writer thread looks for files to rotate or sync
TAIL_BYTES = 64 * 1024  # read backwards by this much when looking for a file's last whole line
LOG = logging.getLogger(__name__)


class ServedLog:
    """Appends served lists to the landing area (thread-safe); a writer thread syncs and rotates."""

    def __init__(self, settings: Settings) -> None:
        self.folders = _folders(settings)
        for path in _recover(self.folders):
            LOG.warning("Recovered the served log %s, left behind by a process that stopped without closing it", path)
        self._files_lock = threading.Lock()
        self._files: dict[str, IO[bytes]] = {}
        self._rows = 0
        self._opened = 0.0
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._tend, name="served-log", daemon=True)
        self._writer.start()

    def record(
        self,
        request_id: str,
        request_time: datetime,
        user_id: str,
        surface: str,
        query: str | None,
        model_version: str,
        vectors: dict[str, list[Any]] | None,
        order: Sequence[int],
        entities: Sequence[str] = (),
        shown: Sequence[str] | None = None,
    ) -> None:
        """Log one served list: ``vectors`` holds, as Python values by column, ``item_id``, the
        ``entities`` columns (the entity row the features were read for) and the features of each
        candidate; ``order`` the candidates served, in served order (position 0 first). ``shown``
        (default: those) are the items the list showed, in order: the request rows; a list the
        model did not rank (a fallback: ``vectors`` None) has those only. In its file (the page
        cache) when this returns."""
        served = _served(np.asarray(order).tolist())
        query = scrub_pii(query)  # no e-mail address or phone number leaves the request
        items = served(vectors["item_id"]) if vectors is not None else ()
        shown = items if shown is None else shown
        at = request_time.isoformat(timespec="microseconds")
        head = to_json(
            {"request_id": request_id, "request_time": at, "user_id": user_id, "surface": surface, "query": query}
        )[:-1].decode()
        requests = "".join(
            [f'{head},"item_id":{encode_basestring(item)},"position":{n}}}\n' for n, item in enumerate(shown)]
        ).encode()
        features = b""
        if vectors is not None:
            features = (
                to_json(
                    {
                        "request_id": request_id,
                        "request_time": at,
                        "user_id": user_id,
                        "model_version": model_version,
                        "items": items,
                        "entities": {name: _column(_scrubbed(name, vectors[name]), served) for name in entities},
                        "features": {
                            name: _column(values, served)
                            for name, values in vectors.items()
                            if name != "item_id" and name not in entities
                        },
                    },
                    inf_nan_mode="null",
                )
                + b"\n"
            )
        with self._files_lock:
            if not self._files:  # the first list, or after a failed rotation
                self._swap(self._open())
            self._files["requests"].write(requests)
            self._files["features"].write(features)
            self._rows += len(shown)

    def flush(self) -> None:
        """Put every list recorded so far on disk (fsync)."""
        for fd in self._duplicates():
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Make every open file visible to ingest."""
        self._stop.set()
        self._writer.join()
        with self._files_lock:
            files = self._swap({})
        _retire(files)

    def _tend(self) -> None:
        """Every ``TICK_SECONDS``: rotate files big or old enough; every ``FSYNC_SECONDS``, sync them."""
        synced = time.monotonic()
        while not self._stop.wait(TICK_SECONDS):
            try:
                if self._files and (self._rows >= ROTATE_ROWS or time.monotonic() - self._opened >= ROTATE_SECONDS):
                    self._rotate()
                if time.monotonic() - synced >= FSYNC_SECONDS:
                    self.flush()
                    synced = time.monotonic()
            except Exception:  # noqa: BLE001 - the service keeps serving; the error is logged
                LOG.exception("The served log could not be written to %s", self.folders)

    def _duplicates(self) -> list[int]:
        """Descriptors of the open files of their own (a sync outside the lock: ``record`` never waits
        on a disk; a file rotated meanwhile stays open until they are closed)."""
        with self._files_lock:
            return [os.dup(file.fileno()) for file in self._files.values()]

    def _rotate(self) -> None:
        """Swap in new files (opened outside the lock), then make the old ones visible."""
        files = self._open()
        with self._files_lock:
            files = self._swap(files)
        _retire(files)

    def _swap(self, files: dict[str, IO[bytes]]) -> dict[str, IO[bytes]]:
        """Write to ``files`` from now on (the lock held); the files written so far."""
        old, self._files, self._rows, self._opened = self._files, files, 0, time.monotonic()
        return old

    def _open(self) -> dict[str, IO[bytes]]:
        """New hidden files, each locked (``flock``) until closed: an unlocked hidden file is a dead
        process's. Unbuffered: a ``write`` is in the page cache when it returns."""
        stamp = f"{datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}"
        files = {}
        for kind, folder in self.folders.items():
            folder.mkdir(parents=True, exist_ok=True)
            file = (folder / f".{kind}-{stamp}.jsonl").open("ab", buffering=0)
            fcntl.flock(file, fcntl.LOCK_EX)
            files[kind] = file
            _sync_folder(folder)
        return files


def _retire(files: dict[str, IO[bytes]]) -> None:
    """Sync files written no more and rename them visible, each before its lock goes with its
    closing (so no one else takes it over); a file that holds nothing is removed."""
    for file in files.values():
        os.fsync(file.fileno())
        hidden = Path(file.name)
        if os.fstat(file.fileno()).st_size:
            hidden.rename(_visible(hidden))
        else:
            hidden.unlink()
        file.close()
        _sync_folder(hidden.parent)


def recover(settings: Settings) -> list[Path]:
    """Make visible the served-log files of the workdir that processes left behind when they were
    killed (what a starting ``ServedLog`` does); their new paths."""
    return list(_recover(_folders(settings)))


def _folders(settings: Settings) -> dict[str, Path]:
    """Where each kind of line goes: request rows to the landing area, feature vectors to serving/."""
    return {"requests": settings.landing / "requests", "features": settings.workdir / "serving" / "features"}


def _recover(folders: dict[str, Path]) -> Iterable[Path]:
    """Make visible the hidden files in ``folders`` that no live process holds (``_take_over``);
    yields their new paths."""
    for kind, folder in folders.items():
        for hidden in sorted(folder.glob(f".{kind}-*.jsonl")):
            if _take_over(hidden):
                yield _visible(hidden)


def _take_over(hidden: Path) -> bool:
    """Rename ``hidden`` visible, its torn last line cut, if its writer is gone: its lock is free
    and it holds something (an empty file may be one a live process has just created and not yet
    locked: it writes only once locked). A file left with no whole line is removed. Whether it was
    renamed."""
    try:
        file = hidden.open("r+b")
    except FileNotFoundError:  # renamed meanwhile, by its writer or another process recovering it
        return False
    with file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # its writer is alive
            return False
        held = os.fstat(file.fileno())
        if held.st_size == 0 or not _still_named(hidden, held):
            return False
        whole = _whole_lines(file, held.st_size)
        if not whole:
            hidden.unlink()
            return False
        file.truncate(whole)
        os.fsync(file.fileno())
        hidden.rename(_visible(hidden))
    _sync_folder(hidden.parent)
    return True


def _still_named(path: Path, held: os.stat_result) -> bool:
    """Whether ``path`` still names the file ``held`` (not renamed since it was opened)."""
    try:
        return os.path.samestat(os.stat(path), held)
    except FileNotFoundError:
        return False


def _whole_lines(file: IO[bytes], size: int) -> int:
    """How many bytes of ``file`` end with its last newline (what follows is a torn line)."""
    end = size
    while end:
        start = max(0, end - TAIL_BYTES)
        file.seek(start)
        newline = file.read(end - start).rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        end = start
    return 0


def _visible(hidden: Path) -> Path:
    return hidden.with_name(hidden.name.removeprefix("."))


def _sync_folder(folder: Path) -> None:
    """fsync ``folder``: the files created or renamed in it keep their names after a machine crash."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _served(order: list[int]) -> Callable[[list[Any]], Sequence[Any]]:
    """What picks the served candidates' values from a column, in served ``order``."""
    if len(order) > 1:
        return operator.itemgetter(*order)  # a tuple of those values, picked in C
    return lambda values: [values[i] for i in order]  # itemgetter of one index gives the value itself


def _scrubbed(name: str, values: list[Any]) -> list[Any]:
    """An entity column as logged: the raw query scrubbed of personal data (``scrub_pii``)."""
    if name != "query":
        return values
    if one_object(values):  # the request's query on every row: scrubbed once, still one object
        return [scrub_pii(values[0])] * len(values)
    return list(map(scrub_pii, values))


def _column(values: list[Any], served: Callable[[list[Any]], Sequence[Any]]) -> Sequence[Any]:
    """A column's values in served order; only the first when every item has that very value
    (the user's, the request's: one object, so nothing equal but different, 0.0 and -0.0, is
    merged)."""
    return values[:1] if one_object(values) else served(values)
