"""Answer a text query or rerank given items: candidates from the catalog's text index, their
features from the online store, ordered by the search model; each result with the features that
moved its score most. A ``Searcher`` loads the model, index and catalog once and answers many
requests (the CLI opens one per call, the HTTP service one per process). Its ``search`` and
``rank`` are coroutines: the service awaits them on its event loop, the CLI runs one to its end."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
from feast import FeatureStore

from serving.features import RequestRows
from serving.guard import StoreGuard
from serving.online import BUDGET_SECONDS, OnlineReader
from shoprank.config import Settings
from shoprank.errors import FeatureStoreError, described
from shoprank.features.bm25 import TitleIndex
from shoprank.features.store import open_store
from shoprank.search.index import CatalogIndex, open_index
from shoprank.search.retrieve import retrieved
from shoprank.warehouse import read
from training.dataset import RETRIEVAL
from training.plan import ServicePlan, resolve
from training.rankers import POSITION, Ranker
from training.registry import ModelVersion, load_ranker
from training.signals import catalog_index

SERVICE = "search_ranker_v2"
CANDIDATES = 100
REASONS = 3  # contributions shown per result


@dataclass(frozen=True)
class SearchResult:
    """A ranked answer.

    Attributes:
        model: The model version that ranked (``service/version``).
        candidates: Items ranked, of which ``backfilled`` came from the retrieval's backfill.
        items: The top results, best first, each a dict: ``rank``, ``item_id``, ``title``,
            ``score``, ``bm25``, ``backfill``, ``contributions`` (the largest by size:
            ``feature``, ``value``; view prefixes dropped).
        stages: Seconds spent per stage (``retrieve``, ``features``, ``score``).
        vectors: Of every candidate, in candidate order, as Python values by column: ``item_id``,
            the request columns the feature service reads (its entity row) and the model's input
            features; ``items`` are its rows ``order``.
        order: The candidates' indexes in result order.
        entities: The columns of ``vectors`` that are the entity row (besides ``item_id``).
        fallback: Why the model did not rank (the online store failed), else None.
    """

    model: str
    candidates: int
    backfilled: int
    items: list[dict[str, Any]]
    stages: dict[str, float] = field(default_factory=dict)
    vectors: dict[str, list[Any]] = field(default_factory=dict)
    order: np.ndarray = field(default_factory=lambda: np.zeros(0, "int64"))
    entities: tuple[str, ...] = ()
    fallback: str | None = None


@dataclass(frozen=True)
class Searcher:
    """What answering needs, loaded once: the model, the catalog's indexes and the online store."""

    model: ModelVersion
    ranker: Ranker
    plan: ServicePlan
    store: FeatureStore
    reader: OnlineReader
    index: CatalogIndex
    titles: TitleIndex
    catalog: pl.DataFrame
    item_titles: dict[str, str | None]  # the catalog's titles by item, for the results
    rows: RequestRows  # the catalog indexed for entity rows

    @classmethod
    def open(
        cls, settings: Settings, service: str = SERVICE, version: str | None = None, budget: float = BUDGET_SECONDS
    ) -> Searcher:
        """Load ``service``'s model (the version named, else production, else the newest); its
        online reads get ``budget`` seconds each.

        Raises:
            ShoprankError: No model of ``service``, no index, feature store or warehouse.
        """
        store = open_store(settings)
        plan = resolve(store, service)
        ranker, model = load_ranker(settings, service, version, plan)  # checked against the plan it reads with
        catalog = read(settings.warehouse, "select * from marts.dim_items")
        titles = dict(catalog.select("item_id", "title").iter_rows())
        reader = OnlineReader(store, plan, budget)
        indexes = open_index(settings), catalog_index(settings)
        return cls(model, ranker, plan, store, reader, *indexes, catalog, titles, RequestRows(catalog))

    def with_version(self, settings: Settings, version: str) -> Searcher:
        """This searcher answering with another version of its model: the store, plan, indexes
        and catalog are kept, so only the model file loads.

        Raises:
            ModelError: The version is missing or was trained on features other than the plan's.
        """
        ranker, model = load_ranker(settings, self.model.card["service"], version, self.plan)
        return replace(self, model=model, ranker=ranker)

    async def search(
        self,
        query: str,
        user_id: str | None = None,
        k: int = 10,
        explain: bool = False,
        at: datetime | None = None,
        guard: StoreGuard | None = None,
        **filters,
    ) -> SearchResult:
        """The top ``k`` of the catalog for ``query``; ``filters`` as ``retrieve`` takes them; the
        store read as ``rank`` reads it."""
        ids, backfill, retrieved = self._retrieved(query, filters)
        result = await self.rank(ids, user_id, query, k, backfill, explain, at, guard)
        return replace(result, stages={"retrieve": retrieved, **result.stages})

    def _retrieved(self, query: str, filters: dict[str, Any]) -> tuple[list[str], np.ndarray, float]:
        """The query's candidates, their backfill flags and the seconds retrieval took."""
        started = time.perf_counter()
        found = retrieved(self.index, query, k=CANDIDATES, **filters)
        return found.item_ids(self.index), found.backfill, time.perf_counter() - started

    async def rank(
        self,
        item_ids: Sequence[str],
        user_id: str | None = None,
        query: str | None = None,
        k: int | None = None,
        backfill: np.ndarray | None = None,
        explain: bool = False,
        at: datetime | None = None,
        guard: StoreGuard | None = None,
    ) -> SearchResult:
        """Order ``item_ids`` for the user (and query) with the model, as of ``at`` (naive UTC;
        default: now); keep the top ``k`` (all by default); with ``explain``, each result's largest
        contributions (SHAP values cost more than the scores: they are computed for the results
        only, and only when asked). The store read is awaited within the reader's budget (on the
        event loop, a Redis round trip lets other requests run); while ``guard`` holds the store
        unavailable it is skipped, and the fallback answers at once; a failed read is answered by
        the fallback too, and counted by ``guard``."""
        if not item_ids:
            return SearchResult(self.model.name, 0, 0, [])
        asked = self._asked(item_ids, user_id, query, k, backfill, explain, at)
        held = guard.admit() if guard else None
        if held is not None:
            return self._fallback(asked, held)
        try:
            features = await self.reader.features_async(asked.rows)
        except FeatureStoreError as exc:
            if guard:
                guard.failed(described(exc))
            return self._fallback(asked, described(exc))
        except Exception as exc:  # noqa: BLE001 - any other failure of the read: answer from the fallback
            return self._fallback(asked, described(exc))
        if guard:
            guard.succeeded()
        return self._ranked(asked, features)

    def entity_rows(
        self, item_ids: Sequence[str], user_id: str | None = None, query: str | None = None, at: datetime | None = None
    ) -> dict[str, list[Any]]:
        """The rows ``rank`` reads the service's features for (``RequestRows.columns``; each
        candidate's title BM25 against ``query``), as of ``at`` (default: now)."""
        ids = list(item_ids)
        bm25 = self.titles.score([query] * len(ids), ids) if query else np.zeros(len(ids))
        at = at or datetime.now(UTC).replace(tzinfo=None)
        return self.rows.columns(ids, at, user_id, [query] * len(ids) if query else None, bm25)

    def _asked(self, item_ids, user_id, query, k, backfill, explain, at) -> _Asked:
        """A ranking request with its entity rows (and the candidates' title BM25)."""
        rows = self.entity_rows(item_ids, user_id, query, at)
        bm25 = np.asarray(rows[RETRIEVAL], dtype="float64")
        return _Asked(rows["item_id"], bm25, rows, k, backfill, explain, time.perf_counter())

    def _ranked(self, asked: _Asked, features: dict[str, list[Any]]) -> SearchResult:
        """The model's ranking of the asked candidates, given their features."""
        featured = time.perf_counter()
        ids, bm25, rows = asked.ids, asked.bm25, asked.rows
        scores = self.ranker.score(features)
        order = np.argsort(-scores, kind="stable")[: asked.k]
        explained = [[] for _ in order]
        if asked.explain:
            # position is a constant at serving, the bias alike for all: neither explains an order
            frame = pl.DataFrame(features, strict=False)[order]
            contributions = self.ranker.contributions(frame).drop("bias", POSITION, strict=False)
            explained = [_largest(row) for row in contributions.iter_rows(named=True)]
        items = self._items(ids, order, scores, bm25, asked.backfill, explained)
        stages = {"features": featured - asked.started, "score": time.perf_counter() - featured}
        entity = tuple(column for column in self.plan.entity_columns if column != "item_id")
        inputs = [name for name in self.ranker.features if name in features]
        vectors = {"item_id": ids, **{name: rows[name] for name in entity}, **{name: features[name] for name in inputs}}
        backfilled = sum(item["backfill"] for item in items)
        return SearchResult(self.model.name, len(ids), backfilled, items, stages, vectors, order, entity)

    def _fallback(self, asked: _Asked, reason: str) -> SearchResult:
        """The candidates by BM25 (or in the given order without a query) when the online store fails."""
        ids, bm25 = asked.ids, asked.bm25
        scores = bm25 if bm25.any() else -np.arange(len(ids), dtype="float64")
        order = np.argsort(-scores, kind="stable")[: asked.k]
        items = self._items(ids, order, scores, bm25, asked.backfill, [[] for _ in order])
        fallback = f"online features unavailable ({reason}); ranked by {'BM25' if bm25.any() else 'the given order'}"
        backfilled = sum(item["backfill"] for item in items)
        return SearchResult(self.model.name, len(ids), backfilled, items, fallback=fallback)

    def _items(self, ids, order, scores, bm25, backfill, contributions) -> list[dict[str, Any]]:
        """The results in ``order``: rank, id, title, score, BM25, backfill flag, contributions."""
        served = [ids[i] for i in order.tolist()]
        flags = [False] * len(order) if backfill is None else backfill[order].tolist()
        columns = (served, map(self.item_titles.get, served), scores[order].tolist(), bm25[order].tolist(), flags)
        return [
            {
                "rank": rank,
                "item_id": item,
                "title": title,
                "score": score,
                "bm25": match,
                "backfill": flag,
                "contributions": reasons,
            }
            for rank, item, title, score, match, flag, reasons in zip(
                range(1, len(served) + 1), *columns, contributions, strict=True
            )
        ]


@dataclass(frozen=True)
class _Asked:
    """A ranking request: the candidates, their title BM25 and entity rows (``RequestRows.columns``),
    how many to keep, their backfill flags, whether to explain, and when it started."""

    ids: list[str]
    bm25: np.ndarray
    rows: dict[str, list[Any]]
    k: int | None
    backfill: np.ndarray | None
    explain: bool
    started: float


def _largest(contributions: dict[str, float]) -> list[dict[str, float | str]]:
    """The ``REASONS`` largest contributions by size, as ``{"feature", "value"}``."""
    largest = sorted(contributions.items(), key=lambda item: -abs(item[1]))[:REASONS]
    return [{"feature": name.split("__")[-1], "value": value} for name, value in largest]
