"""The distributed profile (dbt on Spark) against the embedded one (dbt on DuckDB): the tiny shop's
landing files, ingested into the raw lake and built on local Spark, give every mart of the embedded
build row for row (sorted, same types; floats within 1e-9 relative)."""

from __future__ import annotations

import dataclasses
import os
import shutil

import polars as pl
import pytest

from shoprank.build import dbt_build
from shoprank.config import Settings
from shoprank.ingest.run import ingest
from shoprank.salt import DEFAULT_SALT, SALT_VARIABLE
from shoprank.validate import validate_marts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def java() -> None:
    """Spark runs on Java and pyspark (the ``distributed`` extra): skip without pyspark, and without
    Java (a user's machine) unless SHOPRANK_REQUIRE_SERVERS is set (CI, where .ci/run installs it)."""
    pytest.importorskip("pyspark", reason='the distributed profile needs pip install -e ".[distributed]"')
    if shutil.which("java") is None:
        reason = "java not found: the distributed profile runs Spark, which needs a Java runtime (17 or later)"
        if os.environ.get("SHOPRANK_REQUIRE_SERVERS"):
            pytest.fail(reason)
        pytest.skip(reason)


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


def _embedded(path) -> pl.DataFrame:
    """A mart as the embedded build wrote it, without the all-null row dbt-duckdb writes for an
    empty relation (its view filters it out)."""
    frame = pl.read_parquet(path)
    return frame.filter(~pl.all_horizontal(pl.all().is_null()))


def _spark(folder) -> pl.DataFrame:
    """A mart Spark wrote: a folder of part files."""
    return pl.read_parquet(folder / "*.parquet")


def _differences(embedded: pl.DataFrame, spark: pl.DataFrame) -> list[str]:
    if embedded.is_empty() and spark.is_empty():
        return []
    if embedded.schema != spark.schema:
        return [f"schema {dict(embedded.schema)} != {dict(spark.schema)}"]
    if embedded.height != spark.height:
        return [f"{embedded.height} rows != {spark.height}"]
    keys = [c for c, dtype in embedded.schema.items() if not dtype.is_float()]
    left, right = embedded.sort(keys, nulls_last=True), spark.sort(keys, nulls_last=True)
    found = []
    for column, dtype in embedded.schema.items():
        pair = pl.DataFrame({"a": left[column], "b": right[column]})
        if dtype.is_float():
            scale = pl.max_horizontal(pl.col("a").abs(), pl.col("b").abs(), pl.lit(1.0))
            far = ((pl.col("a") - pl.col("b")).abs() > 1e-9 * scale).fill_null(False)
            differ = pair.select((far | (pl.col("a").is_null() != pl.col("b").is_null())).sum()).item()
        else:
            differ = pair.select(pl.col("a").ne_missing(pl.col("b")).sum()).item()
        if differ:
            found.append(f"{column}: {differ} values")
    return found


def test_every_mart_is_equal_on_spark_and_on_duckdb(tiny_shop, distributed_shop):
    marts = sorted(tiny_shop.marts.glob("*.parquet"))
    assert len(marts) == 12
    differences = {
        path.stem: found
        for path in marts
        if (found := _differences(_embedded(path), _spark(distributed_shop.marts / path.stem)))
    }
    assert differences == {}
    assert _spark(distributed_shop.marts / "fct_labels").height > 10_000  # not two empty builds


def test_the_spark_tables_are_the_warehouse_views_that_validate_reads(tiny_shop, distributed_shop):
    """After a build on Spark the warehouse holds its marts and intermediate tables as views over
    their Parquet parts: the contracts of the marts hold on them, as on DuckDB's."""
    reports = validate_marts(distributed_shop)
    assert {report.name for report in reports} == {path.stem for path in tiny_shop.marts.glob("*.parquet")}
    assert {report.name: report.rows for report in reports}["fct_labels"] == _spark(
        distributed_shop.marts / "fct_labels"
    ).height
