"""Recommendation candidates for a request, for the recommendation model to rank
(``Searcher.rank``), each marked with the generator that found it:

1. ``session``: co-visitation neighbours of the session's items;
2. ``history``: co-visitation neighbours of the user's recent items (newest weigh most);
3. ``category``: the most popular items of the requested category;
4. ``popular``: the most popular items overall.

The last two are backfill; a cold start (no session, no history) gets them only. Items of the
session are never candidates, nor items the user bought among their recent items: a purchase
ends that need for a while (a second drill is no recommendation), and its neighbours — the
accessories — are candidates instead. Only recent purchases count, so a consumable bought long
ago can come back.

Neighbours come from the newest snapshot of the ``item_pair_features_weekly`` mart (cosine
similarity of co-visitation over 28 days), popularity from the newest ``item_features_daily``
rows (views over 7 days), recent items from ``int_events_sessionized`` (human users, duplicates
dropped, clocks repaired): all read once, when the service opens. Events the service accepts
afterwards (``POST /v1/events``) update the recent items in memory (``RecentItems.record``), and
so do events landed by other processes (the other workers of ``shoprank serve --workers``, other
instances): their landing files are read within ``FOLLOW_SECONDS`` (``RecentItems.follow``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from shoprank.config import Settings
from shoprank.search.index import read_popularity
from shoprank.search.retrieve import in_category
from shoprank.warehouse import mart, read

CANDIDATES = 100
RECENT_ITEMS = 20  # distinct items remembered per user
CATEGORIES_KEPT = 10_000  # categories whose popular items are remembered
LIVE_USERS = 100_000  # users whose posted events are remembered (the least recently active forgotten)
RECENCY_DECAY = 0.9  # the weight of a user's n-th newest item's neighbours: RECENCY_DECAY ** n
PURCHASE = "purchase"
FOLLOW_SECONDS = 2.0  # how often the landing folder is listed for events landed by other processes
SESSION, HISTORY, CATEGORY, POPULAR = "session", "history", "category", "popular"
BACKFILL = frozenset({CATEGORY, POPULAR})
LANDED = "events-*.parquet"  # landing files of events (hidden ones are still being written)

RECENT_SQL = f"""
with touched as (
    select user_id, item_id, max(event_time) as last_time, bool_or(event_type = '{PURCHASE}') as bought
    from intermediate.int_events_sessionized
    where item_id is not null
    group by user_id, item_id
)
select user_id, item_id, last_time, bought
from touched
qualify row_number() over (partition by user_id order by last_time desc, item_id) <= {RECENT_ITEMS}
order by user_id, last_time desc, item_id
"""


@dataclass(frozen=True)
class Candidates:
    """Items to rank, in generator order, and the generator of each (``session``, ``history``,
    ``category``, ``popular``)."""

    ids: list[str]
    sources: list[str]

    @property
    def backfill(self) -> np.ndarray:
        """Whether each candidate came from popularity rather than neighbours."""
        return np.array([source in BACKFILL for source in self.sources], dtype=bool)

    def source_of(self) -> dict[str, str]:
        return dict(zip(self.ids, self.sources, strict=True))


@dataclass(frozen=True)
class Recent:
    """A user's recent items, newest first, and those of them bought."""

    items: list[str]
    bought: set[str]


class RecentItems:
    """The ``RECENT_ITEMS`` distinct items each user touched last: the warehouse's as of opening
    (a Polars frame sorted by user, looked up by binary search) merged with the events accepted
    since (at most ``RECENT_ITEMS`` per user for ``LIVE_USERS`` users). Thread-safe."""

    def __init__(self, stored: pl.DataFrame, landing: Path) -> None:
        """``stored``: ``user_id``, ``item_id``, ``last_time``, ``bought``; ``landing``: the folder
        events are landed in (its files as of now count as stored)."""
        stored = stored.sort("user_id", maintain_order=True)
        firsts = stored["user_id"].is_first_distinct()
        self._users = stored["user_id"].filter(firsts).to_numpy()  # sorted, each once
        self._starts = np.append(firsts.arg_true().to_numpy(), stored.height)  # of each user's rows
        self._stored = [stored[column] for column in ("item_id", "last_time", "bought")]
        self.landing = landing
        self._live: OrderedDict[str, dict[str, tuple[datetime, bool]]] = OrderedDict()
        self._lock = threading.Lock()
        self._seen = set(landing.glob(LANDED))
        self._followed = time.monotonic()

    @classmethod
    def read(cls, settings: Settings) -> RecentItems:
        """Read every user's recent items from the warehouse.

        Raises:
            WarehouseError: The warehouse or ``int_events_sessionized`` is missing.
        """
        return cls(read(settings.warehouse, RECENT_SQL), settings.landing / "events")

    def follow(self) -> None:
        """Remember the events of landing files that appeared since the last look (at most every
        ``FOLLOW_SECONDS``), except the ones ``record`` was given."""
        if time.monotonic() - self._followed < FOLLOW_SECONDS:
            return
        self._followed = time.monotonic()
        for path in sorted(set(self.landing.glob(LANDED)) - self._seen):
            self.record(pl.read_parquet(path, columns=["user_id", "item_id", "event_type", "event_time"]), path)

    def record(self, events: pl.DataFrame, path: Path | None = None) -> None:
        """Remember accepted events (``user_id``, ``item_id``, ``event_type``, ``event_time``),
        landed in ``path``."""
        if path is not None:
            self._seen.add(path)
        rows = events.select(
            "user_id",
            "item_id",
            (pl.col("event_type").str.strip_chars().str.to_lowercase() == PURCHASE).alias("bought"),
            "event_time",
        ).drop_nulls()
        with self._lock:
            for user_id, item_id, bought, at in rows.iter_rows():
                touched = self._live.pop(user_id, {})
                _touch(touched, item_id, at, bought)
                self._live[user_id] = dict(_newest(touched.items()))
            while len(self._live) > LIVE_USERS:
                self._live.popitem(last=False)

    def of(self, user_id: str | None) -> Recent:
        """``user_id``'s recent items (none for an unknown or anonymous user)."""
        if user_id is None:
            return Recent([], set())
        found = int(np.searchsorted(self._users, user_id))
        touched = {}
        if found < len(self._users) and self._users[found] == user_id:
            start, end = self._starts[found], self._starts[found + 1]
            items, times, bought = (column[start:end].to_list() for column in self._stored)
            touched = dict(zip(items, zip(times, bought, strict=True), strict=True))
        with self._lock:
            live = list(self._live.get(user_id, {}).items())
        for item_id, (at, bought) in live:
            _touch(touched, item_id, at, bought)
        newest = _newest(touched.items())
        return Recent([item for item, _ in newest], {item for item, (_, bought) in newest if bought})


def _touch(touched: dict[str, tuple[datetime, bool]], item_id: str, at: datetime, bought: bool) -> None:
    """Record a touch of ``item_id`` at ``at``: its newest time, and whether it was ever bought."""
    last, was_bought = touched.get(item_id, (at, False))
    touched[item_id] = (max(last, at), was_bought or bought)


def _newest(touched) -> list[tuple[str, tuple[datetime, bool]]]:
    """The ``RECENT_ITEMS`` newest of ``(item_id, (time, bought))`` pairs, newest first."""
    by_item = sorted(touched)
    return sorted(by_item, key=lambda pair: pair[1][0], reverse=True)[:RECENT_ITEMS]  # stable: ties by item


class Neighbours:
    """Each item's co-visitation neighbours and their cosine similarity, as arrays: the
    neighbours of an item are a slice (``item_pair_features_weekly``'s rows grouped by item)."""

    def __init__(self, pairs: pl.DataFrame) -> None:
        """``pairs``: ``item_id``, ``neighbour_item_id``, ``cosine_28d``."""
        pairs = pairs.sort("item_id", "neighbour_item_id")
        ids = pairs["neighbour_item_id"].unique().sort()  # a neighbour's code is its place here
        firsts = pairs["item_id"].is_first_distinct()
        starts = np.append(firsts.arg_true().to_numpy(), pairs.height)
        items = pairs["item_id"].filter(firsts).to_list()
        self._slices = {item: (start, end) for item, start, end in zip(items, starts[:-1], starts[1:], strict=True)}
        self._codes = ids.search_sorted(pairs["neighbour_item_id"]).to_numpy()
        self._cosines = pairs["cosine_28d"].cast(pl.Float64).to_numpy()
        self.ids = ids.to_list()

    def of(self, item_ids: list[str], weights: list[float]) -> list[str]:
        """The neighbours of ``item_ids``, by their cosine similarity summed over the items, each
        weighted by its ``weights``; the best first (ties by item id)."""
        slices = [
            (self._slices[item], weight) for item, weight in zip(item_ids, weights, strict=True) if item in self._slices
        ]
        if not slices:
            return []
        codes = np.concatenate([self._codes[start:end] for (start, end), _ in slices])
        cosines = np.concatenate([self._cosines[start:end] * weight for (start, end), weight in slices])
        found, each = np.unique(codes, return_inverse=True)
        scores = np.bincount(each, weights=cosines)
        return [self.ids[code] for code in found[np.lexsort((found, -scores))].tolist()]


@dataclass(frozen=True)
class Recommender:
    """Candidate generators over the newest marts and the users' recent items."""

    neighbours: Neighbours
    popular: pl.DataFrame  # item_id, category_path, popularity; most popular first
    recent: RecentItems
    _by_category: dict = field(default_factory=dict)  # of a category asked for: its popular items, whether all

    @classmethod
    def open(cls, settings: Settings, catalog: pl.DataFrame) -> Recommender:
        """Read the generators' marts (``catalog``: ``item_id`` and ``category_path`` of every item)
        and the users' recent items.

        Raises:
            WarehouseError: A mart or the warehouse is missing.
        """
        newest = pl.scan_parquet(mart(settings, "item_pair_features_weekly")).filter(
            pl.col("event_timestamp") == pl.col("event_timestamp").max()
        )
        neighbours = newest.select("item_id", "neighbour_item_id", "cosine_28d").collect()
        popular = (
            catalog.select("item_id", "category_path")
            .join(read_popularity(settings), on="item_id", how="left")
            .with_columns(pl.col("popularity").fill_null(0.0))
            .sort(["popularity", "item_id"], descending=[True, False])
        )
        return cls(Neighbours(neighbours), popular, RecentItems.read(settings))

    def candidates(
        self, session_item_ids: Sequence[str] = (), category: str | None = None, user_id: str | None = None
    ) -> Candidates:
        """Up to ``CANDIDATES`` items from the generators in order (an item keeps the first
        generator that found it), without the session's items and the user's recent purchases."""
        session = list(dict.fromkeys(session_item_ids))
        self.recent.follow()
        recent = self.recent.of(user_id)
        generators = {
            SESSION: self.neighbours.of(session, [1.0] * len(session)),
            HISTORY: self.neighbours.of(recent.items, [RECENCY_DECAY**n for n in range(len(recent.items))]),
        }
        excluded = {*session, *recent.bought}
        generators[CATEGORY] = self._popular_in(category, CANDIDATES + len(excluded)) if category else []
        generators[POPULAR] = self._popular_in(None, CANDIDATES + len(excluded))
        found: dict[str, str] = {}
        for source, ids in generators.items():
            for item in ids:
                if len(found) == CANDIDATES:
                    break
                if item not in excluded:
                    found.setdefault(item, source)
        return Candidates(list(found), list(found.values()))

    def _popular_in(self, category: str | None, count: int) -> list[str]:
        """At least the ``count`` most popular items of ``category`` (None: all), most popular
        first, or all of them (remembered per category, for ``CATEGORIES_KEPT`` categories)."""
        kept, complete = self._by_category.get(category, ([], False))
        if len(kept) < count and not complete:
            head = max(count, CANDIDATES + RECENT_ITEMS)
            popular = self.popular.filter(in_category(category)) if category else self.popular
            kept = popular["item_id"].head(head).to_list()
            if len(self._by_category) >= CATEGORIES_KEPT:
                self._by_category.clear()
            self._by_category[category] = kept, len(kept) < head
        return kept
