"""Online feature frames: a feature service's values for the candidates of one request, read
through Feast's ``get_online_features`` (the reference path: any faster read must equal it).

The request rows carry what training frames carry per row (``training.dataset``): the user, the
item and the item's current category, top category and brand from the catalog, the normalized
and raw query, the request time, and the BM25 of the query against the item's title.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import polars as pl
from feast import FeatureStore

from shoprank.errors import ContractError
from shoprank.text import normalize_query
from training.dataset import ITEM_COLUMNS, RETRIEVAL
from training.plan import ServicePlan

ANONYMOUS = "anonymous"  # the user of a request without one: no user features, as in judgments
NO_KEY = ""  # a missing join key (an item without a brand...): matches no row, as a null does offline


class RequestRows:
    """Builds one request's entity rows from the catalog, indexed once: Python lists by column, no
    frame (the service's per-request path); ``frame`` gives them as a DataFrame."""

    def __init__(self, catalog: pl.DataFrame) -> None:
        """``catalog``: ``item_id`` and the catalog columns of ``ITEM_COLUMNS`` (``marts.dim_items``,
        one row per item); an item it lacks gets missing attributes."""
        attributes = catalog.select(ITEM_COLUMNS.values()).iter_rows()
        self.attributes = dict(zip(catalog["item_id"].to_list(), attributes, strict=True))  # by item
        self.unknown = (None,) * len(ITEM_COLUMNS)
        self.schema = {
            "user_id": pl.Utf8,
            "item_id": pl.Utf8,
            "query": pl.Utf8,
            "query_norm": pl.Utf8,
            "request_time": pl.Datetime("us"),
            RETRIEVAL: pl.Float64,
            **{column: catalog.schema[source] for column, source in ITEM_COLUMNS.items()},
        }

    def columns(
        self,
        item_ids: Sequence[str],
        request_time: datetime,
        user_id: str | None = None,
        queries: Sequence[str | None] | None = None,
        bm25: Sequence[float] | None = None,
    ) -> dict[str, list[Any]]:
        """One entity row per candidate, in candidate order, as the columns of ``self.schema``.

        Args:
            item_ids: The candidates.
            request_time: When the ranking is asked for (UTC, naive).
            user_id: The shopper (None: anonymous).
            queries: Each candidate's raw query (None: no query).
            bm25: The BM25 of each candidate's query against its title (None: 0).
        """
        n = len(item_ids)
        if queries is None:
            queries = norms = [None] * n
        else:
            normalized = {query: normalize_query(query) for query in set(queries) if query is not None}
            norms = list(map(normalized.get, queries))
        attributes = list(map(self.attributes.get, item_ids, itertools.repeat(self.unknown)))
        return {
            "user_id": [user_id or ANONYMOUS] * n,
            "item_id": list(item_ids),
            "query": list(queries),
            "query_norm": norms,
            "request_time": [request_time] * n,
            RETRIEVAL: [0.0] * n if bm25 is None else list(map(float, bm25)),
            **dict(zip(ITEM_COLUMNS, transpose(attributes, len(ITEM_COLUMNS)), strict=True)),
        }

    def frame(self, *args: Any, **kwargs: Any) -> pl.DataFrame:
        """``columns(...)`` as a DataFrame."""
        return pl.DataFrame(self.columns(*args, **kwargs), schema=self.schema)


def transpose(rows: list[tuple], width: int) -> list[list[Any]]:
    """The ``width`` columns of rows of that many values (empty columns without rows)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def one_object(values: Sequence[Any]) -> bool:
    """Whether there are values and all are the very object of the first (the user's, the
    request's, repeated on every row); equal values that differ, 0.0 and -0.0, are not."""
    return bool(values) and all(map(operator.is_, values, itertools.repeat(values[0])))


def request_rows(
    catalog: pl.DataFrame, candidates: pl.DataFrame, request_time: datetime, user_id: str | None = None
) -> pl.DataFrame:
    """One entity row per candidate, in candidate order (``RequestRows``, for one call).

    Args:
        catalog: ``item_id`` and the catalog columns of ``ITEM_COLUMNS`` (``marts.dim_items``).
        candidates: ``item_id``, and for a search the raw ``query`` and the BM25 of the query
            against the item's title (``retrieval_bm25``, 0 when absent).
        request_time: When the ranking is asked for (UTC, naive).
        user_id: The shopper (None: anonymous).
    """
    given = {name: candidates[name].to_list() for name in ("query", RETRIEVAL) if name in candidates.columns}
    return RequestRows(catalog).frame(
        candidates["item_id"].to_list(), request_time, user_id, given.get("query"), given.get(RETRIEVAL)
    )


def online_features(store: FeatureStore, plan: ServicePlan, rows: pl.DataFrame) -> pl.DataFrame:
    """``rows`` with the service's features appended (named as in training frames), in row order.

    Raises:
        ContractError: ``rows`` lack an entity column the service needs.
    """
    missing = [column for column in plan.entity_columns if column not in rows.columns]
    if missing:
        raise ContractError(f'Feature service "{plan.service}" needs request column(s) {missing}; add them to the rows')
    keys = {column for view in plan.views for column in view.join_keys.values()}
    entities = rows.select(pl.col(c).fill_null(NO_KEY) if c in keys else pl.col(c) for c in plan.entity_columns)
    response = store.get_online_features(
        features=store.get_feature_service(plan.service),
        entity_rows=entities.to_dicts(),
        full_feature_names=True,
    ).to_dict()
    values = pl.DataFrame({name: response[name] for name in plan.features}, strict=False)
    return pl.concat([rows, values], how="horizontal")
