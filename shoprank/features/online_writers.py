"""Write a view's latest rows straight into Feast's online stores, in Feast's own layout.

- SQLite: one row per entity and feature in table ``<project>_<view>``, upserted as Feast's
  ``online_write_batch`` does (a later write replaces the row, whatever its event time).
- Redis: one hash per entity key, a field per feature (murmur3 of ``view:feature``) plus
  ``_ts:<view>``; as in Feast, an entity is skipped when Redis already holds a value of the view
  at least as new (unless ``skip_dedup``), and keys expire after ``key_ttl_seconds`` if set.

Both write many entities per round trip from bytes built column-wise (``online_rows``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.helpers import _mmh3, compute_table_id, compute_versioned_name
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from shoprank.errors import FeatureStoreError
from shoprank.features import online_rows

Advance = Callable[[int], None]  # called with the entities just processed
CHUNK = 5_000  # entities per progress step, SQLite chunk and Redis round trip
ROWS_PER_STATEMENT = 64  # SQLite rows per INSERT: many entities per statement when views are narrow


@dataclass(frozen=True)
class LatestRows:
    """The latest row of each entity of a view within an interval: what materialization writes.

    Attributes:
        keys: Serialized entity keys.
        times: Event timestamps.
        features: ``(name, value type, values)`` of each feature.
    """

    keys: pa.Array
    times: pa.Array
    features: list[tuple[str, ValueType, pa.Array]]

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, indices: pa.Array) -> LatestRows:
        """The rows at ``indices``, in that order."""
        features = [(name, kind, values.take(indices)) for name, kind, values in self.features]
        return LatestRows(self.keys.take(indices), self.times.take(indices), features)

    def slice(self, start: int, stop: int) -> LatestRows:
        """Rows ``start`` to ``stop`` (exclusive), without copying."""
        features = [(name, kind, values[start:stop]) for name, kind, values in self.features]
        return LatestRows(self.keys[start:stop], self.times[start:stop], features)

    def filter(self, mask: pa.Array) -> LatestRows:
        """The rows where ``mask`` is true."""
        return self.take(pc.indices_nonzero(mask))


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
    rows = rows.take(pc.sort_indices(rows.keys))  # key order: inserts append to the table's indexes
    rows = LatestRows(rows.keys, rows.times, sorted(rows.features))
    names = [name for name, _, _ in rows.features]
    batch = max(1, ROWS_PER_STATEMENT // len(names))  # entities per statement
    upsert_batch, upsert_one = _upsert(table, names, batch), _upsert(table, names, 1)
    conn = sqlite3.connect(path, timeout=60)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone():
            raise FeatureStoreError(
                f'Online table "{table}" of view "{view.name}" is missing in {path}; run "shoprank features apply"'
            )
        # SQLite writes a chunk (without the GIL) while a thread serializes the next one
        with conn, ThreadPoolExecutor(1) as pool:
            for columns in _ahead(pool, _sqlite_parameters, (rows.slice(*span) for span in _chunks(len(rows)))):
                whole = len(columns[0]) // batch * batch
                conn.executemany(
                    upsert_batch, zip(*(c[i:whole:batch] for i in range(batch) for c in columns), strict=True)
                )
                conn.executemany(upsert_one, zip(*(c[whole:] for c in columns), strict=True))
                advance(len(columns[0]))
    finally:
        conn.close()
    return len(rows)


def write_redis(config: RepoConfig, view: FeatureView, rows: LatestRows, advance: Advance) -> int:
    """Write ``rows`` into Redis hashes; return the entities written (those newer than what Redis holds).

    Raises:
        FeatureStoreError: Redis is unreachable, answers with an error, or runs as a cluster.
    """
    from feast.infra.online_stores.redis import RedisOnlineStore, RedisType

    online = config.online_store
    if online.redis_type == RedisType.redis_cluster:
        raise FeatureStoreError(
            f'View "{view.name}": fast materialization does not support redis_type "redis_cluster"; '
            'use "feast materialize" for a Redis cluster'
        )
    name = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
    ts_field = f"_ts:{name}".encode()
    keys = online_rows.join([rows.keys, pa.scalar(config.project.encode(), online_rows.BINARY)])
    times = online_rows.timestamp_protos(rows.times)
    client = RedisOnlineStore()._get_client(online)  # Feast's own connection settings
    if not online.skip_dedup and len(rows):
        hmget = _commands(_command_header("HMGET", 3), keys, _bulk(ts_field))
        stored = _run(client, (hmget.slice(start, stop - start) for start, stop in _chunks(len(rows))), 1, view)
        newer = pa.array(_nanos(times) > _nanos(pa.array([reply[0] for reply in stored], online_rows.BINARY)))
        rows, keys, times = rows.filter(newer), keys.filter(newer), times.filter(newer)
        advance(len(newer) - len(rows))
    fields = [_bulk(_mmh3(f"{name}:{feature}")) for feature, _, _ in rows.features]

    def hset(span: tuple[int, int]) -> pa.Array:
        start, stop = span
        chunk = [_command_header("HSET", 2 + 2 * len(fields) + 2), keys[start:stop]]
        for field, (_, kind, values) in zip(fields, rows.features, strict=True):
            chunk += [field, online_rows.value_protos(values[start:stop], kind)]
        chunk += [_bulk(ts_field), times[start:stop]]
        if online.key_ttl_seconds:
            chunk += [_command_header("EXPIRE", 3), keys[start:stop], _bulk(str(online.key_ttl_seconds).encode())]
        return _commands(*chunk)

    with ThreadPoolExecutor(1) as pool:  # the next chunk is built while Redis takes this one
        _run(client, _ahead(pool, hset, _chunks(len(rows))), 2 if online.key_ttl_seconds else 1, view, advance)
    return len(rows)


def _ahead(pool: ThreadPoolExecutor, function: Callable, items: Iterable) -> Iterator:
    """``function(item)`` of each item in order, the next one computed while the caller uses this one."""
    pending = None
    for item in items:
        future = pool.submit(function, item)
        if pending is not None:
            yield pending.result()
        pending = future
    if pending is not None:
        yield pending.result()


def _sqlite_parameters(rows: LatestRows) -> list[list[Any]]:
    """Columns of the upsert's parameters: entity key, event_ts, then the value and text of each feature."""
    columns = [rows.keys.to_pylist(), online_rows.sqlite_event_ts(rows.times).to_pylist()]
    for _, kind, values in rows.features:
        columns += [online_rows.value_protos(values, kind).to_pylist(), online_rows.value_texts(values, kind)]
    return columns


def _upsert(table: str, features: list[str], entities: int) -> str:
    """Feast's SQLite upsert, for ``entities`` entities of (key, event_ts, value and text of each feature)."""
    width = 2 + 2 * len(features)
    rows = ", ".join(
        f"(?{e * width + 1}, '{name.replace(chr(39), chr(39) * 2)}', ?{e * width + 3 + 2 * i}, "
        f"?{e * width + 4 + 2 * i}, ?{e * width + 2}, NULL)"
        for e in range(entities)
        for i, name in enumerate(features)
    )
    return (
        f'INSERT INTO "{table}" (entity_key, feature_name, value, value_text, event_ts, created_ts) VALUES {rows} '
        "ON CONFLICT(entity_key, feature_name) DO UPDATE SET value = excluded.value, "
        "value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts"
    )


def _chunks(n: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, CHUNK):
        yield start, min(start + CHUNK, n)


def _command_header(command: str, arguments: int) -> bytes:
    return b"*%d\r\n" % arguments + _bulk(command.encode())


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _commands(*parts: bytes | pa.Array) -> pa.Array:
    """Redis protocol commands, one row each, of constant bytes and values sent as bulk strings."""
    constant = online_rows.BINARY
    pieces: list[Any] = []
    for part in parts:
        if isinstance(part, bytes):
            pieces.append(pa.scalar(part, constant))
        else:
            length = pc.binary_length(part).cast(pa.string()).cast(constant)
            pieces += [
                pa.scalar(b"$", constant),
                length,
                pa.scalar(b"\r\n", constant),
                part,
                pa.scalar(b"\r\n", constant),
            ]
    return online_rows.join(pieces)


def _run(
    client: Any, chunks: Iterable[pa.Array], per_row: int, view: FeatureView, advance: Advance | None = None
) -> list[Any]:
    """Send chunks of rows of ``per_row`` commands, the next chunk on its way while this one's replies
    are read; return the replies in order."""
    from redis.exceptions import RedisError

    connection = client.connection_pool.get_connection()
    replies: list[Any] = []
    in_flight: list[int] = []
    try:
        for chunk in chunks:
            offsets = np.frombuffer(chunk.buffers()[1], np.int64)[chunk.offset : chunk.offset + len(chunk) + 1]
            connection.send_packed_command([memoryview(chunk.buffers()[2])[offsets[0] : offsets[-1]]])
            in_flight.append(len(chunk))
            if len(in_flight) > 1:
                replies += _replies(connection, in_flight.pop(0), per_row, advance)
        for rows in in_flight:
            replies += _replies(connection, rows, per_row, advance)
    except RedisError as exc:
        connection.disconnect()  # replies may be left unread
        raise FeatureStoreError(
            f'View "{view.name}": Redis failed while materializing ({exc}); check that Redis at '
            f"{client.connection_pool.connection_kwargs.get('host')} is up and writable, then run again"
        ) from None
    finally:
        client.connection_pool.release(connection)
    return replies


def _replies(connection: Any, rows: int, per_row: int, advance: Advance | None) -> list[Any]:
    replies = [connection.read_response() for _ in range(rows * per_row)]
    if advance:
        advance(rows)
    return replies


def _nanos(protos: pa.Array) -> np.ndarray:
    """Nanoseconds since the epoch of serialized Timestamps (0 where missing, as Feast reads them)."""

    def decode(data: bytes | None) -> int:
        proto = Timestamp()
        proto.ParseFromString(data or b"")
        return proto.seconds * 1_000_000_000 + proto.nanos

    unique = pc.unique(protos)
    decoded = np.array([decode(data) for data in unique.to_pylist()], np.int64)
    return decoded[pc.index_in(protos, unique).to_numpy(zero_copy_only=False)]
