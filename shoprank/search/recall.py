"""Candidate recall: how many of the items a query should find retrieval returns.

A relevant pair is ``(query, item_id)``; it may repeat (one row per click counts each click).
``recall`` is the share of relevant rows whose item is among the query's top ``k`` candidates,
``query_recall`` the mean over queries of each query's share.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from shoprank.config import Settings
from shoprank.search.index import CatalogIndex
from shoprank.search.retrieve import retrieve_batch
from shoprank.warehouse import read

JUDGED_RELEVANT = 2.0  # grade on the raters' 1-3 scale (Home Depot: 1 irrelevant, 2 partly, 3 exactly)


def retrieval_recall(
    index: CatalogIndex, relevant: pl.DataFrame, ks: Sequence[int] = (20, 100, 500), backfill: bool = True
) -> pl.DataFrame:
    """``k, recall, query_recall`` of ``retrieve_batch`` over the distinct queries of ``relevant``
    (``query, item_id``), without filters."""
    queries = relevant.select(pl.col("query").unique(maintain_order=True))["query"]
    found = retrieve_batch(index, queries.to_list(), k=max(ks), backfill=backfill)
    found = found.with_columns(query=queries.gather(found["query"]))
    ranks = relevant.join(found.select("query", "item_id", "rank"), on=["query", "item_id"], how="left")
    hits = ranks.select("query", *((pl.col("rank") < k).fill_null(False).alias(str(k)) for k in ks))
    per_query = hits.group_by("query").mean()
    return pl.DataFrame(
        {
            "k": list(ks),
            "recall": [hits[str(k)].mean() for k in ks],
            "query_recall": [per_query[str(k)].mean() for k in ks],
        }
    )


def clicked_searches(settings: Settings) -> pl.DataFrame:
    """``query, item_id`` of every clicked search impression (label > 0), by normalized query."""
    return read(
        settings.warehouse,
        "select query_norm as query, item_id from intermediate.int_impressions_labeled "
        "where surface = 'search' and label > 0 and query_norm is not null",
    )


def judged_relevant(settings: Settings, grade: float = JUDGED_RELEVANT) -> pl.DataFrame:
    """``query, item_id`` of every judgment with a grade of at least ``grade``, by normalized query."""
    return read(
        settings.warehouse,
        f"select query_norm as query, item_id from marts.fct_judgments where grade >= {float(grade)} "
        "and query_norm is not null",
    )
