"""Recommendation candidates for a request: co-visitation neighbours of the session's items, then
the most popular items of the requested category, then the most popular items overall (a cold
start gets the last two only), for the recommendation model to rank (``Searcher.rank``).

Neighbours come from the newest snapshot of the ``item_pair_features_weekly`` mart (cosine
similarity of co-visitation over 28 days), popularity from the newest ``item_features_daily``
rows (views over 7 days): both read once, when the service opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from shoprank.config import Settings
from shoprank.errors import WarehouseError
from shoprank.search.index import read_popularity
from shoprank.search.retrieve import in_category

CANDIDATES = 100


@dataclass(frozen=True)
class Recommender:
    """Candidate generators over the newest marts."""

    neighbours: pl.DataFrame  # item_id, neighbour_item_id, cosine_28d
    popular: pl.DataFrame  # item_id, category_path, popularity; most popular first

    @classmethod
    def open(cls, settings: Settings, catalog: pl.DataFrame) -> Recommender:
        """Read the generators' marts (``catalog``: ``item_id`` and ``category_path`` of every item).

        Raises:
            WarehouseError: A mart is missing.
        """
        pairs = settings.marts / "item_pair_features_weekly.parquet"
        if not pairs.is_file():
            raise WarehouseError(f'Mart "{pairs}" does not exist; run "shoprank build"')
        newest = pl.scan_parquet(pairs).filter(pl.col("event_timestamp") == pl.col("event_timestamp").max())
        neighbours = newest.select("item_id", "neighbour_item_id", "cosine_28d").collect()
        popular = (
            catalog.select("item_id", "category_path")
            .join(read_popularity(settings), on="item_id", how="left")
            .with_columns(pl.col("popularity").fill_null(0.0))
            .sort(["popularity", "item_id"], descending=[True, False])
        )
        return cls(neighbours, popular)

    def candidates(
        self, session_item_ids: Sequence[str] = (), category: str | None = None
    ) -> tuple[list[str], np.ndarray]:
        """Up to ``CANDIDATES`` items, the session's neighbours first, and whether each came from
        popularity (backfill) rather than the neighbours."""
        seen = set(session_item_ids)
        similar = (
            self.neighbours.filter(pl.col("item_id").is_in(list(seen)) & ~pl.col("neighbour_item_id").is_in(list(seen)))
            .group_by("neighbour_item_id")
            .agg(pl.col("cosine_28d").sum())
            .sort(["cosine_28d", "neighbour_item_id"], descending=[True, False])["neighbour_item_id"]
            .to_list()
        )
        of_category = self.popular.filter(in_category(category))["item_id"] if category else []
        ids = list(dict.fromkeys([*similar, *of_category, *self.popular["item_id"]]))
        ids = [item for item in ids if item not in seen][:CANDIDATES]
        neighbours = set(similar)
        return ids, np.array([item not in neighbours for item in ids], dtype=bool)
