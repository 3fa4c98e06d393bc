"""Point-in-time training frames: labelled entity rows joined to a feature service.

Entity rows ``(query_id, user_id, item_id, event_timestamp, label)`` and their context come from
a label source (``training.labels``; served lists by default), plus what the service joins on:
the candidate's current ``category_path`` from ``marts.dim_items`` and the request time. They
are sorted by time and group, cut into chunks that never split a group, joined chunk by chunk,
checked against the frame's Pandera contract and written to Parquet, so memory stays bounded.
Three engines give the same frame: ``duckdb`` (``training.pit``), ``spark`` (``training.pit_spark``:
the chunks joined, checked and written on Spark's executors; the distributed profile's default)
and ``feast``, Feast's own ``get_historical_features`` (the reference).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from feast import FeatureStore
from pandera.polars import DataFrameSchema

from shoprank.config import Settings
from shoprank.errors import ConfigError, ContractError
from shoprank.features.store import open_store
from shoprank.progress import Advance
from shoprank.warehouse import literal, read
from training.contracts import GROUP, POLARS_TYPES, training_frame_schema, validate_frame
from training.labels import CONTEXT_COLUMNS, LABEL_COLUMNS, LIST_SURFACES, SEARCH_SURFACES, LabelSource, served
from training.pit import CHUNK, ROW, connect, in_utc, join_chunk
from training.plan import ServicePlan, resolve
from training.signals import catalog_index

ENGINES = ("duckdb", "feast", "spark")
ENTITIES = "entities"
RETRIEVAL = "retrieval_bm25"
# join keys from the item's current catalog entry: entity column -> dim_items column
ITEM_COLUMNS = {"category_path": "category_path", "category_top": "category_top", "item_brand": "brand"}
# Where each column a service may join on comes from: l = the label rows, i = dim_items,
# r = the BM25 retrieval score of the row's query and item.
_ENTITY_SOURCES = {
    **{column: f"l.{column}" for column in (*LABEL_COLUMNS, *CONTEXT_COLUMNS)},
    **{column: f"i.{source}" for column, source in ITEM_COLUMNS.items()},
    "request_time": "l.event_timestamp",
    RETRIEVAL: f"r.{RETRIEVAL}",
}


@dataclass(frozen=True)
class DatasetResult:
    """A training frame written as Parquet parts (``part-00000.parquet``, ... in row order).

    Attributes:
        path: The folder of the parts.
        service: The feature service joined.
        engine: ``duckdb`` or ``feast``.
        labels: The label source's name.
        rows: Rows written (one per entity row).
        columns: Every column, in order: entity columns, then Feast's feature columns.
        features: The service's feature columns (what a model trains on).
        types: Each feature's Feast type by name (``ServicePlan.type_names``).
        seconds: Wall time of the build.
    """

    path: Path
    service: str
    engine: str
    labels: str
    rows: int
    columns: tuple[str, ...]
    features: tuple[str, ...]
    types: dict[str, str]
    seconds: float


def build_dataset(
    settings: Settings,
    service: str,
    engine: str | None = None,
    labels: LabelSource | None = None,
    chunk_rows: int = 1_000_000,
    progress: Advance | None = None,
) -> DatasetResult:
    """Build the training frame of a feature service into ``settings.datasets/<service>/``.

    Args:
        settings: The workdir (its labels mart, warehouse and applied feature store).
        service: Feature service name, e.g. ``ranker_v1``.
        engine: ``duckdb`` (ASOF joins in DuckDB) or ``feast`` (``get_historical_features`` on the
            profile's offline store: Spark on the distributed profile, where it is the default).
        labels: Where the labelled rows come from; by default the served lists of ``search``
            when the service reads the query, else of ``recommend`` and ``browse``.
        chunk_rows: Rows per chunk (a chunk holds whole groups, so it may be a little larger).
        progress: Called as ``progress(rows, what, total=...)`` after each chunk.

    Raises:
        FeatureStoreError: The service or a source is missing from the registry or disk.
        ContractError: The labels cannot feed the service, or a frame breaks its contract.
        WarehouseError: The labels mart or the warehouse is missing.
    """
    started = time.perf_counter()
    engine = engine_for(settings, engine)
    store = open_store(settings)
    plan = resolve(store, service)
    labels = labels or served(default_surfaces(plan))
    con = connect(settings.datasets / ".spill")
    try:
        rows = label_entities(con, settings, plan, labels, chunk_rows)
        if rows == 0:
            raise ContractError(f'Label source "{labels.name}" gave no rows; check its input data')
        if engine == "spark":
            columns = spark_frame(con, store, plan, settings.datasets / service)
            if progress is not None:
                progress(rows, what="joined on Spark", total=rows)
        else:
            join = join_chunk if engine == "duckdb" else feast_join(store)
            columns = write_frames(con, plan, ENTITIES, settings.datasets / service, join, progress)
    finally:
        con.close()
    return DatasetResult(
        settings.datasets / service,
        service,
        engine,
        labels.name,
        rows,
        columns,
        plan.features,
        plan.type_names,
        time.perf_counter() - started,
    )


def engine_for(settings: Settings, engine: str | None, engines: tuple[str, ...] = ENGINES) -> str:
    """The point-in-time engine to use: ``engine``, else Spark on the distributed profile, else
    DuckDB.

    Raises:
        ConfigError: An engine not among ``engines``, or ``spark`` off the distributed profile.
    """
    engine = engine or ("spark" if settings.profile == "distributed" else "duckdb")
    if engine not in engines:
        raise ConfigError(f'Unknown point-in-time engine "{engine}"; use one of {", ".join(engines)}')
    if engine == "spark" and settings.profile != "distributed":
        raise ConfigError(
            f"The spark engine joins on the distributed profile's Spark; the {settings.profile} profile has none: "
            "use --engine duckdb or --profile distributed"
        )
    return engine


def default_surfaces(plan: ServicePlan) -> tuple[str, ...]:
    """Search labels for a service that reads the query, served lists for the others."""
    reads_query = {"query", "query_norm"} & set(plan.entity_columns)
    return SEARCH_SURFACES if reads_query else LIST_SURFACES


def entity_table(con: duckdb.DuckDBPyConnection, rows: str, chunk_rows: int) -> int:
    """Create the table ``entities`` from a query of entity rows numbered ``__row``; return its size.

    Adds ``__chunk``: the chunk of a group's first row, so a group (``query_id``) never spans
    chunks; stores ``event_timestamp`` as a naive UTC timestamp and rows in ``__row`` order.
    """
    con.execute(
        f"create or replace temp table {ENTITIES} as select * replace (event_timestamp::timestamp as event_timestamp), "
        f"(min({ROW}) over (partition by {GROUP})) // {chunk_rows} as {CHUNK} from ({rows}) order by {ROW}"
    )
    return con.sql(f"select count(*) from {ENTITIES}").fetchall()[0][0]


Join = Callable[[duckdb.DuckDBPyConnection, ServicePlan, str, int], pa.Table]


def write_frames(
    con: duckdb.DuckDBPyConnection,
    plan: ServicePlan,
    entities: str,
    folder: Path,
    join: Join,
    progress: Advance | None = None,
) -> tuple[str, ...]:
    """Join every chunk of an entity table, validate it and write it as a Parquet part.

    A chunk is validated and written in a worker thread while the next one is joined. The parts
    go to a sibling folder first, which replaces ``folder`` once all are written.

    Returns:
        The frame's columns.
    """
    schema = training_frame_schema(plan)
    chunks = [c for (c,) in con.sql(f"select distinct {CHUNK} from {entities} order by 1").fetchall()]
    total = con.sql(f"select count(*) from {entities}").fetchall()[0][0]
    partial = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    columns: tuple[str, ...] = ()
    try:
        with ThreadPoolExecutor(max_workers=1) as writer:
            written: Future[None] | None = None
            for part, chunk in enumerate(chunks):
                frame = join(con, plan, entities, chunk)
                if written is not None:
                    written.result()
                where = f"chunk {part + 1} of {len(chunks)}"
                written = writer.submit(_write, schema, frame, partial / f"part-{part:05d}.parquet", where)
                columns = tuple(frame.column_names)
                if progress is not None:
                    progress(frame.num_rows, what=f"chunk {part + 1}/{len(chunks)}", total=total)
            if written is not None:
                written.result()
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)
    return columns


def spark_frame(
    con: duckdb.DuckDBPyConnection, store: FeatureStore, plan: ServicePlan, folder: Path
) -> tuple[str, ...]:
    """The frame joined on the offline store's Spark (``training.pit_spark``) from the entity
    table, which DuckDB hands over as Parquet; ``con`` is closed then, so the driver holds no rows
    while Spark works."""
    from shoprank.spark import spark_session  # pyspark comes with the distributed extra
    from training.pit_spark import write_frame

    entities = folder.parent / ".spill" / f"{folder.name}.entities.parquet"
    con.execute(f"copy (select {in_utc(con, ENTITIES)} from {ENTITIES} order by {ROW}) to {literal(str(entities))}")
    con.close()
    try:
        return write_frame(spark_session(store.config.offline_store), plan, str(entities), folder)
    finally:
        entities.unlink(missing_ok=True)


def _write(schema: DataFrameSchema, frame: pa.Table, path: Path, where: str) -> None:
    validate_frame(schema, pl.from_arrow(frame), where)
    pq.write_table(frame, path)


def feast_join(store: FeatureStore) -> Join:
    """The reference engine: Feast's ``get_historical_features`` on a chunk, in row order."""

    def join(con: duckdb.DuckDBPyConnection, plan: ServicePlan, entities: str, chunk: int) -> pa.Table:
        given = con.sql(f"select * exclude ({CHUNK}) from {entities} where {CHUNK} = {chunk} order by {ROW}").pl()
        rows = given.to_pandas()
        service = store.get_feature_service(plan.service)
        table = store.get_historical_features(rows, features=service, full_feature_names=True).to_arrow()
        table = _as_registered(table.sort_by(ROW).drop([ROW]), plan, given.schema)
        expected = [c for c in rows.columns if c != ROW] + list(plan.feature_columns)
        names = table.column_names
        return table.select([c for c in expected if c in names] + [c for c in names if c not in expected])

    return join


def _as_registered(table: pa.Table, plan: ServicePlan, entities: pl.Schema) -> pa.Table:
    """Feast's rows in the types the engines agree on: features as registered, entity columns as
    given (timestamps in UTC, as Feast returns them), every timestamp in microseconds. An offline
    store that hands its rows through pandas (Spark's) gives a whole-number feature with missing
    values as floats (NaN), an entity column of missing values only untyped, and timestamps with
    or without their zone: each gets its type back where no value changes (floats only when every
    one is whole). Anything else stays as it came, for the frame's contract to judge."""
    frame = pl.from_arrow(table)
    casts = []
    for name, kind in frame.schema.items():
        wanted = POLARS_TYPES.get(plan.dtypes.get(name)) or entities.get(name)
        if wanted == pl.Datetime and name not in plan.dtypes:
            wanted = pl.Datetime("us", "UTC")
        elif wanted is None and kind == pl.Datetime:  # an on-demand view's input: in microseconds
            wanted = pl.Datetime("us", kind.time_zone)
        column = pl.col(name)
        if wanted is None or kind == wanted:
            continue
        if kind == pl.Null:
            casts.append(column.cast(wanted))
        elif kind == pl.Datetime and wanted == pl.Datetime:
            utc = column.dt.replace_time_zone("UTC") if kind.time_zone is None else column.dt.convert_time_zone("UTC")
            casts.append(utc.dt.replace_time_zone(wanted.time_zone).dt.cast_time_unit(wanted.time_unit))
        elif kind.is_float() and wanted.is_integer():
            if frame.select((column.is_nan() | (column == column.round())).all()).item():
                casts.append(column.fill_nan(None).cast(wanted))
    return frame.with_columns(casts).to_arrow() if casts else table


def label_entities(
    con: duckdb.DuckDBPyConnection, settings: Settings, plan: ServicePlan, labels: LabelSource, chunk_rows: int
) -> int:
    """Create the entity table from a label source; return its number of rows."""
    missing = [c for c in plan.entity_columns if c not in _ENTITY_SOURCES]
    if missing:
        raise ContractError(
            f'Feature service "{plan.service}" needs entity column(s) {missing}, which label rows '
            f"do not provide; add them to training.dataset._ENTITY_SOURCES or use another service"
        )
    columns = dict.fromkeys((*LABEL_COLUMNS, *CONTEXT_COLUMNS, *plan.entity_columns))
    con.execute(f"create or replace temp table label_rows as {labels.select(con, settings)}")
    joins = ""
    if set(ITEM_COLUMNS) & set(columns):
        _register_items(con, settings)
        joins += " left join items i using (item_id)"
    if RETRIEVAL in columns:
        _register_retrieval(con, settings)
        joins += " left join retrieval r on r.query = l.query and r.item_id = l.item_id"
    select = ", ".join(f"{_ENTITY_SOURCES[c]} as {c}" for c in columns)
    rows = (
        f"select {select}, row_number() over (order by l.event_timestamp, l.query_id, l.position, l.item_id) - 1 as {ROW} "
        f"from label_rows l{joins}"
    )
    return entity_table(con, rows, chunk_rows)


def _register_retrieval(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """BM25 of each distinct (query, item) of the label rows against the current catalog titles,
    as the retrieval that found the item would have scored it."""
    pairs = con.sql("select distinct query, item_id from label_rows where query is not null").pl()
    scores = catalog_index(settings).score(pairs["query"].to_list(), pairs["item_id"].to_list())
    con.register("retrieval", pairs.with_columns(pl.Series(RETRIEVAL, scores)))


def _register_items(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Copy each item's current category and brand from the warehouse's ``marts.dim_items``."""
    con.register(
        "items", read(settings.warehouse, f"select item_id, {', '.join(ITEM_COLUMNS.values())} from marts.dim_items")
    )
