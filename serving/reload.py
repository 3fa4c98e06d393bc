"""The model a service answers with, swapped when another version is promoted: the promoted
version loads in the background while the current one keeps answering, then takes over between
two requests (only its model file loads when it reads the features served now). A version that
cannot load (its feature service changed, a file is missing) is refused with its reason and the
current one stays. The marker is read every ``CHECK_SECONDS``, or at once when asked
(``LiveSearcher.check``: ``POST /v1/admin/reload``)."""

from __future__ import annotations

import threading
import time

from serving.online import BUDGET_SECONDS
from serving.search import Searcher
from shoprank.config import Settings
from shoprank.errors import ModelError, ShoprankError
from training.registry import promoted

CHECK_SECONDS = 2.0  # how often the registry's production marker is read


class LiveSearcher:
    """Follows the production version of a service (unless a version is pinned)."""

    def __init__(
        self, settings: Settings, service: str, version: str | None = None, budget: float = BUDGET_SECONDS
    ) -> None:
        self.settings, self.service, self.pinned, self.budget = settings, service, version, budget
        self.searcher = Searcher.open(settings, service, version, budget)
        self.refused: str | None = None  # the last version that could not load, and why
        self.loading: str | None = None  # the version loading in the background
        self._refused_version: str | None = None
        self._loading = threading.Lock()
        self._checked = time.monotonic()

    def current(self) -> Searcher:
        """The searcher to answer with; starts loading a newly promoted version in the background
        (the production marker is read at most every ``CHECK_SECONDS``)."""
        if time.monotonic() - self._checked >= CHECK_SECONDS:
            self.check()
        return self.searcher

    def check(self, retry_refused: bool = False) -> None:
        """Read the production marker now; start loading its version in the background when it is
        neither served nor refused (unless ``retry_refused``: its files may have been fixed);
        nothing when a version is pinned or one is loading already."""
        self._checked = time.monotonic()
        if self.pinned is not None:
            return
        wanted = promoted(self.settings, self.service)
        known = (self.searcher.model.card["version"], None if retry_refused else self._refused_version)
        if wanted and wanted not in known and self._loading.acquire(blocking=False):
            self.loading = wanted
            threading.Thread(target=self._load, args=(wanted,), daemon=True).start()

    def _load(self, version: str) -> None:
        try:
            self.searcher = self._opened(version)
            self.refused = self._refused_version = None
        except ShoprankError as exc:
            self.refused, self._refused_version = f"{self.service}/{version}: {exc}", version
        finally:
            self.loading = None
            self._loading.release()

    def _opened(self, version: str) -> Searcher:
        """A searcher answering with ``version``: only its model loads when it reads the features
        served now, so requests meanwhile keep their pace; store, plan and indexes load again when
        it does not (the service changed since the service started)."""
        try:
            return self.searcher.with_version(self.settings, version)
        except ModelError:
            return Searcher.open(self.settings, self.service, version, self.budget)
