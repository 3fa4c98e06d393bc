"""Online feature frames: a feature service's values for the candidates of one request, read
through Feast's ``get_online_features`` (the reference path: any faster read must equal it).

The request rows carry what training frames carry per row (``training.dataset``): the user, the
item and the item's current category, top category and brand from the catalog, the normalized
and raw query, the request time, and the BM25 of the query against the item's title.
"""

from __future__ import annotations

from datetime import datetime

import polars as pl
from feast import FeatureStore

from shoprank.errors import ContractError
from shoprank.text import normalize_query
from training.dataset import ITEM_COLUMNS, RETRIEVAL
from training.plan import ServicePlan

ANONYMOUS = "anonymous"  # the user of a request without one: no user features, as in judgments
NO_KEY = ""  # a missing join key (an item without a brand...): matches no row, as a null does offline


def request_rows(
    catalog: pl.DataFrame, candidates: pl.DataFrame, request_time: datetime, user_id: str | None = None
) -> pl.DataFrame:
    """One entity row per candidate, in candidate order.

    Args:
        catalog: ``item_id`` and the catalog columns of ``ITEM_COLUMNS`` (``marts.dim_items``);
            an item it lacks gets missing attributes.
        candidates: ``item_id``, and for a search the raw ``query`` and the BM25 of the query
            against the item's title (``retrieval_bm25``, 0 when absent).
        request_time: When the ranking is asked for (UTC, naive).
        user_id: The shopper (None: anonymous).
    """
    missing = {"query": pl.lit(None, pl.Utf8), RETRIEVAL: pl.lit(0.0)}
    candidates = candidates.with_columns(
        value.alias(name) for name, value in missing.items() if name not in candidates.columns
    )
    norms = {query: normalize_query(query) for query in candidates["query"].drop_nulls().unique()}
    rows = candidates.select(
        pl.lit(user_id or ANONYMOUS).alias("user_id"),
        "item_id",
        "query",
        pl.col("query").replace_strict(norms, default=None, return_dtype=pl.Utf8).alias("query_norm"),
        pl.lit(request_time).alias("request_time"),
        pl.col(RETRIEVAL).cast(pl.Float64),
    )
    attributes = catalog.select("item_id", *(pl.col(source).alias(column) for column, source in ITEM_COLUMNS.items()))
    return rows.join(attributes, on="item_id", how="left", maintain_order="left")


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
