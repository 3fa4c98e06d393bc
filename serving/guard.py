"""A circuit breaker in front of the online store, so a dead or hung store costs a fallback answer
in microseconds instead of a read budget per request.

Rankings ask ``admit`` before reading: while the guard is closed they read (and report back with
``succeeded`` or ``failed``); after ``FAILURES`` reads in a row failed it opens, and rankings answer
from the fallback at once with the reason. It closes again when a probe succeeds
(``serving.readiness`` probes an open guard in the background) or, for a content problem it was
held open for (tables missing, rows absent: ``hold``), when the problem clears. Every change of
state is counted in ``/metrics``; no method waits on anything but a short lock.
"""

from __future__ import annotations

import threading

from prometheus_client import Counter

FAILURES = 3  # reads failed in a row that open the guard
OPENED = Counter("shoprank_store_guard_opened", "Times the online store's guard opened", ["why"])


class StoreGuard:
    """Whether rankings read the online store now (thread-safe)."""

    def __init__(self, failures: int = FAILURES) -> None:
        self.failures = failures
        self._failed = 0  # reads failed in a row
        self._open: str | None = None  # why the store is skipped after failed reads
        self._held: str | None = None  # why the store is skipped for its content
        self._lock = threading.Lock()

    def admit(self) -> str | None:
        """None when a ranking may read the store, else why it must not (the fallback's reason)."""
        return self._held or self._open

    @property
    def is_open(self) -> bool:
        """Whether failed reads opened the guard (a probe must close it)."""
        return self._open is not None

    def succeeded(self) -> None:
        """A read succeeded."""
        if self._failed:
            with self._lock:
                self._failed = 0

    def failed(self, reason: str) -> None:
        """A read failed (``reason``); the ``failures``-th in a row opens the guard."""
        with self._lock:
            self._failed += 1
            if self._failed >= self.failures and self._open is None:
                self._open = f"the online store failed {self._failed} reads in a row, last: {reason}"
                OPENED.labels("failures").inc()

    def probed(self, problem: str | None) -> bool:
        """A probe of the open guard's store found ``problem`` (None: it answered). Returns whether
        that closed the guard."""
        with self._lock:
            if problem is not None:
                if self._open is not None:
                    self._open = f"the online store does not answer probes: {problem}"
                return False
            closed, self._open, self._failed = self._open is not None, None, 0
            return closed

    def hold(self, problem: str | None) -> bool:
        """Skip the store for a problem of its content (None: none, let rankings read it again).
        Returns whether that released a hold."""
        with self._lock:
            released = self._held is not None and problem is None
            if problem is not None and self._held is None:
                OPENED.labels("content").inc()
            self._held = problem
            return released
