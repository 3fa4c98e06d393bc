"""Baseline rankers: a score per row of an evaluation frame, higher ranks first.

Every baseline reads only what was known at the row's ``event_timestamp``: item popularity and
co-visitation from the marts dated at or before it, the user's items from events strictly before
it (``training.signals``, the same SQL as the candidate generators). ``bm25`` scores the query
against the current catalog titles (``marts.dim_items``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from shoprank.config import Settings
from shoprank.errors import ConfigError, ContractError
from training.pit import ROW, connect
from training.signals import as_of, catalog_index, neighbours, popularity, recent_items, register_events


@dataclass(frozen=True)
class Rows:
    """The rows to score and where to look things up.

    Attributes:
        settings: The workdir (warehouse and marts).
        frame: Entity rows: ``query_id, user_id, item_id, event_timestamp`` and, where a
            baseline needs them, ``position`` or ``query``.
        con: In-memory DuckDB holding the table ``targets`` (``__row``, ``user_id``, ``item_id`` and
            ``ts``, the naive UTC ``event_timestamp``).
    """

    settings: Settings
    frame: pl.DataFrame
    con: duckdb.DuckDBPyConnection


def logging_policy(rows: Rows) -> np.ndarray:
    """The served order: the earlier the position, the higher the score."""
    if "position" not in rows.frame.columns or rows.frame["position"].null_count():
        raise ContractError("The logging_policy baseline needs the served position of every row; use served labels")
    return -rows.frame["position"].to_numpy().astype(np.float64)


def random_order(rows: Rows) -> np.ndarray:
    """Uniform random scores, seeded by the settings' seed."""
    return np.random.default_rng(rows.settings.seed).random(rows.frame.height)


def item_popularity(rows: Rows) -> np.ndarray:
    """The item's interactions in the 7 days before the row (0 when none)."""
    return _item_day(rows, "coalesce(p.popularity, 0)")


def category_popularity(rows: Rows) -> np.ndarray:
    """Minus the item's popularity rank within its category as of the row (unranked items last)."""
    return _item_day(rows, "-coalesce(p.category_rank, 1e9)")


def item_cf(rows: Rows) -> np.ndarray:
    """Summed co-visitation cosine similarity of the item to the user's items of the 7 days before
    the row (the item-item snapshot as of the row; 0 without neighbours)."""
    register_events(rows.con, rows.settings)
    similar = neighbours(recent_items("select user_id, ts from targets"), rows.settings)
    return _scores(
        rows.con,
        f"select coalesce(n.similarity, 0) as score from targets r left join ({similar}) n using (user_id, ts, item_id) order by r.{ROW}",
    )


def bm25(rows: Rows) -> np.ndarray:
    """BM25 of the row's query against the item's current catalog title (0 without a query)."""
    if "query" not in rows.frame.columns:
        raise ContractError("The bm25 baseline needs the query of every row; use search labels or judgments")
    return catalog_index(rows.settings).score(rows.frame["query"].to_list(), rows.frame["item_id"].to_list())


BASELINES: dict[str, Callable[[Rows], np.ndarray]] = {
    "logging_policy": logging_policy,
    "random": random_order,
    "popularity": item_popularity,
    "category_popularity": category_popularity,
    "item_cf": item_cf,
    "bm25": bm25,
}


def score_baselines(settings: Settings, frame: pl.DataFrame, names: Iterable[str]) -> dict[str, np.ndarray]:
    """Scores of each named baseline for the rows of ``frame``, aligned with them.

    Raises:
        ConfigError: An unknown baseline name.
        ContractError: The frame lacks what a baseline needs (``position``, ``query``).
        WarehouseError: The warehouse or a mart is missing.
    """
    names = list(names)
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise ConfigError(f"Unknown baseline(s) {unknown}; use {', '.join(BASELINES)}")
    con = connect(settings.datasets / ".spill")
    try:
        keys = frame.select("user_id", "item_id", "event_timestamp").with_row_index(ROW)
        con.register("frame", keys)
        con.execute(
            f"create temp table targets as select {ROW}, user_id, item_id, event_timestamp::timestamp as ts from frame"
        )
        rows = Rows(settings, frame, con)
        return {name: BASELINES[name](rows) for name in names}
    finally:
        con.close()


def _item_day(rows: Rows, score: str) -> np.ndarray:
    """``score`` of the row's item in ``item_features_daily`` as of the row (``p`` is the item's day)."""
    items = popularity(rows.settings)
    return _scores(
        rows.con,
        f"select {score} as score from ({as_of('select * from targets', items)}) r left join ({items}) p "
        f"on p.item_id = r.item_id and p.event_timestamp = r.snapshot order by r.{ROW}",
    )


def _scores(con: duckdb.DuckDBPyConnection, select: str) -> np.ndarray:
    """The ``score`` column of ``select`` (in row order)."""
    return con.sql(select).fetchnumpy()["score"].astype(np.float64)
