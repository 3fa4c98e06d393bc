"""Feature services: the versioned feature sets that training and serving ask for by name.

A new version is a new service (``ranker_v2``), never an edit of a published one: a model in the
registry is bound to the exact features of its service. (Projections are built in functions:
Feast would read a projection kept at module level as a second view of the same name.)
"""

from feast import FeatureService

from feature_views import (
    item_features,
    query_category_features,
    query_features,
    query_item_features,
    user_brand_features,
    user_category_features,
    user_features,
    user_top_category_features,
)
from on_demand_feature_views import candidate_category, query_title_match, request_context, user_item_price


def _ranking_features() -> list:
    """User, item and user x category features, and the request-time views built on them."""
    return [
        user_features[
            [
                "views_7d", "views_30d", "clicks_30d", "carts_30d", "purchases_30d", "impressions_30d",
                "ctr_30d", "cvr_30d", "categories_30d", "purchase_price_mean_30d",
            ]
        ],
        item_features[
            [
                "views_1d", "views_7d", "views_30d", "clicks_7d", "clicks_30d", "carts_30d", "purchases_30d",
                "impressions_30d", "ctr_30d", "cvr_30d", "price", "price_change_vs_7d", "age_days",
                "popularity_rank_in_category",
            ]
        ],
        user_category_features[["category_interactions_30d", "category_affinity_30d"]],
        user_item_price,
        request_context,
        candidate_category,
    ]  # fmt: skip


ranker_v1 = FeatureService(
    name="ranker_v1",
    features=_ranking_features(),
    description="Recommendation and browse ranking: user, item and user x category features, request context.",
)


def _tastes() -> list:
    """The user's 30-day share of activity in the candidate's top category and with its brand."""
    return [
        user_top_category_features[["top_category_interactions_30d", "top_category_affinity_30d"]],
        user_brand_features[["brand_interactions_30d", "brand_affinity_30d"]],
    ]


def _search() -> list:
    """Query x item outcomes and the query-title match."""
    return [query_item_features[["impressions_30d", "clicks_30d", "query_item_ctr_30d"]], query_title_match]


search_ranker_v1 = FeatureService(
    name="search_ranker_v1",
    features=[*_ranking_features(), *_search()],
    description="Search ranking: ranker_v1's features plus query x item outcomes and query-title match.",
)

ranker_v2 = FeatureService(
    name="ranker_v2",
    features=[*_ranking_features(), *_tastes()],
    description="ranker_v1 plus the user's share of activity in the candidate's top category and brand.",
)

search_ranker_v2 = FeatureService(
    name="search_ranker_v2",
    features=[*_ranking_features(), *_tastes(), *_search()],
    description="search_ranker_v1 plus the user's share of activity in the candidate's top category and brand.",
)


def _query_intent() -> list:
    """What shoppers mean by the query: its volume and click-through, the categories its clicks
    go to, and the candidate's carts and purchases under it."""
    return [
        query_features[["searches_7d", "searches_30d", "query_ctr_30d"]],
        query_category_features[["query_category_interactions_30d", "query_category_affinity_30d"]],
        query_item_features[["carts_30d", "purchases_30d"]],
    ]


search_ranker_v3 = FeatureService(
    name="search_ranker_v3",
    features=[*_ranking_features(), *_tastes(), *_search(), *_query_intent()],
    description="search_ranker_v2 plus the query's volume, click-through and category intent, and the candidate's carts "
    "and purchases under it.",
)
