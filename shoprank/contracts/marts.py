"""Pandera contracts of the dbt marts that Feast and training read.

They restate, independently of dbt's own tests, what consumers rely on: keys present and
unique, counts non-negative and monotone over nested windows, rates within [0, 1], numbers finite,
and no row later than the data horizon (a row from the future would leak into point-in-time joins). Column
names and types must equal the declarations in ``dbt_project/models/marts/_marts__models.yml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import pandera.polars as pa
import polars as pl

TIMESTAMP = pl.Datetime("us")
WINDOWS = (1, 7, 30)
INTERACTIONS = ("views", "clicks", "carts", "favorites", "purchases")


def _key(dtype: pl.DataType = pl.Utf8) -> pa.Column:
    return pa.Column(dtype, nullable=False)


def _as_of(horizon: datetime) -> pa.Column:
    return pa.Column(TIMESTAMP, pa.Check.le(horizon, error=f"after the data horizon {horizon}"), nullable=False)


def _count() -> pa.Column:
    return pa.Column(pl.Int64, pa.Check.ge(0), nullable=False)


def _float(*checks: pa.Check, nullable: bool = True) -> pa.Column:
    """A number column: finite (NaN and infinities are violations wherever they come from)."""
    finite = pa.Check(lambda d: d.lazyframe.select(pl.col(d.key).is_finite()), name="not_finite")
    return pa.Column(pl.Float64, [finite, *checks], nullable=nullable)


def _rate(nullable: bool = False) -> pa.Column:
    return _float(pa.Check.in_range(0, 1), nullable=nullable)


def _number() -> pa.Column:
    return _float()


def _windowed(measures: tuple[str, ...], windows: tuple[int, ...] = WINDOWS) -> dict[str, pa.Column]:
    return {f"{m}_{w}d": _count() for m in measures for w in windows}


def _monotone(measures: tuple[str, ...], windows: tuple[int, ...] = WINDOWS) -> list[pa.Check]:
    """Dataframe checks: a count over a window never exceeds the count over a longer one."""
    return [
        pa.Check(
            lambda d, m=m, short=short, long=long: d.lazyframe.select(
                pl.col(f"{m}_{short}d") <= pl.col(f"{m}_{long}d")
            ),
            name=f"{m}_{short}d <= {m}_{long}d",
        )
        for m in measures
        for short, long in zip(windows, windows[1:], strict=False)
    ]


def _shares(horizon: datetime, key: str, prefix: str, owner: str = "user_id") -> pa.DataFrameSchema:
    """An owner (user, query) x attribute share mart (the dbt macro ``shares``)."""
    return pa.DataFrameSchema(
        {
            owner: _key(),
            key: _key(),
            "event_timestamp": _as_of(horizon),
            f"{prefix}_interactions_30d": _count(),
            f"{prefix}_purchases_30d": _count(),
            f"{prefix}_affinity_30d": _rate(),
        },
        strict=True,
        ordered=True,
    )


@dataclass(frozen=True)
class MartContract:
    """A mart's row checks (a Pandera schema, applied chunk by chunk) and its key (unique over
    the whole mart, checked where the mart lives, so memory stays bounded at any scale)."""

    schema: pa.DataFrameSchema
    key: tuple[str, ...]


MART_KEYS = {
    "user_features_daily": (
        "user_id",
        "event_timestamp",
    ),
    "item_features_daily": (
        "item_id",
        "event_timestamp",
    ),
    "user_category_features_daily": ("user_id", "category_path", "event_timestamp"),
    "user_top_category_features_daily": ("user_id", "category_top", "event_timestamp"),
    "user_brand_features_daily": ("user_id", "item_brand", "event_timestamp"),
    "item_catalog_features": (
        "item_id",
        "event_timestamp",
    ),
    "item_pair_features_weekly": (
        "item_id",
        "neighbour_item_id",
        "event_timestamp",
    ),
    "query_item_features_daily": (
        "query_norm",
        "item_id",
        "event_timestamp",
    ),
    "query_features_daily": ("query_norm", "event_timestamp"),
    "query_category_features_daily": ("query_norm", "category_path", "event_timestamp"),
    "fct_labels": (
        "query_id",
        "item_id",
    ),
    "fct_judgments": (
        "query_id",
        "item_id",
    ),
}


def mart_contracts(horizon: datetime) -> dict[str, MartContract]:
    """The contract of every mart, with ``horizon`` the end of the last day with events."""
    return {name: MartContract(schema, MART_KEYS[name]) for name, schema in _schemas(horizon).items()}


def _schemas(horizon: datetime) -> dict[str, pa.DataFrameSchema]:
    return {
        "item_catalog_features": pa.DataFrameSchema(
            {
                "item_id": _key(),
                "event_timestamp": pa.Column(TIMESTAMP, nullable=False),  # catalog versions, not activity
                "title": pa.Column(pl.Utf8, nullable=True),
                "brand": pa.Column(pl.Utf8, nullable=True),
                "category_path": pa.Column(pl.Utf8, nullable=True),
                "category_top": pa.Column(pl.Utf8, nullable=True),
                "price": _float(pa.Check.ge(0)),
            },
            strict=True,
            ordered=True,
        ),
        "user_features_daily": pa.DataFrameSchema(
            {
                "user_id": _key(),
                "event_timestamp": _as_of(horizon),
                **_windowed(INTERACTIONS),
                "impressions_30d": _count(),
                "ctr_30d": _rate(),
                "cvr_30d": _rate(),
                "categories_30d": _count(),
                "purchase_price_mean_30d": _float(pa.Check.ge(0)),
                "purchase_price_std_30d": _float(pa.Check.ge(0)),
                "last_event_at": pa.Column(TIMESTAMP, nullable=True),
                "signup_time": pa.Column(TIMESTAMP, nullable=True),
                "recency_days": _float(pa.Check.ge(0)),
                "tenure_days": _number(),
            },
            checks=_monotone(INTERACTIONS),
            strict=True,
            ordered=True,
        ),
        "item_features_daily": pa.DataFrameSchema(
            {
                "item_id": _key(),
                "event_timestamp": _as_of(horizon),
                **_windowed(INTERACTIONS + ("impressions",)),
                "ctr_30d": _rate(),
                "cvr_30d": _rate(),
                "price": _float(pa.Check.ge(0)),
                "price_mean_7d": _float(pa.Check.ge(0)),
                "title": pa.Column(pl.Utf8, nullable=True),
                "category_path": pa.Column(pl.Utf8, nullable=True),
                "category_top": pa.Column(pl.Utf8, nullable=True),
                "brand": pa.Column(pl.Utf8, nullable=True),
                "age_days": _number(),
                "popularity_rank_in_category": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
                "price_change_vs_7d": _number(),
            },
            checks=_monotone(INTERACTIONS + ("impressions",)),
            strict=True,
            ordered=True,
        ),
        "user_category_features_daily": _shares(horizon, "category_path", "category"),
        "user_top_category_features_daily": _shares(horizon, "category_top", "top_category"),
        "user_brand_features_daily": _shares(horizon, "item_brand", "brand"),
        "item_pair_features_weekly": pa.DataFrameSchema(
            {
                "item_id": _key(),
                "neighbour_item_id": _key(),
                "event_timestamp": _as_of(horizon),
                "co_sessions_28d": pa.Column(pl.Int64, pa.Check.ge(2), nullable=False),
                "cosine_28d": _rate(),
                "neighbour_rank": pa.Column(pl.Int64, pa.Check.ge(1), nullable=False),
            },
            checks=[
                pa.Check(
                    lambda d: d.lazyframe.select(pl.col("item_id") != pl.col("neighbour_item_id")),
                    name="item_is_its_own_neighbour",
                )
            ],
            strict=True,
            ordered=True,
        ),
        "query_item_features_daily": pa.DataFrameSchema(
            {
                "query_norm": _key(),
                "item_id": _key(),
                "event_timestamp": _as_of(horizon),
                **_windowed(("impressions", "clicks"), (7, 30)),
                "carts_30d": _count(),
                "purchases_30d": _count(),
                "query_item_ctr_30d": _rate(),
            },
            checks=_monotone(("impressions", "clicks"), (7, 30)),
            strict=True,
            ordered=True,
        ),
        "query_features_daily": pa.DataFrameSchema(
            {
                "query_norm": _key(),
                "event_timestamp": _as_of(horizon),
                **_windowed(("searches",), (7, 30)),
                "clicks_30d": _count(),
                "query_ctr_30d": _rate(),
            },
            checks=_monotone(("searches",), (7, 30)),
            strict=True,
            ordered=True,
        ),
        "query_category_features_daily": _shares(horizon, "category_path", "query_category", owner="query_norm"),
        "fct_labels": pa.DataFrameSchema(
            {
                "query_id": _key(),
                "user_id": _key(),
                "item_id": _key(),
                "event_timestamp": _as_of(horizon),
                "surface": pa.Column(pl.Utf8, pa.Check.isin(["search", "recommend", "browse"])),
                "query": pa.Column(pl.Utf8, nullable=True),
                "query_norm": pa.Column(pl.Utf8, nullable=True),
                "position": pa.Column(pl.Int32, pa.Check.ge(0)),
                "label": pa.Column(pl.Int32, pa.Check.isin([0, 1, 2, 3])),
            },
            strict=True,
            ordered=True,
        ),
        "fct_judgments": pa.DataFrameSchema(
            {
                "query_id": _key(),
                "user_id": _key(),
                "item_id": _key(),
                "event_timestamp": pa.Column(pl.Datetime("us"), nullable=False),  # after the horizon: see the mart
                "surface": pa.Column(pl.Utf8, pa.Check.isin(["search"])),
                "query": pa.Column(pl.Utf8),
                "query_norm": pa.Column(pl.Utf8),
                "position": pa.Column(pl.Int32, nullable=True),
                "label": pa.Column(pl.Int32, pa.Check.isin([0, 1, 2, 3])),
                "grade": _float(nullable=False),
            },
            strict=True,
            ordered=True,
        ),
    }
