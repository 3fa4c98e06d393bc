"""Write a view's latest rows into Feast's Redis online store, as Feast's ``online_write_batch``.

One hash per entity key (serialized entity key + project), a field per feature (murmur3 of
``view:feature``) holding ``ValueProto`` bytes, and ``_ts:<view>`` holding the event time (a
``Timestamp``). As in Feast, an entity is skipped when Redis already holds a value of the view at
least as new (unless ``skip_dedup``), and keys expire after ``key_ttl_seconds`` when set.

Two ways to write an entity, both pipelined on one connection:

- A key that does not exist yet is created whole with ``RESTORE`` (and the TTL): its payload is
  the hash exactly as Redis serializes the one Feast's ``HSET`` makes (``DUMP`` returns the same
  bytes: a listpack of the fields in Feast's order), so Redis copies it in instead of inserting
  field by field, several times faster. Used when the server keeps such hashes as listpacks
  (Redis 7.0+, read from ``CONFIG GET``) and the entity's hash fits one. Redis refuses a
  ``RESTORE`` onto an existing key, so nothing is ever overwritten this way.
- Any other entity (its key exists, or its hash is no listpack) goes Feast's way: an ``HGET`` of
  its ``_ts:<view>`` (unless ``skip_dedup``), then for the newer ones an ``HSET`` of all fields
  (``_ts`` first, as Feast orders them) and an ``EXPIRE`` when keys expire.

When most keys of a chunk already exist (a later incremental run), later chunks skip the
``RESTORE`` attempt. All commands are built a column at a time with Arrow and NumPy, each entity's
command one element of a binary array (skipping entities is a filter); replies are read with
hiredis straight off the connection's socket (redis-py's per-reply reading costs more than Redis's
work), and the next chunk is built in a thread while Redis works on this one.
"""

from __future__ import annotations

import logging
import re
import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView, RepoConfig
from feast.infra.online_stores.helpers import _mmh3, compute_versioned_name
from google.protobuf.timestamp_pb2 import Timestamp

from shoprank.errors import FeatureStoreError
from shoprank.features import online_rows
from shoprank.features.latest_rows import Advance, LatestRows, ahead, spans

CHUNK = 10_000  # entities per pipelined batch of commands
# DUMP payload of a hash kept as a listpack: type byte, the listpack as an RDB string, RDB version
# (10: Redis 7.0, the first with listpack hashes; later versions load it), CRC-64 (Jones) of it all.
_HASH_LISTPACK, _RDB_VERSION = 16, 10
_INT64 = (-(2**63), 2**63 - 1)
_INTEGER = re.compile(rb"-?[0-9]+")  # strings a listpack would store as numbers: such fields go by HSET


def _crc64_tables() -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables of Redis's CRC-64 (Jones, reflected): a byte at a time, two bytes at a time."""
    byte = np.arange(256, dtype=np.uint64)
    for _ in range(8):
        byte = np.where(
            byte & np.uint64(1), (byte >> np.uint64(1)) ^ np.uint64(0x95AC9329AC4BC9B5), byte >> np.uint64(1)
        )
    pair = np.arange(1 << 16, dtype=np.uint64)
    first = byte[pair & np.uint64(0xFF)]
    return byte, byte[(first ^ (pair >> np.uint64(8))) & np.uint64(0xFF)] ^ (first >> np.uint64(8))


_CRC64, _CRC64_PAIRS = _crc64_tables()


class _Chunk(NamedTuple):
    """A chunk of entities, its RESTORE commands built when that way is on."""

    rows: LatestRows
    keys: pa.Array  # Redis keys
    restores: pa.Array | None  # RESTORE command of each entity in ``restorable``
    restorable: np.ndarray  # indices of the entities that have a RESTORE command


@dataclass
class _Writer:
    """How one view's entities are written: its fields (``_ts`` first), expiry, dedup, and the
    largest listpack hash the server keeps (None: never RESTORE)."""

    fields: list[bytes]
    project: bytes
    ttl: int
    dedup: bool
    listpack: tuple[int, int] | None  # (fields, bytes of the longest field or value)
    restore: bool = True  # off once most keys of a chunk existed

    def __post_init__(self) -> None:
        self.entries = [_scalar(_listpack_entry(field)) for field in self.fields]  # the fields in a listpack

    def build(self, span: tuple[int, int], rows: LatestRows) -> _Chunk:
        """The chunk's Redis keys, and RESTORE commands of the entities whose hash is a listpack."""
        part = rows.slice(*span)
        keys = online_rows.join([part.keys, _scalar(self.project)])
        if not (self.restore and self.listpack):
            return _Chunk(part, keys, None, np.arange(0))
        columns = _columns(part)
        fits = np.ones(len(part), bool)
        for protos, index in columns:
            fits &= (pc.binary_length(protos).to_numpy() <= self.listpack[1])[index]
        restorable = np.flatnonzero(fits)
        if len(restorable) < len(part):
            keys, columns = keys.take(restorable), [(protos, index[restorable]) for protos, index in columns]
        return _Chunk(part, keys, self._restores(keys, columns), restorable)

    def _restores(self, keys: pa.Array, columns: list[tuple[pa.Array, np.ndarray]]) -> pa.Array:
        """``RESTORE key ttl payload`` of each entity, the payload what ``DUMP`` returns for the hash
        Feast's ``HSET`` makes: its fields and values appended in order to an empty listpack."""
        n = len(keys)
        entries: list[Any] = []
        size = np.full(n, 6 + 1)  # the listpack: header, entries, end byte
        for field, (protos, index) in zip(self.entries, columns, strict=True):
            values = _listpack_entries(protos)  # of the distinct values
            entries += [field, values.take(index)]
            size += len(field.as_py()) + pc.binary_length(values).to_numpy()[index]
        header = np.empty((n, 6), np.uint8)
        header[:, :4] = size.astype("<u4").view(np.uint8).reshape(n, 4)
        header[:, 4:] = np.frombuffer(struct.pack("<H", 2 * len(self.fields)), np.uint8)
        length = _rdb_length(size)
        body = [_scalar(bytes([_HASH_LISTPACK])), online_rows.from_pieces([length, (header, np.full(n, 6))]), *entries]
        body.append(_scalar(b"\xff" + struct.pack("<H", _RDB_VERSION)))  # the listpack's end, the RDB version
        length = 1 + length[1] + size + 2
        crc = _crc64(body, length).astype("<u8").view(np.uint8).reshape(n, 8)
        return online_rows.join(
            [_scalar(b"*4\r\n" + _bulk(b"RESTORE")), *_bulk_pieces(keys), _scalar(_bulk(b"%d" % (self.ttl * 1000)))]
            + [_scalar(b"$"), _decimal(length + 8), _scalar(b"\r\n"), *body, _piece_rows((crc, np.full(n, 8)))]
            + [_scalar(b"\r\n")]
        )

    def update(self, wire: Wire, part: LatestRows, keys: pa.Array) -> int:
        """Feast's way for ``part`` (``keys``: its Redis keys): read the held event times, then write
        the newer entities with HSET (and EXPIRE). Return the entities written."""
        if self.dedup:
            read = [_scalar(b"*3\r\n" + _bulk(b"HGET")), *_bulk_pieces(keys), _scalar(_bulk(self.fields[0]))]
            wire.send(_data(online_rows.join(read)))
            newer = pa.array(_newer(wire.replies(len(part)), part.times))
            part, keys = part.filter(newer), keys.filter(newer)
        if not len(part):
            return 0
        key = _bulk_pieces(keys)
        pieces = [_scalar(b"*%d\r\n" % (2 + 2 * len(self.fields)) + _bulk(b"HSET")), *key]
        for field, (protos, index) in zip(self.fields, _columns(part), strict=True):
            pieces += [_scalar(_bulk(field)), online_rows.join(_bulk_pieces(protos)).take(index)]
        if self.ttl:
            pieces += [_scalar(b"*3\r\n" + _bulk(b"EXPIRE")), *key, _scalar(_bulk(b"%d" % self.ttl))]
        wire.send(_data(online_rows.join(pieces)))
        wire.replies(len(part) * (2 if self.ttl else 1))
        return len(part)


def _columns(rows: LatestRows) -> list[tuple[pa.Array, np.ndarray]]:
    """Each field's serialized distinct values and each entity's index into them: the event time
    (``Timestamp``), then the features (``ValueProto``). A column is serialized once per distinct
    value, its entities then share the bytes."""
    micros, index = np.unique(rows.times.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy(), return_inverse=True)
    columns = [(online_rows.timestamp_protos(pa.array(micros, pa.timestamp("us"))), index)]
    for _, kind, values in rows.features:
        distinct, index = online_rows.distinct(values, kind)
        columns.append((online_rows.value_protos(distinct, kind), index))
    return columns


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
    fields = [f"_ts:{name}".encode()] + [_mmh3(f"{name}:{feature}") for feature, _, _ in rows.features]
    client = RedisOnlineStore()._get_client(online)  # Feast's own connection settings
    try:
        listpack = _listpack_limits(client, fields)
        writer = _Writer(fields, config.project.encode(), online.key_ttl_seconds or 0, not online.skip_dedup, listpack)
        connection = client.connection_pool.get_connection()
        try:
            wire = Wire(connection._sock)  # redis-py has connected and authenticated it
            with ThreadPoolExecutor(1) as pool:  # the next chunk is built while Redis works on this one
                chunks = ahead(pool, lambda span: writer.build(span, rows), spans(len(rows), CHUNK))
                return _write(wire, writer, chunks, advance)
        finally:
            connection.disconnect()  # our reader, not redis-py's, consumed the replies
            client.connection_pool.release(connection)
    except (RedisError, OSError) as exc:
        raise FeatureStoreError(
            f'View "{view.name}": Redis failed while materializing ({exc}); check that Redis at '
            f"{online.connection_string} is up and writable, then run again"
        ) from None


def _write(wire: Wire, writer: _Writer, chunks: Iterable[_Chunk], advance: Advance) -> int:
    """Each chunk: RESTORE what it can, then Feast's way for the rest. Return the entities written."""
    written = 0
    for chunk in chunks:
        rest = np.ones(len(chunk.rows), bool)
        if chunk.restores is not None and len(chunk.restores):
            wire.send(_data(chunk.restores))
            replies = wire.replies(len(chunk.restores), errors=True)
            refused = [i for i, reply in enumerate(replies) if reply != b"OK"]
            rest[np.delete(chunk.restorable, refused)] = False
            unexpected = [replies[i] for i in refused if not str(replies[i]).startswith("BUSYKEY")]
            if unexpected:  # not allowed, or a payload this server does not load: Feast's way from now on
                logging.getLogger(__name__).warning("Redis refused RESTORE (%s); writing with HSET", unexpected[0])
            if unexpected or len(refused) * 2 > len(chunk.restores):  # or most keys exist: a later run
                writer.restore = False
        if rest.any():
            indices = pa.array(np.flatnonzero(rest))
            written += writer.update(wire, chunk.rows.take(indices), chunk.keys.take(indices))
        written += len(chunk.rows) - int(rest.sum())
        advance(len(chunk.rows))
    return written


def _listpack_limits(client: Any, fields: list[bytes]) -> tuple[int, int] | None:
    """The largest hash the server keeps as a listpack, or None when RESTORE is not to be used: the
    server is older than 7.0 or hides its configuration, the view has more fields than a listpack
    holds, or a field is a number (a listpack would store it as one)."""
    from redis.exceptions import ResponseError

    try:
        config = client.config_get("hash-max-listpack-*")
        limits = int(config["hash-max-listpack-entries"]), int(config["hash-max-listpack-value"])
    except (ResponseError, KeyError, ValueError):
        return None
    if len(fields) > limits[0] or any(len(f) > limits[1] or _INTEGER.fullmatch(f) for f in fields):
        return None
    return limits if limits[1] < 4096 else (limits[0], 4095)  # longer entries take another encoding


def _newer(held: list[bytes | None], times: pa.Array) -> np.ndarray:
    """Whether to write each entity, by Feast's rule: its event time (nanoseconds) is later than the
    held ``_ts`` (nanoseconds), or the held one is missing or not after the epoch (Feast compares
    with ``max(held, 0)`` and writes when that is 0)."""
    stored = pa.array(held, pa.binary())
    write = stored.is_null().to_numpy(zero_copy_only=False)
    if write.all():
        return write
    micros = times.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy()
    unique = pc.unique(stored.drop_null())
    after = np.empty(len(unique), np.int64)  # write when the event time in microseconds exceeds this
    for index, data in enumerate(unique.to_pylist()):
        proto = Timestamp.FromString(data)
        nanos = proto.seconds * 1_000_000_000 + proto.nanos
        after[index] = _INT64[0] if nanos <= 0 else min(nanos // 1000, _INT64[1])  # us*1000 > n <=> us > n//1000
    threshold = after[pc.index_in(stored, unique).fill_null(0).to_numpy()]
    return write | (micros > threshold)


def _listpack_entry(data: bytes) -> bytes:
    """A string as a listpack entry: its encoding, bytes and back length."""
    return _listpack_entries(pa.array([data], online_rows.BINARY))[0].as_py()


def _listpack_entries(strings: pa.Array) -> pa.Array:
    """Each string as a listpack entry: its encoding, bytes and back length."""
    lengths = pc.binary_length(strings).to_numpy()
    head = _listpack_head(lengths)
    return online_rows.join(
        [online_rows.from_pieces([head]), strings, online_rows.from_pieces([_listpack_back(head[1] + lengths)])]
    )


def _listpack_head(lengths: np.ndarray) -> online_rows.Piece:
    """Listpack string encodings: 6-bit length below 64 bytes, else 12-bit (below 4096)."""
    short = lengths < 64
    head = np.stack([np.where(short, 0x80 | lengths, 0xE0 | (lengths >> 8)), lengths & 0xFF], axis=1)
    return head.astype(np.uint8), np.where(short, 1, 2)


def _listpack_back(lengths: np.ndarray) -> online_rows.Piece:
    """Listpack back lengths (of encoding + bytes): one byte up to 127, else two (below 16383)."""
    one = lengths <= 127
    back = np.stack([np.where(one, lengths, lengths >> 7), (lengths & 127) | 128], axis=1)
    return back.astype(np.uint8), np.where(one, 1, 2)


def _rdb_length(lengths: np.ndarray) -> online_rows.Piece:
    """RDB length encodings: 6 bits below 64, 14 bits below 16384, else 0x80 and 32 bits big-endian."""
    small, medium = lengths < 64, lengths < 16384
    big = lengths.astype(">u4").view(np.uint8).reshape(-1, 4)
    encoded = np.zeros((len(lengths), 5), np.uint8)
    encoded[:, 0] = np.where(small, lengths, np.where(medium, 0x40 | (lengths >> 8), 0x80))
    encoded[:, 1] = np.where(medium, lengths & 0xFF, big[:, 0])
    encoded[:, 2:] = big[:, 1:]
    return encoded, np.where(small, 1, np.where(medium, 2, 5))


def _crc64(pieces: list[Any], lengths: np.ndarray) -> np.ndarray:
    """Redis's CRC-64 of each row of ``pieces`` joined (``lengths``: their lengths), computed for all
    rows at once two bytes at a time. Rows are left-padded with zeros to one width (leading zeros
    leave a CRC that starts at zero unchanged), then turned so each position is contiguous."""
    n, width = len(lengths), int(lengths.max(initial=0) + 1) // 2 * 2
    pad = np.zeros(n + 1, np.int64)
    np.cumsum(width - lengths, out=pad[1:])
    padding = pa.Array.from_buffers(online_rows.BINARY, n, [None, pa.py_buffer(pad), pa.py_buffer(bytes(int(pad[-1])))])
    rows = online_rows.join([padding, *pieces])
    pairs = np.frombuffer(rows.buffers()[2], "<u2", count=n * width // 2).reshape(n, width // 2)
    crc = np.zeros(n, np.uint64)
    for pair in np.ascontiguousarray(pairs.T):
        crc = _CRC64_PAIRS[(crc ^ pair) & np.uint64(0xFFFF)] ^ (crc >> np.uint64(16))
    return crc


def _piece_rows(piece: online_rows.Piece) -> pa.Array:
    """A binary array of a piece's rows (directly when each is one byte)."""
    matrix, lengths = piece
    if not (lengths == 1).all():
        return online_rows.from_pieces([piece])
    offsets = np.arange(len(lengths) + 1, dtype=np.int64)
    data = np.ascontiguousarray(matrix[:, 0])
    return pa.Array.from_buffers(online_rows.BINARY, len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _decimal(numbers: np.ndarray | pa.Array) -> pa.Array:
    """Each number in decimal digits, as bytes."""
    return pa.array(numbers).cast(pa.string()).cast(online_rows.BINARY)


class Wire:
    """Commands written to, and replies read from, a connected Redis socket (``connection``: the
    redis-py connection that opened it, closed with ``close``)."""

    def __init__(self, sock: Any, connection: Any = None) -> None:
        import hiredis

        self.sock, self.connection, self.reader = sock, connection, hiredis.Reader()
        self.buffer, self.error = bytearray(1 << 20), hiredis.ReplyError

    def close(self) -> None:
        if self.connection is not None:
            self.connection.disconnect()

    def send(self, data: memoryview) -> None:
        self.sock.sendall(data)

    def replies(self, count: int, errors: bool = False) -> list[Any]:
        """The next ``count`` replies, error replies among them when ``errors``.

        Raises:
            redis.exceptions.ResponseError: One of them is an error (unless ``errors``).
            ConnectionError: Redis closed the connection.
        """
        from redis.exceptions import ResponseError

        replies: list[Any] = []
        while len(replies) < count:
            reply = self.reader.gets()
            if reply is False:
                received = self.sock.recv_into(self.buffer)
                if not received:
                    raise ConnectionError("Redis closed the connection")
                self.reader.feed(self.buffer, 0, received)
            elif not errors and isinstance(reply, self.error):
                raise ResponseError(str(reply))
            else:
                replies.append(reply)
        return replies


def _bulk_pieces(column: pa.Array) -> list[Any]:
    """The pieces that make each row a Redis protocol bulk string (``$<length>\\r\\n<bytes>\\r\\n``)."""
    return [_scalar(b"$"), _decimal(pc.binary_length(column)), _scalar(b"\r\n"), column, _scalar(b"\r\n")]


def _data(column: pa.Array) -> memoryview:
    """The bytes of a binary array's values, back to back, without copying."""
    offsets = np.frombuffer(column.buffers()[1], np.int64)[column.offset : column.offset + len(column) + 1]
    return memoryview(column.buffers()[2])[offsets[0] : offsets[-1]]


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _scalar(data: bytes) -> pa.Scalar:
    return pa.scalar(data, online_rows.BINARY)
