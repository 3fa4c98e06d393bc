"""Write a view's latest rows into Feast's Redis online store, as Feast's ``online_write_batch``.

One hash per entity key (serialized entity key + project), a field per feature (murmur3 of
``view:feature``) holding ``ValueProto`` bytes, and ``_ts:<view>`` holding the event time. As in
Feast, an entity is skipped when Redis already holds a value of the view at least as new (unless
``skip_dedup``), and keys expire after ``key_ttl_seconds`` when set.

Each round trip is one small Lua script over a chunk of entities (one reply per chunk rather than
one per entity), its arguments cut out of Arrow buffers built column-wise; the next chunk is built
while Redis runs this one.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name

from shoprank.errors import FeatureStoreError
from shoprank.features import online_rows
from shoprank.features.latest_rows import Advance, LatestRows, ahead, spans

CHUNK = 1_000  # entities per script call: Redis serves other clients between calls
# KEYS: entity keys. ARGV: field count n, expiry seconds (0: none), 1 to skip an entity whose stored
# event time is at least as new (Feast's check, which ignores stored times up to the epoch), the n
# fields (the last is _ts:<view>), then for each key its n values, its event time's seconds and
# nanos. Returns the entities written.
SET = """
local n, ttl, dedup = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == '1'
local function stored(data)  -- seconds and nanos of a serialized Timestamp if after the epoch, else nil
  if not data then return nil end
  local parts, i = {0, 0}, 1
  while i <= #data do
    local field, value, scale = math.floor(data:byte(i) / 8), 0, 1
    repeat
      i = i + 1
      local byte = data:byte(i)
      value, scale = value + byte % 128 * scale, scale * 128
    until byte < 128
    if scale > 2 ^ 63 then return nil end  -- a ten-byte varint: negative, before the epoch
    parts[field], i = value, i + 1
  end
  if parts[1] == 0 and parts[2] == 0 then return nil end
  return parts[1], parts[2]
end
local hash, written = {}, 0
for j = 1, n do hash[2 * j - 1] = ARGV[3 + j] end
for i, key in ipairs(KEYS) do
  local base = 3 + n + (i - 1) * (n + 2)
  local seconds, nanos = tonumber(ARGV[base + n + 1]), tonumber(ARGV[base + n + 2])
  local held_seconds, held_nanos
  if dedup then held_seconds, held_nanos = stored(redis.call('HGET', key, ARGV[3 + n])) end
  if not held_seconds or seconds > held_seconds or (seconds == held_seconds and nanos > held_nanos) then
    for j = 1, n do hash[2 * j] = ARGV[base + j] end
    redis.call('HSET', key, unpack(hash))
    if ttl > 0 then redis.call('EXPIRE', key, ttl) end
    written = written + 1
  end
end
return written
"""


def write_redis(config: RepoConfig, view: FeatureView, rows: LatestRows, advance: Advance) -> int:
    """Write ``rows`` into Redis hashes; return the entities written (those newer than what Redis holds).

    Raises:
        FeatureStoreError: Redis is unreachable, answers with an error, or runs as a cluster.
    """
    from feast.infra.online_stores.redis import RedisOnlineStore, RedisType
    from redis.exceptions import RedisError

    online = config.online_store
    if online.redis_type == RedisType.redis_cluster:
        raise FeatureStoreError(
            f'View "{view.name}": fast materialization does not support redis_type "redis_cluster"; '
            'use "feast materialize" for a Redis cluster'
        )
    name = compute_versioned_name(view, config.registry.enable_online_feature_view_versioning)
    fields = [_mmh3(f"{name}:{feature}") for feature, _, _ in rows.features] + [f"_ts:{name}".encode()]
    settings = [len(fields), online.key_ttl_seconds or 0, int(not online.skip_dedup)]
    arguments = b"".join(_bulk(argument) for argument in [str(setting).encode() for setting in settings] + fields)
    keys = _bulks(online_rows.join([rows.keys, pa.scalar(config.project.encode(), online_rows.BINARY)]))
    client = RedisOnlineStore()._get_client(online)  # Feast's own connection settings

    def call(span: tuple[int, int], script: bytes) -> tuple[list[Any], int]:
        """The EVALSHA of the write script on a chunk of entities, and their count."""
        part = rows.slice(*span)
        values = [online_rows.value_protos(values, kind) for _, kind, values in part.features]
        seconds, micros = np.divmod(part.times.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy(), 1_000_000)
        decimals = [pa.array(number).cast(pa.string()).cast(online_rows.BINARY) for number in (seconds, micros * 1000)]
        values = _bulks(*values, online_rows.timestamp_protos(part.times), *decimals)
        count = 3 + len(part) * (len(fields) + 3) + len(settings) + len(fields)
        head = b"*%d\r\n" % count + _bulk(b"EVALSHA") + _bulk(script) + _bulk(b"%d" % len(part))
        return [head, _data(keys[span[0] : span[1]]), arguments, _data(values)], len(part)

    try:
        script = client.script_load(SET).encode()
        with ThreadPoolExecutor(1) as pool:  # the next chunk is built while Redis runs this one
            chunks = ahead(pool, lambda span: call(span, script), spans(len(rows), CHUNK))
            return sum(_run(client, chunks, advance))
    except RedisError as exc:
        raise FeatureStoreError(
            f'View "{view.name}": Redis failed while materializing ({exc}); check that Redis at '
            f"{online.connection_string} is up and writable, then run again"
        ) from None


def _bulks(*columns: pa.Array) -> pa.Array:
    """Per row, each column's value as a Redis protocol bulk string (``$<length>\\r\\n<bytes>\\r\\n``)."""
    pieces: list[Any] = []
    for column in columns:
        length = pc.binary_length(column).cast(pa.string()).cast(online_rows.BINARY)
        pieces += [_scalar(b"$"), length, _scalar(b"\r\n"), column, _scalar(b"\r\n")]
    return online_rows.join(pieces)


def _run(client: Any, calls: Iterable[tuple[list[Any], int]], advance: Advance) -> list[Any]:
    """Send each call, the next one on its way while this one's reply is read; return the replies."""
    connection = client.connection_pool.get_connection()
    replies: list[Any] = []
    in_flight: list[int] = []
    try:
        for parts, entities in calls:
            connection.send_packed_command(parts)
            in_flight.append(entities)
            if len(in_flight) > 1:
                replies.append(connection.read_response())
                advance(in_flight.pop(0))
        for entities in in_flight:
            replies.append(connection.read_response())
            advance(entities)
    except Exception:
        connection.disconnect()  # replies may be left unread
        raise
    finally:
        client.connection_pool.release(connection)
    return replies


def _data(column: pa.Array) -> memoryview:
    """The bytes of a binary array's values, back to back, without copying."""
    offsets = np.frombuffer(column.buffers()[1], np.int64)[column.offset : column.offset + len(column) + 1]
    return memoryview(column.buffers()[2])[offsets[0] : offsets[-1]]


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _scalar(data: bytes) -> pa.Scalar:
    return pa.scalar(data, online_rows.BINARY)
