"""The distributed profile (dbt and Feast's offline store on Spark, Redis online, the registry in
PostgreSQL) against the embedded one (DuckDB, SQLite): the tiny shop's landing files, ingested into
the raw lake and built on local Spark, give every mart of the embedded build row for row (sorted,
same types; floats within 1e-9 relative), the training frame of each default service joined point
in time on Spark equals the embedded one, and the online values Feast reads back are equal."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
from uuid import uuid4

import polars as pl
import pytest

from serving.features import online_features
from shoprank.build import dbt_build
from shoprank.config import Settings
from shoprank.equality import differences, mart_differences, read_mart
from shoprank.errors import ContractError, FeatureStoreError
from shoprank.features.definitions import apply
from shoprank.features.materialize import materialize
from shoprank.features.store import drop_project, open_store
from shoprank.ingest.run import ingest
from shoprank.pipeline import SERVICES
from shoprank.salt import DEFAULT_SALT, SALT_VARIABLE
from shoprank.validate import validate_marts
from shoprank.warehouse import read
from tests.data.test_online_read import _bits, _requests
from tests.e2e.test_serve import free_port
from training.dataset import build_dataset
from training.pit import CHUNK, ROW
from training.plan import resolve
from training.signals import catalog_index

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def java() -> None:
    """Spark runs on Java and pyspark (the ``distributed`` extra): skip without either (a user's
    machine), fail when SHOPRANK_REQUIRE_SERVERS is set (CI, where .ci/run installs both)."""
    missing = []
    if importlib.util.find_spec("pyspark") is None:
        missing.append('pyspark not found: the distributed profile needs pip install -e ".[dev,distributed]"')
    if shutil.which("java") is None:
        missing.append("java not found: the distributed profile runs Spark, which needs a Java runtime (17 or later)")
    if missing and os.environ.get("SHOPRANK_REQUIRE_SERVERS"):
        pytest.fail("; ".join(missing))
    if missing:
        pytest.skip("; ".join(missing))


@pytest.fixture(scope="module")
def distributed_shop(java, tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The tiny shop's landing files ingested and built on the distributed profile (the embedded
    build's salt, so pseudonymized values compare). Ingested as on the embedded profile, without
    the lake: the build publishes the runs the lake lacks (``tests/data/test_lake.py`` has ingest's)."""
    settings = dataclasses.replace(tiny_shop, workdir=tmp_path_factory.mktemp("distributed"), profile="distributed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SALT_VARIABLE, DEFAULT_SALT)
        ingest(settings.warehouse, [tiny_shop.landing])
        assert settings.raw_lake is not None and not settings.raw_lake.exists()
        dbt_build(settings)
    return settings


def test_every_mart_is_equal_on_spark_and_on_duckdb(tiny_shop, distributed_shop):
    assert len(list(tiny_shop.marts.glob("*.parquet"))) == 12
    assert mart_differences(tiny_shop, distributed_shop) == {}
    assert read_mart(distributed_shop, "fct_labels").height > 10_000  # not two empty builds


def test_the_spark_tables_are_the_warehouse_views_that_validate_reads(tiny_shop, distributed_shop):
    """After a build on Spark the warehouse holds its marts and intermediate tables as views over
    their Parquet parts: the contracts of the marts hold on them, as on DuckDB's."""
    reports = validate_marts(distributed_shop)
    assert {report.name for report in reports} == {path.stem for path in tiny_shop.marts.glob("*.parquet")}
    assert {report.name: report.rows for report in reports}["fct_labels"] == read_mart(
        distributed_shop, "fct_labels"
    ).height


@pytest.fixture(scope="module")
def distributed_store(production_servers, distributed_shop: Settings) -> Settings:
    """The distributed shop's feature store: a Feast project of its own (Spark sources over its
    marts) in the PostgreSQL registry, its online values materialized into Redis; dropped after."""
    settings = dataclasses.replace(distributed_shop, project=f"t_{uuid4().hex[:8]}")
    apply(settings)
    materialize(settings)
    yield settings
    drop_project(open_store(settings))


@pytest.mark.parametrize(("service", "engine"), [*((service, None) for service in SERVICES), (SERVICES[0], "feast")])
def test_a_training_frame_joined_on_spark_equals_the_embedded_one(tiny_shop, distributed_store, service, engine):
    """The profile's default (our window joins on Spark, written by its executors) and Feast's
    Spark offline store (the reference) give the embedded frame, in its row order."""
    result = build_dataset(distributed_store, service, engine, chunk_rows=1_000)
    assert result.engine == (engine or "spark")
    embedded = pl.read_parquet(tiny_shop.datasets / service / "*.parquet")
    spark = pl.read_parquet(result.path / "*.parquet")
    assert embedded.height > 2_000 and differences(embedded, spark) == []
    assert spark.select("query_id", "item_id").equals(embedded.select("query_id", "item_id"))
    assert len(list(result.path.glob("part-*.parquet"))) > 1  # one part per chunk of whole groups


@pytest.mark.parametrize("service", SERVICES)
def test_online_values_read_back_through_feast_are_equal(tiny_shop, distributed_store, service):
    embedded, distributed = open_store(tiny_shop), open_store(distributed_store)
    plan = resolve(distributed, service)
    catalog = read(tiny_shop.warehouse, "select * from marts.dim_items")
    users = read(tiny_shop.warehouse, "select user_id from marts.dim_users order by user_id")["user_id"].to_list()
    queries = read(tiny_shop.warehouse, "select distinct query from raw.requests where query is not null order by 1")
    found = 0
    for rows in _requests(catalog, users, queries["query"].to_list(), catalog_index(tiny_shop), seed=len(service)):
        expected, got = online_features(embedded, plan, rows), online_features(distributed, plan, rows)
        assert got.schema == expected.schema
        for column in plan.features:
            assert _bits(got[column]) == _bits(expected[column]), (service, column)
        found += expected.height * len(plan.features) - expected.select(plan.features).null_count().sum_horizontal()[0]
    assert found > 1000, "the requests should find stored values"


def test_materialization_with_redis_down_fails_on_the_driver_with_the_executors_reason(distributed_store):
    """The executors write Redis: their failure comes back as one clear error, not a Spark trace."""
    closed = free_port()
    with pytest.raises(FeatureStoreError) as failed:
        materialize(dataclasses.replace(distributed_store, redis=f"127.0.0.1:{closed}"), rebuild=True)
    assert "Redis failed while materializing" in str(failed.value)
    assert f"check that Redis at 127.0.0.1:{closed} is up and writable" in str(failed.value)


def test_a_chunk_breaking_the_frame_contract_on_an_executor_is_the_drivers_contract_error(
    tiny_shop, distributed_store, tmp_path
):
    """An entity row given twice makes a duplicate (query_id, item_id): the executor that checks
    its chunk refuses it, the driver raises the same ContractError, and no frame is left behind."""
    from shoprank.spark import spark_session  # pyspark: the distributed extra, which ``java`` checked
    from training.pit_spark import write_frame

    plan = resolve(open_store(distributed_store), SERVICES[0])
    frame = pl.read_parquet(tiny_shop.datasets / SERVICES[0] / "*.parquet")
    given = frame.select([c for c in frame.columns if c not in plan.feature_columns]).head(50)
    twice = pl.concat([given, given.tail(1)]).with_row_index(ROW).with_columns(pl.lit(0).alias(CHUNK))
    twice.with_columns(pl.col(ROW).cast(pl.Int64)).write_parquet(tmp_path / "entities.parquet")
    store = open_store(distributed_store)
    with pytest.raises(ContractError) as failed:
        write_frame(spark_session(store.config.offline_store), plan, str(tmp_path / "entities.parquet"), tmp_path / "f")
    duplicate = given.row(-1, named=True)
    assert str(failed.value).startswith(f"training frame of {SERVICES[0]} (chunk 0) breaks its contract: ")
    assert f"query_id={duplicate['query_id']}, item_id={duplicate['item_id']}" in str(failed.value)
    assert not (tmp_path / "f").exists() and not (tmp_path / ".f.partial").exists()
