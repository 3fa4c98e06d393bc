"""Point-in-time joins in DuckDB: Feast's historical retrieval, chunk by chunk.

Each feature view is an ``ASOF LEFT JOIN`` of the chunk's keys to its Parquet source: the latest
row of the entity's keys with ``feature_ts <= event_timestamp``, kept only when
``feature_ts >= event_timestamp - ttl`` (Feast's rule), else missing. Views are joined one at a
time on narrow rows (row number, keys, timestamp) and their columns laid side by side in row
order. Each on-demand view runs through Feast's own object (``transform_arrow``), so
request-time features come from exactly Feast's code, in a worker thread as soon as the views
it reads are joined (DuckDB joins the rest meanwhile). It runs once per distinct input row,
which equals running it on every row because a request-time feature depends on its own row
only (serving computes it one request at a time).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from shoprank.warehouse import literal, memory_limit, parquet
from training.plan import OnDemandPlan, ServicePlan, ViewPlan

ROW = "__row"
CHUNK = "__chunk"


def connect(spill: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB capped like the warehouse (``SHOPRANK_DUCKDB_MEMORY``), spilling to
    ``spill``, with UTC as its time zone (naive timestamps are UTC, as Feast reads them)."""
    spill.mkdir(parents=True, exist_ok=True)
    config = {"memory_limit": memory_limit(), "temp_directory": str(spill)}
    con = duckdb.connect(config=config)
    con.execute("set TimeZone = 'UTC'")
    con.execute("set enable_progress_bar = false")
    return con


def join_chunk(con: duckdb.DuckDBPyConnection, plan: ServicePlan, entities: str, chunk: int) -> pa.Table:
    """Feast's historical features for one chunk of an entity table, in row order.

    Args:
        con: A connection from ``connect``.
        plan: The feature service's plan.
        entities: Table of entity rows with ``event_timestamp`` (naive UTC), the plan's entity
            columns, a row number ``__row`` and a chunk number ``__chunk``.
        chunk: The chunk to join.

    Returns:
        The entity columns (timestamps in UTC, as Feast returns them), then the plan's feature
        columns; one row per entity row, ordered by ``__row`` (dropped).
    """
    rows = f"(select * from {entities} where {CHUNK} = {int(chunk)})"
    low, high = con.sql(f"select min(event_timestamp), max(event_timestamp) from {rows}").fetchall()[0]
    table = con.sql(f"select {in_utc(con, entities, ROW, CHUNK)} from {rows} order by {ROW}").to_arrow_table()
    with ThreadPoolExecutor(max_workers=1) as worker:
        transforms: dict[str, Future[pa.Table]] = {}
        _start_ready(worker, transforms, table, plan)
        joined: dict[str, pa.Table] = {}
        # smallest source first: the on-demand views it feeds start sooner, beside the big joins
        for view in sorted(plan.views, key=_source_size):
            keys = ", ".join(_q(column) for column in dict.fromkeys(view.join_keys.values()))
            narrow = f"(select {ROW}, event_timestamp, {keys} from {rows})"
            joined[view.name] = con.sql(f"{_asof(view, narrow, low, high)} order by e.{ROW}").to_arrow_table()
            _start_ready(worker, transforms, beside(table, *joined.values()), plan)
        table = beside(table, *(joined[view.name] for view in plan.views))
        return beside(table, *(transforms[odfv.view.name].result() for odfv in plan.on_demand))


def in_utc(con: duckdb.DuckDBPyConnection, table: str, *drop: str) -> str:
    """A select list of ``table``'s columns but ``drop``, naive timestamps read as UTC (as Feast
    returns them)."""
    described = con.sql(
        f"select * exclude ({', '.join(drop)}) from {table} limit 0" if drop else f"from {table} limit 0"
    )
    return ", ".join(
        f"{_q(name)}::timestamptz as {_q(name)}" if str(kind).startswith("TIMESTAMP") else _q(name)
        for name, kind in zip(described.columns, described.types, strict=True)
    )


def _start_ready(worker: ThreadPoolExecutor, transforms: dict, table: pa.Table, plan: ServicePlan) -> None:
    """Start each on-demand view whose inputs are joined: it runs while DuckDB joins the rest."""
    for odfv in plan.on_demand:
        if odfv.view.name not in transforms and set(odfv.sources) <= set(table.column_names):
            transforms[odfv.view.name] = worker.submit(on_demand_outputs, table, odfv)


def _source_size(view: ViewPlan) -> int:
    """Bytes of the view's Parquet source (0 when it is not a local file)."""
    return view.path.stat().st_size if view.path.is_file() else 0


def beside(table: pa.Table, *others: pa.Table) -> pa.Table:
    """``table`` with the columns of ``others`` appended, in order."""
    for columns in others:
        for name in columns.column_names:
            table = table.append_column(name, columns[name])
    return table


def on_demand_outputs(table: pa.Table, odfv: OnDemandPlan) -> pa.Table:
    """One on-demand view's outputs for every row, computed once per distinct input row."""
    inputs = pl.from_arrow(table.select([*odfv.sources, *odfv.requests]))
    distinct = inputs.unique(maintain_order=True)
    done = odfv.view.transform_arrow(distinct.to_arrow(), full_feature_names=True).select(odfv.columns)
    outputs = pl.concat([distinct, pl.from_arrow(done)], how="horizontal")
    spread = inputs.join(outputs, on=inputs.columns, how="left", nulls_equal=True, maintain_order="left")
    return spread.select(odfv.columns).to_arrow().cast(done.schema)


def _asof(view: ViewPlan, rows: str, low: datetime, high: datetime) -> str:
    """The view's features for ``rows``, reading only source rows that can match them."""
    ts = _q(view.timestamp_field)
    earliest = f" and {ts} >= '{low}'::timestamp - {_interval(view)}" if view.ttl else ""
    columns = ", ".join([*map(_q, view.join_keys), f"{ts} as __ts", *map(_q, view.features)])
    source = (
        f"select {columns} from read_parquet({literal(parquet(view.path))}) where {ts} <= '{high}'::timestamp{earliest}"
    )
    keys = " and ".join(f"e.{_q(entity)} = v.{_q(key)}" for key, entity in view.join_keys.items())
    features = ", ".join(
        _expiring(view, feature, column) for feature, column in zip(view.features, view.columns, strict=True)
    )
    return f"select {features} from {rows} e asof left join ({source}) v on {keys} and e.event_timestamp >= v.__ts"


def _expiring(view: ViewPlan, feature: str, column: str) -> str:
    """A joined feature, missing when its value is older than the view's TTL."""
    if not view.ttl:
        return f"v.{_q(feature)} as {_q(column)}"
    return f"case when v.__ts >= e.event_timestamp - {_interval(view)} then v.{_q(feature)} end as {_q(column)}"


def _interval(view: ViewPlan) -> str:
    return f"to_microseconds({view.ttl_micros})"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
