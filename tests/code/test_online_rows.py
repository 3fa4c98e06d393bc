"""The column-wise serialization writes exactly the bytes Feast writes, for every type we use.

Feast's side is its own materialization code: ``_convert_arrow_to_proto`` (what ``feast
materialize`` turns offline rows into) and the SQLite store's ``online_write_batch``.
"""

from __future__ import annotations

import sqlite3
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

from shoprank.features import online_rows

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
