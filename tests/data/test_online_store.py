"""Online materialization on both profiles (SQLite; Redis + PostgreSQL registry): Feast's readers
read back the latest offline values as of the materialization time, runs are incremental like
``feast materialize-incremental``, and the rows written are the ones Feast's own ``materialize``
writes, byte for byte."""

from __future__ import annotations

import dataclasses
import math
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import duckdb
import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.helpers import _redis_key
from feast.infra.online_stores.redis import RedisOnlineStore
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from feast.value_type import ValueType

from shoprank.errors import FeatureStoreError
from shoprank.features import online_rows
from shoprank.features.latest_rows import LatestRows
from shoprank.features.materialize import EPOCH, materialize
from shoprank.features.online_redis import write_redis
from shoprank.features.online_status import online_status
from shoprank.features.store import drop_project, feast, open_store, redis_client, source_file, write_config

SAMPLE = 150  # entities read back per view


@pytest.fixture(scope="module")
def definitions(tiny_shop, tmp_path_factory) -> list:
    """The entities and feature views of feature_repo/ over the tiny shop's marts (one ``feast apply``),
    their sources made absolute (registered relative to the workdir), so stores elsewhere read them."""
    settings = dataclasses.replace(tiny_shop, workdir=tmp_path_factory.mktemp("applied"))
    shutil.copytree(tiny_shop.marts, settings.marts)
    feast(settings, "apply")
    store = open_store(settings)
    views = store.list_feature_views()
    for view in views:
        view.batch_source.file_options.uri = str(source_file(view.batch_source, store.config.repo_path))
    return [*store.list_entities(), *views]


@pytest.fixture(params=["embedded", "production"])
def new_store(request, definitions, tiny_shop, tmp_path):
    """Makes feature stores of the profile, each a new project with the definitions applied;
    drops their online rows and registry entries afterwards."""
    if request.param == "production":
        request.getfixturevalue("production_servers")
    made = []

    def make():
        project = f"t_{uuid4().hex[:8]}"
        settings = dataclasses.replace(tiny_shop, workdir=tmp_path, profile=request.param, project=project)
        store = FeatureStore(repo_path=str(settings.workdir), fs_yaml_file=write_config(settings))
        store.apply(definitions)
        made.append(store)
        return settings, store

    yield make
    for store in made:
        if request.param == "production":
            drop_project(store)


def test_a_dropped_production_project_applies_again(production_servers, definitions, tiny_shop, tmp_path):
    """Dropping a project forgets all of it: the same project applies again (Feast's own
    delete_project left its views' version history, and the second apply failed on a duplicate key)."""
    settings = dataclasses.replace(tiny_shop, workdir=tmp_path, profile="production", project=f"t_{uuid4().hex[:8]}")
    for _ in range(2):
        store = FeatureStore(repo_path=str(settings.workdir), fs_yaml_file=write_config(settings))
        store.apply(definitions)
        applied = {view.name for view in store.list_feature_views()}
        assert applied == {item.name for item in definitions if isinstance(item, FeatureView)}
        drop_project(store)


def _views(store: FeatureStore) -> dict[str, FeatureView]:
    return {view.name: view for view in store.registry.list_feature_views(store.project, allow_cache=False)}


def _data_end(store: FeatureStore) -> datetime:
    paths = [view.batch_source.path for view in _views(store).values()]
    newest = duckdb.sql(f"select max(event_timestamp) from read_parquet({paths})").fetchall()[0][0]
    return newest.replace(tzinfo=UTC)


def _mart(view: FeatureView) -> pd.DataFrame:
    return pd.read_parquet(view.batch_source.path)


def _keys(view: FeatureView) -> list[str]:
    return [column.name for column in view.entity_columns]


def _latest(view: FeatureView, start: datetime, end: datetime) -> pd.DataFrame:
    """The latest mart row of each entity with an event time in [start, end], by pandas."""
    frame = _mart(view)
    times = frame["event_timestamp"]
    window = frame[(times >= start.replace(tzinfo=None)) & (times <= end.replace(tzinfo=None))]
    return window.sort_values("event_timestamp").groupby(_keys(view)).tail(1).set_index(_keys(view))


def _sample(view: FeatureView) -> list[dict]:
    """Entity keys spread over the whole mart: some have online values, some (expired, future) not."""
    keys = _mart(view)[_keys(view)].drop_duplicates().sort_values(_keys(view))
    return keys.iloc[:: max(1, len(keys) // SAMPLE)].to_dict("records")


def _plain(value):
    """One comparable form for values from the online store and from pandas: a missing value is None,
    a timestamp its whole seconds since the epoch (what Feast stores)."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.value // 10**9
    if isinstance(value, datetime):
        return int(value.timestamp())
    return value.item() if hasattr(value, "item") else value


def _read_back(store: FeatureStore, view: FeatureView, rows: list[dict]) -> list[dict]:
    features = [f"{view.name}:{field.name}" for field in view.features]
    online = store.get_online_features(features=features, entity_rows=rows).to_dict()
    return [{field.name: _plain(online[field.name][i]) for field in view.features} for i in range(len(rows))]


def _expected(view: FeatureView, latest: pd.DataFrame, rows: list[dict]) -> list[dict]:
    expected = []
    for row in rows:
        key = tuple(row[k] for k in _keys(view))
        key = key[0] if len(key) == 1 else key
        found = latest.loc[key] if key in latest.index else None
        expected.append({f.name: None if found is None else _plain(found[f.name]) for f in view.features})
    return expected


def test_online_values_are_the_latest_offline_values_within_the_ttl(new_store):
    settings, store = new_store()
    end = _data_end(store) - timedelta(days=2)  # later rows exist and must stay offline
    calls = []
    result = materialize(settings, end=end, progress=lambda done, view, total: calls.append((done, view, total)))
    assert result.end == end and result.online_store == {"embedded": "sqlite", "production": "redis"}[settings.profile]
    assert sum(done for done, _, _ in calls) == result.rows == calls[-1][2] > 0
    for run in result.views:
        view = _views(store)[run.view]
        assert run.start == (end - view.ttl if view.ttl else EPOCH)  # no TTL: every version ever
        latest = _latest(view, run.start, end)
        assert run.rows == len(latest)
        rows = _sample(view)
        expected = _expected(view, latest, rows)
        assert any(all(v is None for v in e.values()) for e in expected), "the sample should hold absent entities"
        assert _read_back(store, view, rows) == expected, view.name


def test_runs_are_incremental_and_a_run_without_new_data_writes_nothing(new_store):
    settings, store = new_store()
    data_end = _data_end(store)
    before = {status.view: status for status in online_status(settings)}
    assert all(s.materialized_until is None and s.entities == 0 and s.pending_rows > 0 for s in before.values())
    first = materialize(settings, end=data_end - timedelta(days=3))
    second = materialize(settings, end=data_end)
    assert all(run.start == first.end for run in second.views)
    assert sum(run.rows for run in second.views) > 0
    again = materialize(settings, end=data_end)
    later = materialize(settings, end=data_end + timedelta(days=1), views=["user_features", "item_features"])
    assert (
        again.rows == 0 and later.rows == 0 and [run.view for run in later.views] == ["user_features", "item_features"]
    )
    # Feast reads our intervals (its materialize-incremental starts where we ended), and we read Feast's
    views = _views(store)
    assert views["user_features"].most_recent_end_time == data_end + timedelta(days=1)
    assert views["user_category_features"].most_recent_end_time == data_end
    store.materialize_incremental(end_date=data_end + timedelta(days=2), feature_views=["user_category_features"])
    after_feast = materialize(settings, end=data_end + timedelta(days=2), views=["user_category_features"])
    assert after_feast.views[0].start == data_end + timedelta(days=2) and after_feast.rows == 0
    views = _views(store)
    statuses = {status.view: status for status in online_status(settings)}
    for run in first.views:
        view = views[run.view]
        latest = _latest(view, run.start, data_end)
        rows = _sample(view)
        assert _read_back(store, view, rows) == _expected(view, latest, rows), view.name
        status = statuses[run.view]
        assert status.entities == len(latest) and status.pending_rows == 0
        assert status.newest_value_at == latest["event_timestamp"].max().replace(tzinfo=UTC)


def test_status_reads_the_store_itself_and_a_rebuild_refills_what_it_lost(new_store):
    settings, store = new_store()
    materialize(settings)
    statuses = {status.view: status for status in online_status(settings)}
    for status in statuses.values():  # what the store holds agrees with the registry
        assert status.problem is None and status.stored >= status.entities > 0
        assert status.present == status.sampled == min(50, status.entities)
    if settings.profile == "embedded":  # tables dropped
        lost = ["item_pair_features", "user_features"]
        with sqlite3.connect(settings.workdir / "online_store.db") as conn:
            for view in lost:
                conn.execute(f"drop table {store.project}_{view}")
    else:  # Redis restarted empty (this project's keys only: the server is shared)
        lost = sorted(statuses)
        redis_client(store).delete(*_redis_keys(store))
    statuses = {status.view: status for status in online_status(settings)}
    for view in lost:
        assert statuses[view].present == 0 and "materialize --rebuild --view " + view in statuses[view].problem
        assert (statuses[view].stored is None) == (settings.profile == "embedded")
    assert materialize(settings).rows == 0  # the registry says everything is materialized
    rebuilt = materialize(settings, views=lost, rebuild=True)
    assert [run.rows for run in rebuilt.views] == [statuses[view].entities for view in lost]
    assert all(status.problem is None for status in online_status(settings))
    for run in rebuilt.views:  # each refilled as a first run would: [end - ttl, end]
        view = _views(store)[run.view]
        assert run.start == (rebuilt.end - view.ttl if view.ttl else EPOCH)
        latest, rows = _latest(view, run.start, rebuilt.end), _sample(view)
        assert _read_back(store, view, rows) == _expected(view, latest, rows), view.name


def test_rows_equal_feasts_own_materialization(new_store, caplog):
    settings, ours = new_store()
    _, theirs = new_store()
    result = materialize(settings, end=_data_end(ours) - timedelta(days=1))
    assert "refused RESTORE" not in caplog.text  # new keys went the fast way
    for run in result.views:
        theirs.materialize(run.start, run.end, feature_views=[run.view])
    for run in result.views:
        view = _views(ours)[run.view]
        rows = _sample(view)
        assert _read_back(ours, view, rows) == _read_back(theirs, view, rows), view.name
    if settings.profile == "embedded":
        with sqlite3.connect(settings.workdir / "online_store.db") as conn:
            for run in result.views:
                query = "select * from {}_{} order by entity_key, feature_name"
                mine = conn.execute(query.format(ours.project, run.view)).fetchall()
                assert len(mine) == run.rows * len(_views(ours)[run.view].features)
                assert mine == conn.execute(query.format(theirs.project, run.view)).fetchall(), run.view
    else:
        client, suffix = redis_client(ours), len(ours.project)
        keys = _redis_keys(ours)
        assert len(keys) == len(_redis_keys(theirs))
        hashes = [client.hgetall(key) for key in keys]  # one per entity key: views of an entity share it
        assert sum(field.startswith(b"_ts:") for fields in hashes for field in fields) == result.rows
        for key, fields in zip(keys, hashes, strict=True):
            assert fields == client.hgetall(key[:-suffix] + theirs.project.encode())
            assert client.dump(key) == client.dump(key[:-suffix] + theirs.project.encode())  # as Redis stores it


# (event time Redis holds, event time written): Feast writes when the new one is later, to the
# microsecond, or when the held one is missing or not after the epoch (it compares max(held, 0)).
HELD_AND_NEW = [
    (None, datetime(2025, 10, 2)),
    (datetime(2025, 10, 1), datetime(2025, 10, 2)),
    (datetime(2025, 10, 2), datetime(2025, 10, 2)),
    (datetime(2025, 10, 2, 0, 0, 0, 1), datetime(2025, 10, 2)),
    (datetime(2025, 10, 1, 23, 59, 59, 999_999), datetime(2025, 10, 2)),
    (datetime(1960, 1, 1, 0, 0, 0, 500_000), datetime(1960, 1, 1, 0, 0, 0, 250_000)),
    (datetime(1960, 1, 1, 0, 0, 0, 250_000), datetime(1960, 1, 1, 0, 0, 0, 500_000)),
    (datetime(1969, 12, 31, 23, 59, 59, 999_999), datetime(1970, 1, 1)),
    (datetime(1970, 1, 1), datetime(1950, 1, 1)),
    (datetime(2262, 1, 1), datetime(2025, 10, 2)),
]


@pytest.mark.parametrize("new_store", ["production"], indirect=True)
def test_redis_keeps_values_at_least_as_new_exactly_as_feast_does(new_store):
    _, feasts = new_store()
    _, ours = new_store()
    view = _views(ours)["user_features"]
    users = [f"held_{i}" for i in range(len(HELD_AND_NEW))]
    redis_store = RedisOnlineStore()
    for store in (feasts, ours):
        held = [
            (_key(user), {"views_1d": _int(-1)}, moment, None)
            for user, (moment, _) in zip(users, HELD_AND_NEW, strict=True)
            if moment
        ]
        redis_store.online_write_batch(store.config, view, held, None)
    new = [
        (_key(user), {"views_1d": _int(i)}, moment, None)
        for i, (user, (_, moment)) in enumerate(zip(users, HELD_AND_NEW, strict=True))
    ]
    redis_store.online_write_batch(feasts.config, view, new, None)
    rows = LatestRows(
        online_rows.entity_keys([("user_id", ValueType.STRING, pa.array(users))]),
        pa.array([moment for _, moment in HELD_AND_NEW], pa.timestamp("us")),
        [("views_1d", ValueType.INT64, pa.array(range(len(users)), pa.int64()))],
    )
    written = write_redis(ours.config, view, rows, lambda done: None)
    client = redis_client(ours)
    hashes = {
        store.project: [client.hgetall(key + store.project.encode()) for key in rows.keys.to_pylist()]
        for store in (feasts, ours)
    }
    assert hashes[ours.project] == hashes[feasts.project]
    assert written == 7  # all but the equal and the two later ones held


@pytest.mark.parametrize("new_store", ["production"], indirect=True)
def test_redis_keys_expire_as_feasts_do(new_store):
    """With key_ttl_seconds, a new key (written whole) and an existing one (updated field by field)
    hold Feast's fields, stored as Feast's, and expire when Feast's do."""
    _, feasts = new_store()
    _, ours = new_store()
    view = _views(ours)["user_features"]
    users, redis_store = ["held", "new"], RedisOnlineStore()
    for store in (feasts, ours):
        store.config.online_store.key_ttl_seconds = 3600
        redis_store.online_write_batch(store.config, view, [(_key("held"), {"views_1d": _int(-1)}, T1, None)], None)
        redis_client(store).persist(_redis_key(store.project, _key("held"), entity_key_serialization_version=3))
    new = [(_key(user), {"views_1d": _int(i)}, T2, None) for i, user in enumerate(users)]
    redis_store.online_write_batch(feasts.config, view, new, None)
    rows = LatestRows(
        online_rows.entity_keys([("user_id", ValueType.STRING, pa.array(users))]),
        pa.array([T2] * len(users), pa.timestamp("us")),
        [("views_1d", ValueType.INT64, pa.array(range(len(users)), pa.int64()))],
    )
    assert write_redis(ours.config, view, rows, lambda done: None) == 2
    client = redis_client(ours)
    for user in users:
        mine, theirs = (_redis_key(s.project, _key(user), entity_key_serialization_version=3) for s in (ours, feasts))
        assert client.hgetall(mine) == client.hgetall(theirs) and client.dump(mine) == client.dump(theirs), user
        assert 3590 < client.ttl(mine) <= 3600 and 3590 < client.ttl(theirs) <= 3600, user


@pytest.mark.parametrize("new_store", ["production"], indirect=True)
def test_a_redis_error_is_named_with_the_view_and_the_fix(new_store):
    _, store = new_store()
    keys = online_rows.entity_keys([("user_id", ValueType.STRING, pa.array(["u1", "u2"]))])
    redis_client(store).set(keys.to_pylist()[1] + store.project.encode(), "not a hash")
    rows = LatestRows(
        keys,
        pa.array([datetime(2025, 10, 2)] * 2, pa.timestamp("us")),
        [("views_1d", ValueType.INT64, pa.array([1, 2]))],
    )
    with pytest.raises(
        FeatureStoreError, match=r'View "user_features": Redis failed while materializing \(.*WRONGTYPE.*\); check '
    ):
        write_redis(store.config, _views(store)["user_features"], rows, lambda done: None)


T1, T2 = datetime(2025, 10, 1), datetime(2025, 10, 2)


def _key(user: str) -> EntityKey:
    return EntityKey(join_keys=["user_id"], entity_values=[Value(string_val=user)])


def _int(number: int) -> Value:
    return Value(int64_val=number)


@pytest.mark.parametrize("new_store", ["embedded"], indirect=True)  # checked before any store is touched
def test_errors_name_the_view_and_the_fix(new_store, tmp_path):
    settings, store = new_store()
    with pytest.raises(FeatureStoreError, match=r"Feature view\(s\) no_such_view not found online .* use one of"):
        materialize(settings, views=["no_such_view"])
    view = _views(store)["user_category_features"]
    mistyped = tmp_path / "mistyped.parquet"
    duckdb.sql(
        f"copy (select * replace (category_interactions_30d::double as category_interactions_30d) "
        f"from '{view.batch_source.path}') to '{mistyped}' (format parquet)"
    )
    view.batch_source.file_options.uri = str(mistyped)
    store.apply([view])
    with pytest.raises(FeatureStoreError) as error:
        materialize(settings, views=["user_category_features"])
    assert str(error.value) == (
        f'View "user_category_features": column "category_interactions_30d" of {mistyped} is DOUBLE, but the view '
        "declares INT64; cast it in the dbt model or change the field's dtype in feature_repo/"
    )
    mistyped.unlink()
    with pytest.raises(FeatureStoreError, match=f'View "user_category_features": mart {mistyped} does not exist; run'):
        materialize(settings)


def _redis_keys(store: FeatureStore) -> list[bytes]:
    return list(redis_client(store).scan_iter(match=b"*" + store.project.encode(), count=10_000))
