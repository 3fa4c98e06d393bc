"""Request-time features: computed from the request and the looked-up features, with the same
code for training (historical retrieval) and serving (online retrieval): each view calls its
function in ``shoprank.features.transforms`` (Feast runs a view's function from its own text)."""

import pandas as pd
from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String, UnixTimestamp

from feature_views import item_catalog, item_features, user_category_features, user_features

request_time = RequestSource(
    name="request_time",
    schema=[Field(name="request_time", dtype=UnixTimestamp)],
    description="When the ranking was asked for (UTC).",
)
search_query = RequestSource(
    name="search_query",
    schema=[Field(name="query", dtype=String)],
    description="The text the user searched for.",
)
retrieval = RequestSource(
    name="retrieval",
    schema=[Field(name="retrieval_bm25", dtype=Float64)],
    description="BM25 of the query against the candidate's title, from the retrieval that found it.",
)


@on_demand_feature_view(
    sources=[item_features[["price"]], user_features[["purchase_price_mean_30d"]]],
    schema=[Field(name="price_to_user_mean", dtype=Float64)],
    description="The candidate's price over the mean price the user paid in 30 days (missing without purchases).",
)
def user_item_price(inputs: pd.DataFrame) -> pd.DataFrame:
    from shoprank.features.transforms import price_to_user_mean

    return price_to_user_mean(inputs)


@on_demand_feature_view(
    sources=[request_time, user_features[["last_event_at", "signup_time"]]],
    schema=[
        Field(name="hour_of_day", dtype=Int64),
        Field(name="day_of_week", dtype=Int64),
        Field(name="hours_since_last_event", dtype=Float64),
        Field(name="days_since_signup", dtype=Float64),
    ],
    description="Hour and weekday of the request (UTC), the user's recency and tenure at that moment.",
)
def request_context(inputs: pd.DataFrame) -> pd.DataFrame:
    from shoprank.features.transforms import request_context

    return request_context(inputs)


@on_demand_feature_view(
    sources=[user_category_features[["category_affinity_30d"]]],
    schema=[Field(name="candidate_category_affinity", dtype=Float64)],
    description="The user's 30-day share of activity in the candidate's category (0 when none).",
)
def candidate_category(inputs: pd.DataFrame) -> pd.DataFrame:
    from shoprank.features.transforms import candidate_category

    return candidate_category(inputs)


@on_demand_feature_view(
    sources=[search_query, retrieval, item_catalog[["title", "brand"]]],
    schema=[
        Field(name="title_bm25", dtype=Float64),
        Field(name="title_token_overlap", dtype=Float64),
        Field(name="title_stem_overlap", dtype=Float64),
        Field(name="title_trigram_jaccard", dtype=Float64),
        Field(name="title_has_query_noun", dtype=Int64),
        Field(name="title_number_overlap", dtype=Float64),
        Field(name="title_has_query", dtype=Int64),
        Field(name="brand_in_query", dtype=Int64),
        Field(name="query_words", dtype=Int64),
        Field(name="title_words", dtype=Int64),
    ],
    description="How the query matches the candidate's title (BM25, words, stems, trigrams, noun, numbers, phrase) and brand.",
)
def query_title_match(inputs: pd.DataFrame) -> pd.DataFrame:
    from shoprank.features.transforms import query_title_match

    return query_title_match(inputs)
