"""Sources: the Parquet marts that `dbt build` exports, one per feature view.

The mart folder follows SHOPRANK_HOME (the shoprank workdir), defaulting to ../data at the repo
root, so a plain `feast apply` here reads the marts of `shoprank pipeline` without edits. A path is
relative to the current directory, which Feast makes the repository's before it imports this, and
Feast resolves it against the repository again when reading: the registry never names a folder by
its absolute path, so a copy of a workdir reads its own marts. Each source names its dbt model in
`tags["dbt.model"]`. On the distributed profile (SHOPRANK_PROFILE, which the workdir's
feature_definitions.py sets) a source is a `SparkSource` of the folder of Parquet parts Spark
writes, by its absolute path: Spark reads a relative one from its own working directory.
"""

import os
from pathlib import Path

from feast import FileSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

MARTS = Path(os.environ.get("SHOPRANK_HOME", Path(__file__).resolve().parent.parent / "data")).resolve() / "marts"
SPARK = os.environ.get("SHOPRANK_PROFILE") == "distributed"


def _mart(model: str, description: str) -> FileSource | SparkSource:
    described = {
        "name": model,
        "timestamp_field": "event_timestamp",
        "description": description,
        "tags": {"dbt.model": model},
    }
    if SPARK:
        return SparkSource(**described, path=str(MARTS / model), file_format="parquet")
    return FileSource(**described, path=os.path.relpath(MARTS / f"{model}.parquet"))


user_daily = _mart("user_features_daily", "User activity windows as of each day boundary.")
item_catalog_versions = _mart("item_catalog_features", "Item catalog versions: title, brand, category and price.")
item_daily = _mart("item_features_daily", "Item activity, price and catalog attributes as of each day boundary.")
user_category_daily = _mart("user_category_features_daily", "User x category activity share as of each boundary.")
user_top_category_daily = _mart(
    "user_top_category_features_daily", "User x top-level category activity share as of each boundary."
)
user_brand_daily = _mart("user_brand_features_daily", "User x brand activity share as of each boundary.")
item_pair_weekly = _mart("item_pair_features_weekly", "Item x item co-visitation and cosine similarity snapshots.")
query_item_daily = _mart("query_item_features_daily", "Query x item search outcomes as of each boundary.")
query_daily = _mart("query_features_daily", "Query search volume and click-through as of each boundary.")
query_category_daily = _mart(
    "query_category_features_daily", "Query x category share of the query's search clicks as of each boundary."
)
