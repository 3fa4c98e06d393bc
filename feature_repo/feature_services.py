"""Feature services: the versioned feature sets that training and serving ask for by name.

A new version is a new service (``ranker_v2``), never an edit of a published one: a model in the
registry is bound to the exact features of its service. (Projections are built in functions:
Feast would read a projection kept at module level as a second view of the same name.)
"""

from feast import FeatureService

from feature_views import item_features, query_item_features, user_category_features, user_features
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

search_ranker_v1 = FeatureService(
    name="search_ranker_v1",
    features=[
        *_ranking_features(),
        query_item_features[["impressions_30d", "clicks_30d", "query_item_ctr_30d"]],
        query_title_match,
    ],
    description="Search ranking: ranker_v1's features plus query x item outcomes and query-title match.",
)
