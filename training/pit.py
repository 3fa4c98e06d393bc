"""Point-in-time joins in DuckDB: Feast's historical retrieval, chunk by chunk.

Each feature view is an ``ASOF LEFT JOIN`` over its Parquet source: the latest row of the
entity's keys with ``feature_ts <= event_timestamp``, kept only when
``feature_ts >= event_timestamp - ttl`` (Feast's rule), else missing. The on-demand views then
run through Feast's own objects, so request-time features come from exactly Feast's code.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from shoprank.warehouse import DEFAULT_MEMORY, MEMORY_VARIABLE
from training.plan import ServicePlan, ViewPlan

ROW = "__row"
CHUNK = "__chunk"


def connect(spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB capped like the warehouse (``SHOPRANK_DUCKDB_MEMORY``), spilling to
    ``spill``, with UTC as its time zone (naive timestamps are UTC, as Feast reads them)."""
    spill.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": os.environ.get(MEMORY_VARIABLE, DEFAULT_MEMORY), "temp_directory": str(spill)}
    con = duckdb.connect(config=config)
    con.execute("set TimeZone = 'UTC'")
    return con


def join_chunk(con: duckdb.DuckDBPyConnection, plan: ServicePlan, entities: str, chunk: int) -> pa.Table:
    """Feast's historical features for one chunk of an entity table, in row order.

    Args:
        con: A connection from ``connect``.
        plan: The feature service's plan.
        entities: Table of entity rows with ``event_timestamp``, the plan's entity columns, a row
            number ``__row`` and a chunk number ``__chunk``.
        chunk: The chunk to join.

    Returns:
        The entity columns (timestamps in UTC, as Feast returns them), then the plan's feature
        columns; one row per entity row, ordered by ``__row`` (dropped).
    """
    low, high = con.sql(
        f"select min(event_timestamp), max(event_timestamp) from {entities} where {CHUNK} = ?", params=[chunk]
    ).fetchall()[0]
    names = [c for c in con.sql(f"select * from {entities} limit 0").columns if c not in (ROW, CHUNK)]
    kinds = dict(
        zip(
            con.sql(f"select * from {entities} limit 0").columns,
            con.sql(f"select * from {entities} limit 0").types,
            strict=True,
        )
    )
    outputs = [f'e."{c}"::timestamptz as "{c}"' if "TIMESTAMP" in str(kinds[c]) else f'e."{c}"' for c in names]
    joins = []
    for i, view in enumerate(plan.views):
        joins.append(_asof(view, f"v{i}", low, high))
        outputs += [
            _expiring(view, f"v{i}", feature, column)
            for feature, column in zip(view.features, view.columns, strict=True)
        ]
    sql = (
        f"select {', '.join(outputs)} from (select * from {entities} where {CHUNK} = {chunk}) e "
        + " ".join(joins)
        + f" order by e.{ROW}"
    )
    return apply_on_demand(con.sql(sql).to_arrow_table(), plan)


def apply_on_demand(table: pa.Table, plan: ServicePlan) -> pa.Table:
    """Append the on-demand views' requested outputs, computed by Feast's ``transform_arrow``."""
    for odfv in plan.on_demand:
        done = odfv.view.transform_arrow(table.select([*odfv.sources, *odfv.requests]), full_feature_names=True)
        for column in odfv.columns:
            table = table.append_column(column, done[column])
    return table


def _asof(view: ViewPlan, alias: str, low: datetime, high: datetime) -> str:
    """The view's ``ASOF LEFT JOIN``, reading only source rows that can match the chunk."""
    earliest = f" and {_q(view.timestamp_field)} >= '{low}'::timestamp - {_interval(view)}" if view.ttl else ""
    columns = ", ".join([*map(_q, view.join_keys), f"{_q(view.timestamp_field)} as __ts", *map(_q, view.features)])
    source = (
        f"select {columns} from read_parquet('{view.path}') "
        f"where {_q(view.timestamp_field)} <= '{high}'::timestamp{earliest}"
    )
    keys = " and ".join(f"e.{_q(entity)} = {alias}.{_q(key)}" for key, entity in view.join_keys.items())
    return f"asof left join ({source}) {alias} on {keys} and e.event_timestamp >= {alias}.__ts"


def _expiring(view: ViewPlan, alias: str, feature: str, column: str) -> str:
    """A joined feature, missing when its value is older than the view's TTL."""
    if not view.ttl:
        return f"{alias}.{_q(feature)} as {_q(column)}"
    fresh = f"{alias}.__ts >= e.event_timestamp - {_interval(view)}"
    return f"case when {fresh} then {alias}.{_q(feature)} end as {_q(column)}"


def _interval(view: ViewPlan) -> str:
    micros = view.ttl // view.ttl.resolution
    return f"to_microseconds({micros})"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
