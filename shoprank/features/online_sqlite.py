"""Write a view's latest rows into Feast's SQLite online store, as Feast's ``online_write_batch``.

One row per entity and feature in table ``<project>_<view>``: serialized entity key, feature name,
``ValueProto`` bytes, ``value_text``, ``event_ts``; upserted, so a later write replaces a row
whatever its event time. Rows go in key order (appends to the table's indexes), many entities per
statement (their statement journals kept in memory), one transaction per view, committed with the
connection's default durability (rollback journal, ``synchronous=FULL``) as Feast's writes are.

SQLite's inserts take most of the time; the rest is kept small: a column's distinct values are
serialized once and its rows share their Python objects. (Building the next chunk in a thread
while SQLite inserts gained about 4% on the medium shop, not worth a second thread: both need
the GIL between SQLite calls.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow.compute as pc
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.helpers import compute_table_id
from feast.value_type import ValueType

from shoprank.errors import FeatureStoreError
from shoprank.features import online_rows
from shoprank.features.latest_rows import Advance, LatestRows, spans

ROWS_PER_STATEMENT = 64  # SQLite rows per INSERT: many entities per statement when views are narrow
NUMBERS = (ValueType.INT64, ValueType.DOUBLE)


def write_sqlite(config: RepoConfig, view: FeatureView, rows: LatestRows, advance: Advance) -> int:
    """Upsert ``rows`` into the view's SQLite table in one transaction; return the entities written.

    Raises:
        FeatureStoreError: The table is missing, or the store uses options this writer lacks.
    """
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    online = config.online_store
    if online.vector_enabled or online.enable_openai_compatible_store:
        raise FeatureStoreError(
            f'View "{view.name}": the SQLite options vector_enabled / enable_openai_compatible_store are not '
            'supported by fast materialization; turn them off or use "feast materialize"'
        )
    path = SqliteOnlineStore._get_db_path(config)
    table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    if len(rows) > 1 and pc.any(pc.less(rows.keys[1:], rows.keys[:-1])).as_py():  # materialize sorts them
        rows = rows.take(pc.sort_indices(rows.keys))
    rows = LatestRows(rows.keys, rows.times, sorted(rows.features, key=lambda feature: feature[0]))
    features = [(name, kind) for name, kind, _ in rows.features]
    batch = max(1, ROWS_PER_STATEMENT // len(features))  # entities per statement
    upsert_batch, upsert_one = _upsert(table, features, batch), _upsert(table, features, 1)
    conn = sqlite3.connect(path, timeout=60)
    conn.execute("PRAGMA temp_store = MEMORY")  # the multi-row statements' journals: a fifth faster
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone():
            raise FeatureStoreError(
                f'Online table "{table}" of view "{view.name}" is missing in {path}; '
                f'refill it with "shoprank features materialize --rebuild --view {view.name}"'
            )
        with conn:
            for columns in (_parameters(rows.slice(*span)) for span in spans(len(rows))):
                whole = len(columns[0]) // batch * batch
                strided = (column[i:whole:batch] for i in range(batch) for column in columns)
                conn.executemany(upsert_batch, zip(*strided, strict=True))
                conn.executemany(upsert_one, zip(*(column[whole:] for column in columns), strict=True))
                advance(len(columns[0]))
    finally:
        conn.close()
    return len(rows)


def _parameters(rows: LatestRows) -> list[list[Any]]:
    """Columns of the upsert's parameters: entity key, event_ts, then each feature's value and text.

    Blobs go as bytearrays and missing numbers' texts as "" (NULLIF makes them NULL): the sqlite3
    module binds those without looking for adapters, three times faster than bytes or None.
    """
    columns = [list(map(bytearray, rows.keys.to_pylist())), online_rows.sqlite_event_ts(rows.times).to_pylist()]
    for _, kind, values in rows.features:
        distinct, index = online_rows.distinct(values, kind)
        blobs = map(bytearray, online_rows.value_protos(distinct, kind).to_pylist())
        columns.append(_objects(blobs)[index].tolist())
        if kind != ValueType.UNIX_TIMESTAMP:  # a timestamp's text is always NULL
            texts = online_rows.value_texts(distinct, kind, missing="" if kind in NUMBERS else None)
            columns.append(_objects(texts)[index].tolist())
    return columns


def _objects(items: Iterable[Any]) -> np.ndarray:
    """A NumPy array of Python objects (bytearrays stay objects, not rows of numbers)."""
    return np.fromiter(items, object)


def _upsert(table: str, features: list[tuple[str, ValueType]], entities: int) -> str:
    """Feast's SQLite upsert of ``entities`` entities, each bound as ``_parameters`` lays them out."""
    rows, slot = [], 0
    for _ in range(entities):
        key, event_ts = slot + 1, slot + 2
        slot += 2
        for name, kind in features:
            value = slot = slot + 1
            if kind in NUMBERS:
                slot += 1
                text = f"NULLIF(?{slot}, '')"
            elif kind == ValueType.UNIX_TIMESTAMP:
                text = "NULL"
            else:
                slot += 1
                text = f"?{slot}"
            rows.append(f"(?{key}, '{name.replace(chr(39), chr(39) * 2)}', ?{value}, {text}, ?{event_ts}, NULL)")
    return (
        f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) '
        f"VALUES {', '.join(rows)} ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
        "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts"
    )
