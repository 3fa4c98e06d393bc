"""Whether the service is ready to rank, watched from a thread so that ``/health`` and ``/ready``
answer from memory and never wait on a store.

Every ``PROBE_SECONDS`` the thread (``Readiness``) probes an open guard's store (one request's read,
within the read budget) and closes the guard when it answers. Every ``CHECK_SECONDS`` while the
guard is closed it checks the store's content: for every view the served feature services read, a
sample of its newest materialized entities (``shoprank.features.online_status.newest_keys``, drawn
from its mart once per set of materialized intervals) is looked up (within ``CHECK_BUDGET_SECONDS``,
not a request's budget); a view holding fewer than half of them, a missing table or a failed read
holds the guard (rankings answer from the fallback, ``/ready`` says why) until a check finds them
again, e.g. after ``shoprank features materialize --rebuild``; then the values the readers kept as absent are dropped and rankings read the store
again. The same check asks the registry (PostgreSQL in production) whether it answers, and reads its
views (how far they are materialized, the intervals the samples follow) every ``VIEWS_SECONDS``: a
registry that cannot be read is reported, but does not stop the service from ranking. A check costs
about 1.5 ms of CPU.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from serving.clock import Clock
from serving.features import request_rows
from serving.guard import StoreGuard
from serving.search import Searcher
from shoprank.errors import FeatureStoreError, described
from shoprank.features.materialize import duckdb_connection, merged, view_source
from shoprank.features.online_status import newest_keys

PROBE_SECONDS = 0.25
CHECK_SECONDS = 1.0
VIEWS_SECONDS = 30.0  # how often the registry's views are read again (33 ms of CPU each: protos, type checks)
SAMPLE = 20  # newest materialized entities looked up per view and check
# a check's read budget: it runs beside the requests, waiting for the interpreter between their
# steps, so a check within the requests' budget would take a busy service for a store lacking content
CHECK_BUDGET_SECONDS = 1.0
LOG = logging.getLogger(__name__)


class Readiness:
    """Probes and checks the online store in the background; says what keeps the service from
    being ready."""

    def __init__(self, guard: StoreGuard, searchers: Callable[[], list[Searcher]], clock: Clock) -> None:
        self.guard, self.searchers, self.clock = guard, searchers, clock
        self.materialized_until: datetime | None = None
        self.registry: str | None = None  # why the registry could not be read, if it could not
        self.checked = False  # whether the content was checked once
        self._samples: dict[str, tuple[tuple, list[bytes]]] = {}  # by view: its intervals, its sampled keys
        self._views: dict = {}  # the feature views as the registry was last read
        self._views_read = -math.inf
        self._stop = threading.Event()
        self._watched(self._check)  # the first check before the service answers
        self._thread = threading.Thread(target=self._watch, name="readiness", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def problems(self) -> list[str]:
        """What keeps the service from ranking as it should now (empty: ready)."""
        skipped = self.guard.admit()
        if skipped is not None:
            return [skipped]
        return [] if self.checked else ["the online store has not been checked yet (starting)"]

    def _watch(self) -> None:
        checked = time.monotonic()
        while not self._stop.wait(PROBE_SECONDS):
            if self.guard.is_open:
                self._watched(self._probe)
            elif time.monotonic() - checked >= CHECK_SECONDS:
                checked = time.monotonic()
                self._watched(self._check)

    @staticmethod
    def _watched(step: Callable[[], None]) -> None:
        """Run a step of the watch; a failure is logged, and the watch goes on."""
        try:
            step()
        except Exception:  # noqa: BLE001 - the service keeps answering
            LOG.exception("Watching the online store failed")

    def _probe(self) -> None:
        """Read one request's features; close the guard when the store answers."""
        searcher = self.searchers()[0]
        try:
            searcher.reader.read(
                request_rows(searcher.catalog, searcher.catalog.select("item_id").head(1), self.clock.now())
            )
        except Exception as exc:  # noqa: BLE001 - any failure keeps the guard open
            self.guard.probed(described(exc))
            return
        if self.guard.probed(None):
            self._forget()

    def _check(self) -> None:
        """Look up each served view's sampled entities; hold the guard while one lacks most."""
        searchers = self.searchers()
        self.registry = _registry_problem(searchers[0].store)
        if self.registry is None and time.monotonic() - self._views_read >= VIEWS_SECONDS:
            self._read_views(searchers[0].store)
        problem, seen = None, set()
        for searcher in searchers:
            for view in searcher.reader.views:
                if view.name in self._views and view.name not in seen:
                    seen.add(view.name)
                    problem = problem or _lacking(searcher, view.name, self._sample(searcher, self._views[view.name]))
        if self.guard.hold(problem):
            self._forget()
        self.checked = True

    def _read_views(self, store) -> None:
        """The registry's feature views (their materialized intervals), and how far they reach."""
        self._views = {view.name: view for view in store.list_feature_views(allow_cache=True)}
        self._views_read = time.monotonic()
        ends = [end for view in self._views.values() for _, end in view.materialization_intervals]
        if ends:
            self.materialized_until = max(ends).astimezone(UTC).replace(tzinfo=None)

    def _sample(self, searcher: Searcher, view) -> list[bytes]:
        """The view's sampled keys, drawn again when its materialized intervals changed."""
        intervals = tuple(merged(view.materialization_intervals))
        kept = self._samples.get(view.name)
        if kept is None or kept[0] != intervals:
            with duckdb_connection() as con:
                kept = intervals, newest_keys(con, view, view_source(searcher.store, view), SAMPLE)
            self._samples[view.name] = kept
        return kept[1]

    def _forget(self) -> None:
        """Drop every reader's values kept as absent: the store may hold them again."""
        for searcher in self.searchers():
            searcher.reader.forget_absent()


def _registry_problem(store) -> str | None:
    """Why the SQL registry cannot be read now (asked ``select 1``), or None (a file registry is a
    file of the workdir, read when the service starts)."""
    engine = getattr(store.registry, "read_engine", None)
    if engine is None:
        return None
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql("select 1")
    except Exception as exc:  # noqa: BLE001 - whatever the driver raises
        return f"the registry cannot be read: {described(exc)}"
    return None


def _lacking(searcher: Searcher, view: str, keys: list[bytes]) -> str | None:
    """Why the store lacks the view's sampled keys (fewer than half held, or the read failed)."""
    if not keys:
        return None
    fix = 'refill it with "shoprank features materialize --rebuild"'
    try:
        held = searcher.reader.held(view, keys, CHECK_BUDGET_SECONDS)
    except FeatureStoreError as exc:  # a table missing, a store down: the store lacks them
        return str(exc)
    if held * 2 < len(keys):
        return (
            f"the online store holds {held} of {len(keys)} newest entities of view {view} the registry says were "
            f"materialized; {fix}"
        )
    return None
