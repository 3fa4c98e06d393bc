"""The column-wise serialization writes exactly the bytes Feast writes, for every type we use.

Feast's side is its own materialization code: ``_convert_arrow_to_proto`` (what ``feast
materialize`` turns offline rows into) and the SQLite store's ``online_write_batch``.
"""

from __future__ import annotations

import sqlite3
import struct
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from feast import Entity, FeatureView, Field, FileSource, RepoConfig
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.helpers import _redis_key, extract_text_and_num
from feast.infra.online_stores.sqlite import SqliteOnlineStore, SqliteOnlineStoreConfig
from feast.protos.feast.types.Value_pb2 import Value
from feast.types import Float64, Int64, String, UnixTimestamp
from feast.utils import _convert_arrow_to_proto, make_tzaware
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from shoprank.features import online_redis, online_rows

T0 = datetime(2025, 9, 30)
FEATURES = {"count": Int64, "rate": Float64, "title": String, "seen_at": UnixTimestamp}
COLUMNS = {
    "count": pa.array([0, -1, 127, 128, 2**53, None, 300, -(2**40)], pa.int64()),
    "rate": pa.array([0.0, -0.0, 0.1 + 0.2, None, float("nan"), float("inf"), 1e-300, -2.5], pa.float64()),
    "title": pa.array(["", "a", "é" * 70, None, "x" * 200, "quote ' and \"", "\u0000", "日本"], pa.string()),
    "seen_at": pa.array(
        [T0, None, datetime(1960, 1, 1, 0, 0, 0, 500), T0 + timedelta(microseconds=999_999), datetime(1970, 1, 1)]
        + [datetime(2038, 1, 19, 3, 14, 8), datetime(1969, 12, 31, 23, 59, 59, 1), T0],
        pa.timestamp("us"),
    ),
}
KEY_DTYPES = {ValueType.STRING: String, ValueType.INT64: Int64}
EVENT_TIMES = pa.array([T0 - timedelta(days=d % 3, microseconds=d) for d in range(8)], pa.timestamp("us"))


def _view(keys: dict[str, ValueType], columns: dict[str, pa.Array]) -> tuple[FeatureView, pa.RecordBatch]:
    entities = [Entity(name=f"e_{key}", join_keys=[key], value_type=value_type) for key, value_type in keys.items()]
    view = FeatureView(
        name="unit_view",
        entities=entities,
        ttl=timedelta(days=1),
        source=FileSource(name="unit", path="unit.parquet", timestamp_field="event_timestamp"),
        schema=[Field(name=key, dtype=KEY_DTYPES[t]) for key, t in keys.items()]
        + [Field(name=name, dtype=FEATURES[name]) for name in columns],
    )
    key_values = {
        "user_id": pa.array([f"u{i}" for i in range(8)]),
        "category_path": pa.array(["A > B"] * 4 + ["é > ü"] * 4),
    }
    key_values["item_no"] = pa.array([0, 1, -1, 2**40, 5, 6, 7, 8], pa.int64())
    batch = pa.RecordBatch.from_pydict(
        {**{key: key_values[key] for key in keys}, **columns, "event_timestamp": EVENT_TIMES}
    )
    return view, batch


def _feast_rows(keys: dict[str, ValueType], columns: dict[str, pa.Array]):
    view, batch = _view(keys, columns)
    return view, batch, _convert_arrow_to_proto(batch, view, keys)


@pytest.mark.parametrize(
    "keys",
    [
        {"user_id": ValueType.STRING},
        {"user_id": ValueType.STRING, "category_path": ValueType.STRING},
        {"item_no": ValueType.INT64, "category_path": ValueType.STRING},
    ],
    ids=["one string key", "two string keys", "int and string keys"],
)
def test_entity_keys_and_redis_keys_equal_feast(keys):
    _, batch, rows = _feast_rows(keys, {"count": COLUMNS["count"]})
    ours = online_rows.entity_keys([(key, value_type, batch.column(key)) for key, value_type in keys.items()])
    assert ours.to_pylist() == [serialize_entity_key(key, entity_key_serialization_version=3) for key, *_ in rows]
    redis_keys = [key + b"project_x" for key in ours.to_pylist()]
    assert redis_keys == [_redis_key("project_x", key, entity_key_serialization_version=3) for key, *_ in rows]


@pytest.mark.parametrize("name", list(COLUMNS))
@pytest.mark.parametrize("all_null", [False, True], ids=["values", "all null"])
def test_value_protos_and_texts_equal_feast(name, all_null):
    column = pa.nulls(8, COLUMNS[name].type) if all_null else COLUMNS[name]
    _, _, rows = _feast_rows({"user_id": ValueType.STRING}, {name: column})
    value_type = FEATURES[name].to_value_type()
    expected = [values[name] for _, values, _, _ in rows]
    assert online_rows.value_protos(column, value_type).to_pylist() == [v.SerializeToString() for v in expected]
    texts = [extract_text_and_num(v, False)[0] for v in expected]
    assert online_rows.value_texts(column, value_type) == texts
    if value_type in (ValueType.INT64, ValueType.DOUBLE):  # the SQLite writer binds "" and NULLIFs it
        assert online_rows.value_texts(column, value_type, missing="") == [text or "" for text in texts]


def test_event_timestamps_equal_feast_redis_protos():
    _, _, rows = _feast_rows({"user_id": ValueType.STRING}, {"count": COLUMNS["count"]})
    expected = []
    for _, _, moment, _ in rows:
        proto = Timestamp()
        proto.FromDatetime(make_tzaware(moment))
        expected.append(proto.SerializeToString())
    assert online_rows.timestamp_protos(EVENT_TIMES).to_pylist() == expected


def test_value_protos_of_narrower_integers_and_zoned_timestamps():
    assert online_rows.value_protos(pa.array([1, None], pa.int32()), ValueType.INT64).to_pylist() == [b" \x01", b""]
    moment = datetime(2025, 1, 1, tzinfo=UTC)
    zoned = pa.array([moment], pa.timestamp("us", tz="UTC"))
    expected = Value(unix_timestamp_val=int(moment.timestamp())).SerializeToString()
    assert online_rows.value_protos(zoned, ValueType.UNIX_TIMESTAMP).to_pylist() == [expected]


def test_sqlite_rows_equal_feast_online_write_batch(tmp_path):
    """Every column of the rows Feast's SQLite store writes: key, name, value, value_text, event_ts."""
    keys = {"user_id": ValueType.STRING, "category_path": ValueType.STRING}
    view, batch, rows = _feast_rows(keys, COLUMNS)
    config = RepoConfig(
        project="unit",
        provider="local",
        registry=str(tmp_path / "registry.db"),
        online_store=SqliteOnlineStoreConfig(path=str(tmp_path / "online.db")),
        entity_key_serialization_version=3,
    )
    store = SqliteOnlineStore()
    store.update(config, [], [view], [], [], partial=False)
    store.online_write_batch(config, view, rows, None)
    table = "unit_unit_view"
    with sqlite3.connect(tmp_path / "online.db") as conn:
        feast_rows = conn.execute(f"SELECT * FROM {table} ORDER BY entity_key, feature_name").fetchall()
        conn.execute(f"DELETE FROM {table}")
        ours = _our_sqlite_rows(keys, batch)
        conn.executemany(f"INSERT INTO {table} VALUES (?, ?, ?, ?, NULL, ?, NULL)", ours)
        our_rows = conn.execute(f"SELECT * FROM {table} ORDER BY entity_key, feature_name").fetchall()
    assert len(feast_rows) == 8 * len(COLUMNS)
    assert our_rows == feast_rows


def _our_sqlite_rows(keys, batch):
    entity_keys = online_rows.entity_keys([(key, t, batch.column(key)) for key, t in keys.items()]).to_pylist()
    event_ts = online_rows.sqlite_event_ts(batch.column("event_timestamp")).to_pylist()
    rows = []
    for name, dtype in FEATURES.items():
        value_type = dtype.to_value_type()
        values = online_rows.value_protos(batch.column(name), value_type).to_pylist()
        texts = online_rows.value_texts(batch.column(name), value_type)
        rows += list(zip(entity_keys, [name] * 8, values, texts, event_ts, strict=True))
    return rows


def test_varints_cover_every_length():
    numbers = np.array([0, 1, 2**7 - 1, 2**7, 2**14, 2**21, 2**28, 2**35, 2**56, 2**63 - 1, -1, -(2**63)])
    ours = online_rows.value_protos(pa.array(numbers, pa.int64()), ValueType.INT64).to_pylist()
    assert ours == [Value(int64_val=int(n)).SerializeToString() for n in numbers]


@pytest.mark.parametrize("name", list(COLUMNS))
def test_distinct_values_serialize_to_each_rows_bytes(name):
    """Writers serialize a column's distinct values once: -0.0 and 0.0, NaN and null stay apart as needed."""
    column = pa.concat_arrays([COLUMNS[name], COLUMNS[name]])
    value_type = FEATURES[name].to_value_type()
    distinct, index = online_rows.distinct(column, value_type)
    assert len(distinct) < len(column)
    assert online_rows.value_protos(distinct, value_type).take(index) == online_rows.value_protos(column, value_type)
    texts = online_rows.value_texts(distinct, value_type)
    assert [texts[i] for i in index] == online_rows.value_texts(column, value_type)


# DUMP of the hash Feast's HSET makes, from Redis 7.0.15: HSET key _ts:x <Timestamp> <field> <ValueProto>
DUMP = b"\x10  \x00\x00\x00\x04\x00\x85_ts:x\x06\x86\x08\x80\xde\xb8\xc7\x06\x07\x84\x01\x02\x03\x04\x05\x82 \x05\x03\xff\n\x00\xf7?qu\x91\xfdF\xc2"


def test_restore_payloads_are_what_redis_dumps():
    """The Redis writer creates new keys with RESTORE: its payload must be Redis's own DUMP of the
    hash (a listpack of the fields in Feast's order), checked against a captured DUMP and, for
    longer values and hashes, against a byte-by-byte listpack and CRC-64 written here."""
    fields = [b"_ts:x", b"\x01\x02\x03\x04"]
    assert _restore_payloads(fields, [[b"\x08\x80\xde\xb8\xc7\x06"], [b" \x05"]]) == [DUMP]
    fields = [b"_ts:y"] + [bytes([i]) * 4 for i in range(1, 120)]
    values = [[b"x" * (n % 300) for n in range(k, k + 40)] for k in range(len(fields))]  # up to 299 bytes
    expected = [_dump([v for pair in zip(fields, row, strict=True) for v in pair]) for row in zip(*values, strict=True)]
    assert _restore_payloads(fields, values) == expected


def _restore_payloads(fields: list[bytes], values: list[list[bytes]]) -> list[bytes]:
    writer = online_redis._Writer(fields, b"", 0, True, (512, 4095))
    columns = [(pa.array(column, online_rows.BINARY), np.arange(len(column))) for column in values]
    commands = writer._restores(pa.array([b"k"] * len(values[0]), online_rows.BINARY), columns).to_pylist()
    return [_arguments(command)[-1] for command in commands]


def _arguments(command: bytes) -> list[bytes]:
    """The arguments of a command in the Redis protocol (an array of bulk strings)."""
    count, rest = command[1:].split(b"\r\n", 1)
    arguments = []
    for _ in range(int(count)):
        length, rest = rest[1:].split(b"\r\n", 1)
        arguments.append(rest[: int(length)])
        assert rest[int(length) : int(length) + 2] == b"\r\n"
        rest = rest[int(length) + 2 :]
    assert rest == b""
    return arguments


def _dump(items: list[bytes]) -> bytes:
    """Redis's DUMP of a listpack hash holding ``items`` (field, value, ...), one byte at a time."""
    entries = b""
    for item in items:
        head = bytes([0x80 | len(item)]) if len(item) < 64 else bytes([0xE0 | len(item) >> 8, len(item) & 0xFF])
        size = len(head) + len(item)
        entries += head + item + (bytes([size]) if size < 128 else bytes([size >> 7, size & 127 | 128]))
    listpack = struct.pack("<IH", 6 + len(entries) + 1, len(items)) + entries + b"\xff"
    n = len(listpack)
    length = bytes([n]) if n < 64 else bytes([0x40 | n >> 8, n & 0xFF]) if n < 16384 else b"\x80" + n.to_bytes(4, "big")
    payload = b"\x10" + length + listpack + b"\x0a\x00"
    crc = 0
    for byte in payload:
        crc ^= byte
        for _ in range(8):
            crc = crc >> 1 ^ 0x95AC9329AC4BC9B5 if crc & 1 else crc >> 1
    return payload + struct.pack("<Q", crc)
