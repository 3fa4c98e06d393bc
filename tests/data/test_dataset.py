"""Training frames of the tiny shop: equal to Feast's historical retrieval, one row per label in
order, chunking invisible, TTL respected, the frame contract and the errors users see."""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import timedelta
from functools import cache

import duckdb
import pandas as pd
import polars as pl
import pytest

from shoprank.config import Settings
from shoprank.errors import ConfigError, ContractError, FeatureStoreError
from shoprank.features.store import feast, open_store
from training.contracts import training_frame_schema, validate_frame
from training.dataset import ENTITIES, build_dataset, entity_table
from training.labels import served
from training.pit import connect, join_chunk
from training.plan import resolve

SERVICES = ("ranker_v2", "search_ranker_v2")


@pytest.fixture(scope="module")
def shop(tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the tiny shop with a feature store of its own applied (the copied registry is
    dropped: applying over it would tear down the online tables it records, the original's)."""
    workdir = tmp_path_factory.mktemp("dataset-shop")
    shutil.copytree(tiny_shop.workdir, workdir, dirs_exist_ok=True)
    settings = replace(tiny_shop, workdir=workdir)
    settings.registry.unlink()
    feast(settings, "apply")
    return settings


@pytest.fixture(scope="module")
def built(shop: Settings):
    """Build a frame once per (service, engine, chunk_rows); return its result and its rows."""

    @cache
    def build(service: str, engine: str = "duckdb", chunk_rows: int = 1_000_000):
        result = build_dataset(shop, service, engine=engine, chunk_rows=chunk_rows)
        parts = [pd.read_parquet(path) for path in sorted(result.path.glob("part-*.parquet"))]
        return result, parts

    return build


def frame(built, *args) -> pd.DataFrame:
    return pd.concat(built(*args)[1], ignore_index=True)


def feast_frame(shop: Settings, service: str, entities: pd.DataFrame) -> pd.DataFrame:
    """Feast's own ``get_historical_features`` for entity rows, sorted back into their order."""
    store = open_store(shop)
    rows = entities.assign(__order=range(len(entities)))
    found = store.get_historical_features(rows, features=store.get_feature_service(service), full_feature_names=True)
    return found.to_df().sort_values("__order").drop(columns="__order").reset_index(drop=True)


def assert_same_frame(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Same columns, rows, values, missing positions and dtypes (Feast's order of columns aside)."""
    assert sorted(ours.columns) == sorted(theirs.columns)
    pd.testing.assert_frame_equal(ours, theirs[list(ours.columns)], check_exact=True)


def entity_columns(data: pd.DataFrame) -> list[str]:
    return [c for c in data.columns if "__" not in c]


@pytest.mark.parametrize("service", SERVICES)
def test_duckdb_engine_equals_feast(shop, built, service):
    ours = frame(built, service)
    assert_same_frame(ours, feast_frame(shop, service, ours[entity_columns(ours)]))
    features = ours[list(built(service)[0].features)]
    assert features.notna().any().all(), "every feature has values"
    assert features.isna().any().any(), "some values are missing"


@pytest.mark.parametrize("service", SERVICES)
def test_feast_engine_gives_the_same_frame(built, service):
    ours, theirs = built(service), built(service, "feast", 2_000)
    assert ours[0].columns == theirs[0].columns
    assert len(theirs[1]) > 1
    pd.testing.assert_frame_equal(frame(built, service), frame(built, service, "feast", 2_000), check_exact=True)


def test_one_row_per_label_in_time_order(shop, built):
    result, _ = built("search_ranker_v2")
    labels = duckdb.sql(
        f"select query_id, item_id, label from '{shop.marts / 'fct_labels.parquet'}' "
        "where surface = 'search' order by event_timestamp, query_id, position"
    ).df()
    ours = frame(built, "search_ranker_v2")
    assert result.rows == len(ours) == len(labels)
    pd.testing.assert_frame_equal(ours[["query_id", "item_id", "label"]], labels, check_dtype=False)
    assert ours["event_timestamp"].is_monotonic_increasing
    assert result.path == shop.datasets / "search_ranker_v2"
    assert list(result.columns[:5]) == ["query_id", "user_id", "item_id", "event_timestamp", "label"]
    assert set(result.features) < set(result.columns)


def test_surfaces_default_by_service(built):
    ranker = frame(built, "ranker_v2")
    assert set(ranker["surface"]) == {"recommend", "browse"}
    assert set(frame(built, "search_ranker_v2")["surface"]) == {"search"}
    assert len(ranker) == built("ranker_v2")[0].rows > 0
    assert built("ranker_v2")[0].labels == "served"
    assert "query_title_match__title_token_overlap" in frame(built, "search_ranker_v2").columns


def test_chunked_equals_unchunked_and_never_splits_a_group(built):
    result, parts = built("search_ranker_v2", "duckdb", 1_000)
    assert len(parts) > 3
    groups = [set(part["query_id"]) for part in parts]
    assert sum(map(len, groups)) == len(set().union(*groups))
    pd.testing.assert_frame_equal(
        frame(built, "search_ranker_v2", "duckdb", 1_000), frame(built, "search_ranker_v2"), check_exact=True
    )


def test_ttl_expired_values_are_missing_not_stale(shop, built):
    """Labels moved past the data: within a view's TTL values are found, beyond it all are missing."""
    store = open_store(shop)
    plan = resolve(store, "ranker_v2")
    ranker = frame(built, "ranker_v2")
    labels = ranker[entity_columns(ranker)]
    last = max(duckdb.sql(f"select max(event_timestamp) from '{view.path}'").fetchall()[0][0] for view in plan.views)
    ttl = min(view.ttl for view in plan.views)
    for shift, expired in ((ttl - timedelta(days=2), False), (ttl + timedelta(days=1), True)):
        moved = labels.head(300).copy()
        moved["event_timestamp"] = moved["request_time"] = pd.Timestamp(last + shift, tz="UTC")
        with connect(shop.datasets / ".spill") as con:
            con.register("moved", moved)
            entity_table(con, "select *, row_number() over () - 1 as __row from moved", 1_000_000)
            ours = join_chunk(con, plan, ENTITIES, 0).to_pandas()
        assert_same_frame(ours, feast_frame(shop, "ranker_v2", moved))
        joined = ours[[column for view in plan.views for column in view.columns]]
        assert joined.isna().all().all() if expired else joined.notna().any().all()
        assert ours["request_context__hour_of_day"].notna().all()


def test_schema_accepts_the_frame_and_rejects_broken_ones(shop, built):
    plan = resolve(open_store(shop), "ranker_v2")
    schema = training_frame_schema(plan)
    good = pl.read_parquet(built("ranker_v2")[0].path / "*.parquet")
    validate_frame(schema, good, "test")
    broken = {
        "label: in_range": good.with_columns(pl.lit(4, pl.Int32).alias("label")),
        "multiple_fields_uniqueness": pl.concat([good, good.head(1)]),
        "user_features__views_7d: dtype('Int64')": good.with_columns(
            pl.col("user_features__views_7d").cast(pl.Float64)
        ),
        "item_features__price": good.drop("item_features__price"),
        "query_id groups are contiguous": pl.concat(
            [good, good.head(1).with_columns(pl.lit("elsewhere").alias("item_id"))]
        ),
        "event_timestamp": good.with_columns(pl.col("event_timestamp").dt.replace_time_zone(None)),
    }
    for expected, bad in broken.items():
        with pytest.raises(ContractError, match="training frame of ranker_v2") as error:
            validate_frame(schema, bad, "test")
        assert expected in str(error.value), str(error.value)


def test_unknown_service_names_the_registry_and_the_fix(shop):
    with pytest.raises(FeatureStoreError) as error:
        build_dataset(shop, "ranker_v9")
    registry = shop.workdir.resolve() / "registry.db"
    assert str(error.value) == f'Feature service "ranker_v9" not found in {registry}; run "shoprank features apply"'


def test_unknown_engine_and_empty_surfaces_are_user_errors(shop):
    with pytest.raises(ConfigError, match='engine "polars"; use one of duckdb, feast, spark'):
        build_dataset(shop, "ranker_v2", engine="polars")
    with pytest.raises(ConfigError) as error:
        build_dataset(shop, "ranker_v2", engine="spark")
    assert str(error.value) == (
        "The spark engine joins on the distributed profile's Spark; the embedded profile has none: "
        "use --engine duckdb or --profile distributed"
    )
    with pytest.raises(ContractError, match=r"No labels with surface in \['email'\]"):
        build_dataset(shop, "ranker_v2", labels=served(("email",)))
