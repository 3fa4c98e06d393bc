"""Fast online materialization: the latest row of each entity, from the marts into the online store.

``feast materialize`` converts and writes one row at a time in Python (a few thousand entities per
second here). This takes the latest row per entity key in the interval with DuckDB over the view's
Parquet source, and writes Feast's own online layout (``online_sqlite``, ``online_redis``), so
Feast's readers (``get_online_features``, hence serving) read exactly what ``feast materialize``
would have written. Views go one after the other, the next one's latest rows read (DuckDB, in a
thread) while this one's are written.
Everything about a view (source file, join keys, timestamp field, features and their types) comes
from the registry. On the distributed profile Spark picks the latest rows instead of DuckDB, and
its executors write them (``materialize_spark``), so the driver holds none.

Intervals follow ``feast materialize-incremental`` and are recorded in the registry the same way
(``apply_materialization``), so the two take turns: a view's first run covers ``[end - ttl, end]``,
later runs ``(previous end, end]`` (nothing when ``end`` is not later). As with Feast, values
already online are not expired afterwards. A rebuild (``rebuild=True``) ignores the recorded
intervals: it recreates missing online tables and writes every view as a first run would, so a store
that was emptied, restarted empty or lost a table is refilled whatever the registry says.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureStore, FeatureView
from feast.value_type import ValueType

from shoprank.config import Settings
from shoprank.errors import FeatureStoreError
from shoprank.features import online_rows
from shoprank.features.latest_rows import LatestRows, ahead
from shoprank.features.online_redis import write_redis
from shoprank.features.online_sqlite import write_sqlite
from shoprank.features.store import online_store_kind, open_store, reads_parquet, source_file
from shoprank.warehouse import literal, memory_limit, parquet

Progress = Callable[[int, str, int], None]
WRITERS = {"sqlite": write_sqlite, "redis": write_redis}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EVENT_TS = "__shoprank_event_timestamp"
# DuckDB column types each Feast type accepts, and the type it is read as.
READ_AS = {
    ValueType.INT64: ("BIGINT", {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER"}),
    ValueType.DOUBLE: ("DOUBLE", {"FLOAT", "DOUBLE"}),
    ValueType.STRING: ("VARCHAR", {"VARCHAR"}),
    ValueType.UNIX_TIMESTAMP: (
        "TIMESTAMP",
        {"TIMESTAMP", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "TIMESTAMP WITH TIME ZONE"},
    ),
}


@dataclass(frozen=True)
class ViewMaterialized:
    """One view's run: the interval it covered, the entity rows it wrote, and its seconds (from the
    end of the previous view's: reading this view's rows, as far as not overlapped, and writing)."""

    view: str
    start: datetime
    end: datetime
    rows: int
    seconds: float


@dataclass(frozen=True)
class MaterializeResult:
    """What ``materialize`` wrote, per view, into which online store."""

    online_store: str
    end: datetime
    views: list[ViewMaterialized]
    seconds: float

    @property
    def rows(self) -> int:
        """Entity rows written over all views."""
        return sum(view.rows for view in self.views)


@dataclass(frozen=True)
class Source:
    """Where and how a view's rows are read: its Parquet mart, keys, timestamp and features."""

    view: str
    path: Path
    keys: list[tuple[str, ValueType]]
    timestamp: str
    features: list[tuple[str, ValueType]]

    def columns(self, con: duckdb.DuckDBPyConnection) -> str:
        """SELECT list of the keys, features and event timestamp, in their Feast types."""
        found = {row[0]: row[1] for row in con.execute(f"DESCRIBE SELECT * FROM {self.relation}").fetchall()}
        selected = []
        for name, kind in [*self.keys, *self.features, (self.timestamp, ValueType.UNIX_TIMESTAMP)]:
            read_as, accepted = READ_AS[kind]
            if name not in found:
                raise FeatureStoreError(
                    f'View "{self.view}": column "{name}" is missing in {self.path}; '
                    'rebuild the marts ("shoprank build") or fix the view in feature_repo/'
                )
            if found[name] not in accepted:
                raise FeatureStoreError(
                    f'View "{self.view}": column "{name}" of {self.path} is {found[name]}, but the view declares '
                    f"{kind.name}; cast it in the dbt model or change the field's dtype in feature_repo/"
                )
            selected.append(f'CAST("{name}" AS {read_as}) AS "{EVENT_TS if name == self.timestamp else name}"')
        return ", ".join(selected)

    @property
    def relation(self) -> str:
        """The mart, for a FROM clause."""
        return f"read_parquet({literal(parquet(self.path))})"

    @property
    def event_time(self) -> str:
        """The event timestamp column as a TIMESTAMP, for a SQL expression."""
        return f'CAST("{self.timestamp}" AS TIMESTAMP)'

    @property
    def partition(self) -> str:
        """The join keys, comma-separated."""
        return ", ".join(f'"{name}"' for name, _ in self.keys)


@dataclass(frozen=True)
class _Staged:
    """A view's interval and its latest rows in it (None: already materialized that far)."""

    view: FeatureView
    start: datetime
    end: datetime
    rows: LatestRows | None


def materialize(
    settings: Settings,
    end: datetime | None = None,
    views: list[str] | None = None,
    progress: Progress | None = None,
    rebuild: bool = False,
) -> MaterializeResult:
    """Write the latest feature values of each view into the workdir's online store.

    Args:
        settings: Workdir, profile (SQLite or Redis online store) and Feast project.
        end: Materialize up to this time (naive means UTC); None: the newest event time in the
            views' marts, so a replayed or simulated shop materializes all it holds.
        views: Feature views to materialize; None: every online view.
        progress: Called as ``progress(done, view, total)`` with entity rows just processed, the
            view's name and the entity rows of this run so far (of this view and those before: a
            view's rows are read while the previous one is written; final for the last view).
        rebuild: Refill the views from their marts as a first run would (``[end - ttl, end]``),
            whatever intervals the registry records; missing online tables are created first.

    Returns:
        Per view: the interval covered, entity rows written and seconds.

    Raises:
        FeatureStoreError: A view is unknown, its mart is missing or mistyped, or the online
            store is unsupported or unreachable.
    """
    started = time.perf_counter()
    store = open_store(settings)
    kind = online_store_kind(store)
    if kind not in WRITERS or store.config.entity_key_serialization_version != 3:
        raise FeatureStoreError(
            f'Online store "{kind}" (entity key serialization v{store.config.entity_key_serialization_version}) '
            'is not supported by fast materialization; use sqlite or redis with version 3, or "feast materialize"'
        )
    selected = online_views(store, views)
    if rebuild:
        _create_tables(store, selected)
    with duckdb_connection() as con, ThreadPoolExecutor(1) as pool:
        sources = {view.name: view_source(store, view) for view in selected}
        end = _utc(end) if end is not None else _newest(con, sources.values())
        if settings.profile == "distributed":
            for source in sources.values():
                source.columns(con)  # its types checked (the DuckDB path checks them as it reads)
            done = _on_spark(store, selected, sources, end, rebuild, progress)
            _precompute_services(store, [view.name for view in selected])
            return MaterializeResult(kind, end, done, time.perf_counter() - started)
        total, done, began = 0, [], time.perf_counter()
        # the next view's latest rows are read while this one's are written
        stages = ahead(pool, lambda view: _stage(con, view, sources[view.name], end, rebuild), selected)
        for stage in stages:
            view, written = stage.view, 0
            if stage.rows is not None:
                total += len(stage.rows)
                with _no_garbage_collection():  # millions of short-lived rows and tuples, no cycles
                    written = WRITERS[kind](store.config, view, stage.rows, _advance(progress, view.name, total))
                store.registry.apply_materialization(view, store.project, stage.start, stage.end)
            seconds, began = time.perf_counter() - began, time.perf_counter()
            done.append(ViewMaterialized(view.name, stage.start, stage.end, written, seconds))
    _precompute_services(store, [view.name for view in selected])
    return MaterializeResult(kind, end, done, time.perf_counter() - started)


def online_views(store: FeatureStore, names: list[str] | None) -> list[FeatureView]:
    """The online views to materialize, fresh from the registry (their intervals included)."""
    online = {view.name: view for view in store.registry.list_feature_views(store.project, allow_cache=False)}
    online = {name: view for name, view in sorted(online.items()) if view.online and view.enabled}
    if names is None:
        return list(online.values())
    unknown = [name for name in names if name not in online]
    if unknown:
        raise FeatureStoreError(
            f'Feature view(s) {", ".join(unknown)} not found online in project "{store.project}"; '
            f"use one of {', '.join(online) or 'none (run shoprank features apply)'}"
        )
    return [online[name] for name in dict.fromkeys(names)]


def view_source(store: FeatureStore, view: FeatureView) -> Source:
    """The view's source as registered, checked for what fast materialization supports."""
    source = view.batch_source
    if not reads_parquet(source):
        raise FeatureStoreError(
            f'View "{view.name}": fast materialization reads plain Parquet file sources (no created timestamp, '
            'no field mapping); use "feast materialize" for this view'
        )
    path = source_file(source, store.repo_path)
    if not path.exists():
        raise FeatureStoreError(f'View "{view.name}": mart {path} does not exist; run "shoprank build" first')
    keys = [(column.name, column.dtype.to_value_type()) for column in view.entity_columns]
    features = [(field.name, field.dtype.to_value_type()) for field in view.features]
    for name, kind in keys + features:
        if kind not in (online_rows.KEY_TYPES if (name, kind) in keys else online_rows.VALUE_TYPES):
            raise FeatureStoreError(
                f'View "{view.name}": "{name}" has type {kind.name}, which fast materialization does not write; '
                'use Int64, Float64, String or UnixTimestamp (keys: String, Int64), or "feast materialize"'
            )
    return Source(view.name, path, keys, source.timestamp_field, features)


def _on_spark(
    store: FeatureStore,
    views: list[FeatureView],
    sources: dict[str, Source],
    end: datetime,
    rebuild: bool,
    progress: Progress | None,
) -> list[ViewMaterialized]:
    """Each view's latest rows picked and written into Redis by Spark's executors
    (``materialize_spark``), one view after the other."""
    from shoprank.features.materialize_spark import write_view  # pyspark comes with the distributed extra
    from shoprank.spark import spark_session

    spark, total, done = spark_session(store.config.offline_store), 0, []
    for view in views:
        began, (start, after) = time.perf_counter(), interval(view, end, rebuild)
        written = 0
        if start < end:
            written = write_view(spark, store.config, view, sources[view.name], start, after, end)
            store.registry.apply_materialization(view, store.project, start, end)
            total += written
            _advance(progress, view.name, total)(written)
        done.append(ViewMaterialized(view.name, start, max(start, end), written, time.perf_counter() - began))
    return done


def interval(view: FeatureView, end: datetime, rebuild: bool) -> tuple[datetime, str]:
    """Where the view's run up to ``end`` starts, and whether it includes its start (``>=``, a
    first run's ``[end - ttl, end]``, or always when ``rebuild``) or not (``>``, after the previous
    run's end; nothing to do when that is not before ``end``)."""
    previous = None if rebuild else view.most_recent_end_time
    if previous is None:
        return (end - view.ttl if view.ttl else EPOCH), ">="
    return _utc(previous), ">"


def _stage(con: duckdb.DuckDBPyConnection, view: FeatureView, source: Source, end: datetime, rebuild: bool) -> _Staged:
    """The view's interval up to ``end`` (its first run's when ``rebuild``) and the latest row of
    each entity in it."""
    start, after = interval(view, end, rebuild)
    if start >= end:  # already materialized that far
        return _Staged(view, start, start, None)
    ts = source.event_time
    data = con.sql(
        f"SELECT {source.columns(con)} FROM {source.relation} WHERE {ts} {after} $start AND {ts} <= $end "
        f"QUALIFY row_number() OVER (PARTITION BY {source.partition} ORDER BY {EVENT_TS} DESC) = 1",
        params={"start": naive(start), "end": naive(end)},
    ).to_arrow_table()
    return _Staged(view, start, end, as_latest_rows(data, source))


def as_latest_rows(data: pa.Table, source: Source) -> LatestRows:
    """The latest rows as Arrow columns, with their serialized entity keys, in key order (the order
    SQLite's indexes keep; sorted here, while the previous view is written)."""
    columns = {name: data.column(name).combine_chunks() for name in data.column_names}
    for name, _ in source.keys:
        if columns[name].null_count:
            raise FeatureStoreError(
                f'View "{source.view}": {columns[name].null_count} latest row(s) of {source.path} have no '
                f'"{name}"; fix the mart (a key must not be null)'
            )
    keys = online_rows.entity_keys([(name, kind, columns[name]) for name, kind in source.keys])
    rows = LatestRows(keys, columns[EVENT_TS], [(name, kind, columns[name]) for name, kind in source.features])
    return rows.take(pc.sort_indices(keys))


def _newest(con: duckdb.DuckDBPyConnection, sources: Iterable[Source]) -> datetime:
    """The newest event time in the sources' marts."""
    newest = [con.execute(f"SELECT max({s.event_time}) FROM {s.relation}").fetchall()[0][0] for s in sources]
    newest = [moment for moment in newest if moment is not None]
    if not newest:
        raise FeatureStoreError('The marts of the views hold no rows; run "shoprank pipeline" or "shoprank build"')
    return max(newest).replace(tzinfo=UTC)


def _create_tables(store: FeatureStore, views: list[FeatureView]) -> None:
    """Create the views' online tables where they are missing, as ``feast apply`` does (Feast's
    own ``update_infra``; nothing to create in Redis)."""
    store._get_provider().update_infra(
        project=store.project,
        tables_to_delete=[],
        tables_to_keep=views,
        entities_to_delete=[],
        entities_to_keep=[],
        partial=True,
    )


def _precompute_services(store: FeatureStore, views: list[str]) -> None:
    """Refresh the services that precompute online vectors, as ``feast materialize`` does."""
    for service in store.registry.list_feature_services(store.project):
        if service.precompute_online and {p.name for p in service.feature_view_projections} & set(views):
            store.precompute_feature_service(service.name)


@contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """Pause Python's cycle collector, which would otherwise walk the writers' big lists again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _advance(progress: Progress | None, view: str, total: int) -> Callable[[int], None]:
    return (lambda done: progress(done, view, total)) if progress else (lambda done: None)


def merged(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Materialized intervals, overlapping or touching ones merged."""
    joined: list[tuple[datetime, datetime]] = []
    for start, stop in sorted((_utc(start), _utc(stop)) for start, stop in intervals):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(stop, joined[-1][1]))
        else:
            joined.append((start, stop))
    return joined


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(config={"memory_limit": memory_limit()})
    con.execute("SET TimeZone = 'UTC'")
    return con


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def naive(moment: datetime) -> datetime:
    return _utc(moment).replace(tzinfo=None)
