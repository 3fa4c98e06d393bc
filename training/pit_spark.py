"""Point-in-time joins on Spark: the distributed profile's training frames, made where the data is.

Each feature view is an as-of join written as a window, linear in rows: the entity rows and the
view's source rows (keys, time, and the values packed in one struct) are unioned, partitioned by
the join keys and ordered by time, a source row before an entity row at the same instant; each
entity row takes the last source struct before it (Feast's ``feature_ts <= event_timestamp``),
kept only within the view's TTL. A view's window runs on narrow rows (row number, keys, time) and
its columns are joined back on the row number. Then each chunk (whole groups, ``training.dataset``) goes to one
partition, where the executors run the on-demand views (Feast's own objects, as in
``training.pit``), check the frame's contract and write the Parquet part: no row passes through
the driver.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from pandera.polars import DataFrameSchema
from pyspark.errors import PythonException
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from shoprank.errors import ContractError
from shoprank.spark import raised
from training.contracts import training_frame_schema, validate_frame
from training.pit import CHUNK, ROW, beside, on_demand_outputs
from training.plan import ServicePlan, ViewPlan

TIME = "__time"
VALUES = "__values"
SOURCE_TIME = "__source_time"


def write_frame(spark: SparkSession, plan: ServicePlan, entities: str, folder: Path) -> tuple[str, ...]:
    """Join the entity rows in the Parquet ``entities`` to the plan's views and write the frame to
    ``folder`` as ``part-00000.parquet``, ... in row order (it replaces ``folder`` once complete).

    ``entities`` holds ``event_timestamp`` (UTC), the plan's entity columns, ``__row`` and
    ``__chunk`` (``training.dataset.entity_table``).

    Returns:
        The frame's columns: entity columns, then the plan's feature columns.

    Raises:
        ContractError: A chunk breaks the frame's contract.
    """
    rows = spark.read.parquet(entities)
    low, high, chunks = rows.agg(F.min("event_timestamp"), F.max("event_timestamp"), F.max(CHUNK) + 1).first()
    frame = rows
    for view in plan.views:
        keys = list(dict.fromkeys(view.join_keys.values()))
        found = _as_of(rows.select(ROW, "event_timestamp", *keys), view, _source(spark, view, low, high))
        # sort-merge, never broadcast: the driver would hold a whole side
        frame = frame.join(found.drop("event_timestamp", *keys).hint("shuffle_merge"), ROW, "left")
    ordered = frame.repartitionByRange(chunks, CHUNK).sortWithinPartitions(ROW)
    given = [name for name in rows.columns if name not in (ROW, CHUNK)]
    joined = [*given, *(column for view in plan.views for column in view.columns)]
    schema = _output_schema(ordered.select(*joined).schema, plan)
    written = ordered.mapInArrow(_chunks(plan, training_frame_schema(plan), schema, joined), from_arrow_schema(schema))
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        written.write.parquet(str(partial))
    except PythonException as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise raised(exc, ContractError) from None
    for part, path in enumerate(sorted(partial.glob("part-*.parquet"))):
        path.rename(partial / f"part-{part:05d}.parquet")
    for other in [p for p in partial.iterdir() if not p.name.startswith("part-")]:
        other.unlink()  # Spark's _SUCCESS and checksums
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return tuple(schema.names)


def _source(spark: SparkSession, view: ViewPlan, low, high) -> DataFrame:
    """The view's source rows that can match an entity row: keys named as the entity columns,
    their time, and the values packed in one struct (with the time, for the TTL)."""
    source = spark.read.parquet(str(view.path))
    time = F.col(view.timestamp_field).cast("timestamp")
    keep = time <= F.lit(high)
    if view.ttl:
        keep &= F.unix_micros(time) >= F.unix_micros(F.lit(low)) - view.ttl_micros
    for key in view.join_keys:
        keep &= F.col(key).isNotNull()  # a missing key matches nothing, as in a join
    values = F.struct(time.alias(SOURCE_TIME), *(F.col(feature) for feature in view.features))
    keys = [F.col(key).alias(entity) for key, entity in view.join_keys.items()]
    return source.where(keep).select(*keys, time.alias(TIME), values.alias(VALUES))


def _as_of(frame: DataFrame, view: ViewPlan, source: DataFrame) -> DataFrame:
    """``frame`` with the view's feature columns: each row's latest source values at its time
    (``frame`` holds the row number, ``event_timestamp`` and the view's keys)."""
    entities = frame.withColumn(TIME, F.col("event_timestamp"))
    union = entities.unionByName(source, allowMissingColumns=True)
    keys = list(dict.fromkeys(view.join_keys.values()))
    latest = (
        Window.partitionBy(*keys)
        .orderBy(TIME, F.col(ROW).isNotNull())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    found = union.withColumn(VALUES, F.last(VALUES, ignorenulls=True).over(latest)).where(F.col(ROW).isNotNull())
    features = [
        _expiring(view, F.col(VALUES).getField(feature)).alias(column)
        for feature, column in zip(view.features, view.columns, strict=True)
    ]
    return found.select(*frame.columns, *features)


def _expiring(view: ViewPlan, value: Column) -> Column:
    """A joined value, missing when it is older than the view's TTL."""
    if not view.ttl:
        return value
    earliest = F.unix_micros(F.col("event_timestamp")) - view.ttl_micros
    fresh = F.unix_micros(F.col(VALUES).getField(SOURCE_TIME)) >= earliest
    return F.when(fresh, value)


def _output_schema(joined, plan: ServicePlan) -> pa.Schema:
    """The frame's Arrow schema: the joined columns as Spark holds them, then each on-demand
    view's outputs as Feast's transformation gives them (run on no rows)."""
    schema = to_arrow_schema(joined, timezone="UTC")
    empty = schema.empty_table()
    outputs = [on_demand_outputs(empty, odfv).schema for odfv in plan.on_demand]
    return pa.schema([*schema, *(field for output in outputs for field in output)])


def _chunks(plan: ServicePlan, contract: DataFrameSchema, schema: pa.Schema, joined: list[str]):
    """The executors' work on one partition: gather each chunk (rows arrive in row order, a
    chunk's rows together), add the on-demand views' outputs, check the contract, yield it."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        pending: list[pa.RecordBatch] = []
        for batch in batches:
            for piece in _split(batch):
                if pending and piece[CHUNK][0] != pending[0][CHUNK][0]:
                    yield from _finish(pending, plan, contract, schema, joined)
                    pending = []
                pending.append(piece)
        if pending:
            yield from _finish(pending, plan, contract, schema, joined)

    return run


def _split(batch: pa.RecordBatch) -> Iterator[pa.RecordBatch]:
    """A batch cut where its chunk number changes."""
    chunks = batch[CHUNK].to_numpy()
    ends = [*(np.flatnonzero(np.diff(chunks)) + 1), len(chunks)]
    for start, end in zip([0, *ends[:-1]], ends, strict=True):
        if end > start:
            yield batch.slice(start, end - start)


def _finish(
    pending: list[pa.RecordBatch], plan: ServicePlan, contract: DataFrameSchema, schema: pa.Schema, joined: list[str]
) -> Iterator[pa.RecordBatch]:
    table = pa.Table.from_batches(pending).select(joined)
    table = beside(table, *(on_demand_outputs(table, odfv) for odfv in plan.on_demand)).cast(schema)
    validate_frame(contract, pl.from_arrow(table), f"chunk {pending[0][CHUNK][0]}")
    yield from table.to_batches()
