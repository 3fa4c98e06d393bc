"""Feature views over the dbt marts. Each mart emits a row whenever a value changes (including
the day a window lets old activity go), so a view's TTL only has to cover its longest window:
older rows come back missing rather than stale."""

from datetime import timedelta

from feast import FeatureView, Field
from feast.types import Float64, Int64, String, UnixTimestamp

import data_sources as sources
from entities import brand, category, item, neighbour, query, top_category, user

WINDOWS = (1, 7, 30)
INTERACTIONS = ("views", "clicks", "carts", "favorites", "purchases")


def _counts(measures, windows=WINDOWS):
    return [Field(name=f"{m}_{w}d", dtype=Int64) for m in measures for w in windows]


user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=timedelta(days=31),
    source=sources.user_daily,
    schema=[
        *_counts(INTERACTIONS),
        Field(name="impressions_30d", dtype=Int64),
        Field(name="ctr_30d", dtype=Float64),
        Field(name="cvr_30d", dtype=Float64),
        Field(name="categories_30d", dtype=Int64),
        Field(name="purchase_price_mean_30d", dtype=Float64),
        Field(name="purchase_price_std_30d", dtype=Float64),
        Field(name="last_event_at", dtype=UnixTimestamp),
        Field(name="signup_time", dtype=UnixTimestamp),
        Field(name="recency_days", dtype=Float64),
        Field(name="tenure_days", dtype=Float64),
    ],
    tags={"dbt.model": "user_features_daily"},
    description="What a user did over the last 1, 7 and 30 days, and how they convert.",
)

item_catalog = FeatureView(
    name="item_catalog",
    entities=[item],
    ttl=timedelta(0),  # a catalog version stays valid until the next one replaces it
    source=sources.item_catalog_versions,
    schema=[
        Field(name="title", dtype=String),
        Field(name="brand", dtype=String),
        Field(name="category_path", dtype=String),
        Field(name="category_top", dtype=String),
        Field(name="price", dtype=Float64),
    ],
    tags={"dbt.model": "item_catalog_features"},
    description="The item's current catalog version, for every item (active or not).",
)

item_features = FeatureView(
    name="item_features",
    entities=[item],
    ttl=timedelta(days=31),
    source=sources.item_daily,
    schema=[
        *_counts((*INTERACTIONS, "impressions")),
        Field(name="ctr_30d", dtype=Float64),
        Field(name="cvr_30d", dtype=Float64),
        Field(name="price", dtype=Float64),
        Field(name="price_mean_7d", dtype=Float64),
        Field(name="price_change_vs_7d", dtype=Float64),
        Field(name="title", dtype=String),
        Field(name="category_path", dtype=String),
        Field(name="category_top", dtype=String),
        Field(name="brand", dtype=String),
        Field(name="age_days", dtype=Float64),
        Field(name="popularity_rank_in_category", dtype=Int64),
    ],
    tags={"dbt.model": "item_features_daily"},
    description="How an item fared over the last 1, 7 and 30 days, its price and catalog attributes.",
)


def _shares(name, entity, source, prefix, description, owner=user):
    """An owner (user, query) x attribute view over a ``shares`` mart: 30-day interactions,
    purchases and their share of all the owner's (affinity)."""
    return FeatureView(
        name=name,
        entities=[owner, entity],
        ttl=timedelta(days=31),
        source=source,
        schema=[
            Field(name=f"{prefix}_interactions_30d", dtype=Int64),
            Field(name=f"{prefix}_purchases_30d", dtype=Int64),
            Field(name=f"{prefix}_affinity_30d", dtype=Float64),
        ],
        tags={"dbt.model": source.name},
        description=description,
    )


def _user_shares(name, entity, source, prefix, what):
    """A user x attribute view (``_shares`` owned by the user)."""
    return _shares(
        name,
        entity,
        source,
        prefix,
        f"A user's interactions with {what} over 30 days and their share of all (affinity).",
    )


user_category_features = _user_shares(
    "user_category_features", category, sources.user_category_daily, "category", "a category"
)
user_top_category_features = _user_shares(
    "user_top_category_features", top_category, sources.user_top_category_daily, "top_category", "a top category"
)
user_brand_features = _user_shares("user_brand_features", brand, sources.user_brand_daily, "brand", "a brand")

item_pair_features = FeatureView(
    name="item_pair_features",
    entities=[item, neighbour],
    ttl=timedelta(days=8),  # snapshots every 7 days: a pair missing from the next one expires
    source=sources.item_pair_weekly,
    schema=[
        Field(name="co_sessions_28d", dtype=Int64),
        Field(name="cosine_28d", dtype=Float64),
        Field(name="neighbour_rank", dtype=Int64),
    ],
    tags={"dbt.model": "item_pair_features_weekly"},
    description="Sessions holding both items over 28 days and their cosine similarity (top neighbours).",
)

query_item_features = FeatureView(
    name="query_item_features",
    entities=[query, item],
    ttl=timedelta(days=31),
    source=sources.query_item_daily,
    schema=[
        *_counts(("impressions", "clicks"), (7, 30)),
        Field(name="carts_30d", dtype=Int64),
        Field(name="purchases_30d", dtype=Int64),
        Field(name="query_item_ctr_30d", dtype=Float64),
    ],
    tags={"dbt.model": "query_item_features_daily"},
    description="How an item fared when shown for a normalized query over 7 and 30 days.",
)

query_features = FeatureView(
    name="query_features",
    entities=[query],
    ttl=timedelta(days=31),
    source=sources.query_daily,
    schema=[
        *_counts(("searches",), (7, 30)),
        Field(name="clicks_30d", dtype=Int64),
        Field(name="query_ctr_30d", dtype=Float64),
    ],
    tags={"dbt.model": "query_features_daily"},
    description="How often a normalized query was searched over 7 and 30 days, and how often its results were clicked.",
)

query_category_features = _shares(
    "query_category_features",
    category,
    sources.query_category_daily,
    "query_category",
    "The search clicks of a query on a category's items over 30 days and their share of all its clicks.",
    owner=query,
)
