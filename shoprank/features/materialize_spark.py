"""Materialization on the distributed profile: Spark picks each view's latest rows, and its
executors write them into Redis partition by partition, in Feast's own layout (``online_redis``,
the fast writer of the other profiles), so no row passes through the driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView, RepoConfig
from pyspark.errors import PythonException
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

from shoprank.errors import FeatureStoreError
from shoprank.features.materialize import EVENT_TS, READ_AS, Source, as_latest_rows
from shoprank.features.online_redis import write_redis
from shoprank.spark import raised

BATCH = 100_000  # latest rows an executor writes at a time
_SPARK_TYPES = {"BIGINT": "bigint", "DOUBLE": "double", "VARCHAR": "string", "TIMESTAMP": "timestamp"}


def write_view(
    spark: SparkSession,
    config: RepoConfig,
    view: FeatureView,
    source: Source,
    start: datetime,
    after: str,
    end: datetime,
) -> int:
    """Write the latest row of each entity of ``view`` with a time ``after`` (``>`` or ``>=``)
    ``start`` and at most ``end``; return the entities written.

    Raises:
        FeatureStoreError: Redis failed on an executor (its message, as the driver's own).
    """
    time = F.col(source.timestamp).cast("timestamp")
    since = time > F.lit(start) if after == ">" else time >= F.lit(start)
    columns = [
        F.col(name).cast(_SPARK_TYPES[READ_AS[kind][0]]).alias(name) for name, kind in [*source.keys, *source.features]
    ]
    rows = spark.read.parquet(str(source.path)).where(since & (time <= F.lit(end)))
    newest = Window.partitionBy(*(name for name, _ in source.keys)).orderBy(time.desc())
    latest = rows.withColumn("__rank", F.row_number().over(newest)).where("__rank = 1")
    written = latest.select(*columns, time.alias(EVENT_TS)).mapInArrow(_writer(config, view, source), "written long")
    try:
        return written.agg(F.sum("written")).first()[0] or 0
    except PythonException as exc:
        raise raised(exc, FeatureStoreError) from None


def _writer(config: RepoConfig, view: FeatureView, source: Source):
    """An executor's work on one partition: its latest rows written in batches; yields the count."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        written, pending = 0, []
        for batch in [*batches, None]:
            if batch is not None:
                pending.append(batch)
            if pending and (batch is None or sum(map(len, pending)) >= BATCH):
                rows = as_latest_rows(_naive(pa.Table.from_batches(pending)), source)
                written += write_redis(config, view, rows, lambda done: None)
                pending = []
        yield pa.RecordBatch.from_pydict({"written": [written]})

    return run


def _naive(table: pa.Table) -> pa.Table:
    """Timestamps as naive UTC and strings as plain strings, as DuckDB hands them to the writer."""
    columns = []
    for column in table.columns:
        if pa.types.is_timestamp(column.type) and column.type.tz is not None:
            column = pc.cast(column, pa.timestamp("us"))
        elif pa.types.is_large_string(column.type):
            column = pc.cast(column, pa.string())
        columns.append(column)
    return pa.table(columns, names=table.column_names)
