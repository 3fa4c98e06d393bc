"""Answer a text query: candidates from the catalog's text index, their features from the online
store, ordered by the search model; each result with the features that moved its score most."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import polars as pl

from serving.features import online_features, request_rows
from shoprank.config import Settings
from shoprank.features.store import open_store
from shoprank.search.index import open_index
from shoprank.search.retrieve import retrieve
from shoprank.warehouse import read
from training.dataset import RETRIEVAL
from training.plan import resolve
from training.rankers import POSITION
from training.registry import load_ranker
from training.signals import catalog_index

SERVICE = "search_ranker_v2"
CANDIDATES = 100
REASONS = 3  # contributions shown per result


@dataclass(frozen=True)
class SearchResult:
    """A ranked answer.

    Attributes:
        model: The model version that ranked (``service/version``).
        candidates: Items retrieved, of which ``backfilled`` came from the backfill.
        items: The top results, best first: ``rank``, ``item_id``, ``title``, ``score``,
            ``bm25``, ``backfill``, ``reasons`` (the largest contributions, ``feature +0.12``).
    """

    model: str
    candidates: int
    backfilled: int
    items: pl.DataFrame


def search(
    settings: Settings,
    query: str,
    user_id: str | None = None,
    k: int = 10,
    service: str = SERVICE,
    version: str | None = None,
) -> SearchResult:
    """Rank the catalog for ``query`` (and ``user_id``'s features, when given) with the model.

    Raises:
        ShoprankError: No model of ``service``, no index, feature store or warehouse.
    """
    ranker, model = load_ranker(settings, service, version)
    found = retrieve(open_index(settings), query, k=CANDIDATES)
    catalog = read(settings.warehouse, "select * from marts.dim_items")
    if found.is_empty():
        return SearchResult(model.name, 0, 0, pl.DataFrame())
    ids = found["item_id"].to_list()
    candidates = pl.DataFrame(
        {"item_id": ids, "query": [query] * len(ids), RETRIEVAL: catalog_index(settings).score([query] * len(ids), ids)}
    )
    store = open_store(settings)
    rows = request_rows(catalog, candidates, datetime.now(UTC).replace(tzinfo=None), user_id)
    frame = online_features(store, resolve(store, service), rows)
    contributions = ranker.contributions(frame).drop("bias", POSITION, strict=False)  # alike for every item
    scores = ranker.predict(frame)
    order = np.argsort(-scores, kind="stable")[:k]
    titles = dict(catalog.select("item_id", "title").iter_rows())
    items = pl.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "item_id": [ids[i] for i in order],
            "title": [titles.get(ids[i]) for i in order],
            "score": scores[order],
            "bm25": candidates[RETRIEVAL].to_numpy()[order],
            "backfill": found["backfill"].to_numpy()[order],
            "reasons": [_reasons(contributions.row(int(i), named=True)) for i in order],
        }
    )
    return SearchResult(model.name, found.height, int(found["backfill"].sum()), items)


def _reasons(contributions: dict[str, float]) -> str:
    """The largest contributions by size, as ``feature +0.12`` (view prefixes dropped)."""
    largest = sorted(contributions.items(), key=lambda item: -abs(item[1]))[:REASONS]
    return ", ".join(f"{name.split('__')[-1]} {value:+.2f}" for name, value in largest)
