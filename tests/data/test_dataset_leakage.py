"""No feature value from after a row's event_timestamp, and none older than the view's TTL.

A hand-made store where leakage or staleness would change the answer, checked against both our
engine and Feast; and a property over random event orders against a brute-force oracle of
Feast's rule: the latest feature row with ``feature_ts <= entity_ts`` and
``feature_ts >= entity_ts - ttl``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from feast import Entity, FeatureService, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.infra.offline_stores.duckdb import DuckDBOfflineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.types import Int64, String
from feast.value_type import ValueType
from hypothesis import given, settings
from hypothesis import strategies as st

from training.dataset import ENTITIES, entity_table
from training.pit import CHUNK, connect, join_chunk
from training.plan import plan_views, resolve

START = datetime(2025, 1, 1)
DAY = timedelta(days=1)
TICK = timedelta(microseconds=1)
USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING)

# (user, when the value became known, clicks); written out of order
CLICKS = [("u1", START + 3 * DAY, 3), ("u2", START + DAY, 10), ("u1", START + DAY, 1), ("u1", START + 2 * DAY, 2)]
# (user, event_timestamp, the only right answer with a TTL of 2 days)
CASES = [
    ("u1", START + DAY - TICK, None),  # before any value
    ("u1", START + 2 * DAY - TICK, 1),  # the value of day 2 is not known yet
    ("u1", START + 2 * DAY, 2),  # known at that very moment
    ("u1", START + 2 * DAY, 2),  # a repeated row is a row of its own
    ("u1", START + 3 * DAY + DAY / 2, 3),
    ("u1", START + 5 * DAY, 3),  # exactly the TTL old: still valid
    ("u1", START + 5 * DAY + TICK, None),  # expired: missing, not the stale 3
    ("u2", START + 2 * DAY, 10),
    ("u2", START + 4 * DAY, None),
    ("u3", START + 2 * DAY, None),  # never seen
]


def clicks_view(path: Path, ttl: timedelta | None) -> FeatureView:
    source = FileSource(name="clicks", path=str(path), timestamp_field="event_timestamp")
    schema = [Field(name="user_id", dtype=String), Field(name="clicks", dtype=Int64)]
    return FeatureView(name="user_clicks", entities=[USER], ttl=ttl, source=source, schema=schema)


def write_clicks(path: Path, rows: list[tuple[str, datetime, int]]) -> None:
    users, stamps, clicks = zip(*rows, strict=True) if rows else ([], [], [])
    table = pa.table(
        {
            "user_id": pa.array(users, pa.string()),
            "event_timestamp": pa.array(stamps, pa.timestamp("us")),
            "clicks": pa.array(clicks, pa.int64()),
        }
    )
    pq.write_table(table, path)


def ours(con, plan, rows: pd.DataFrame, chunk_rows: int = 1_000) -> pd.DataFrame:
    """Our engine over entity rows (each its own group), every chunk, in row order."""
    con.register("rows", rows)
    entity_table(con, "select *, row_number() over () - 1 as __row, __row::varchar as query_id from rows", chunk_rows)
    chunks = [c for (c,) in con.sql(f"select distinct {CHUNK} from {ENTITIES} order by 1").fetchall()]
    return pd.concat([join_chunk(con, plan, ENTITIES, c).to_pandas() for c in chunks], ignore_index=True)


def values(column: pd.Series) -> list[int | None]:
    return [None if pd.isna(v) else int(v) for v in column]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    """A Feast store of one view over the hand-made clicks, with a TTL of 2 days."""
    folder = tmp_path_factory.mktemp("leakage")
    write_clicks(folder / "clicks.parquet", CLICKS)
    config = RepoConfig(
        project="leakage",
        provider="local",
        registry=str(folder / "registry.db"),
        offline_store=DuckDBOfflineStoreConfig(),
        online_store=SqliteOnlineStoreConfig(path=str(folder / "online.db")),
        entity_key_serialization_version=3,
        repo_path=str(folder),
    )
    view = clicks_view(folder / "clicks.parquet", ttl=2 * DAY)
    feature_store = FeatureStore(config=config)
    feature_store.apply([USER, view, FeatureService(name="clicks_v1", features=[view])])
    return feature_store


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory):
    with connect(tmp_path_factory.mktemp("spill")) as connection:
        yield connection


def test_hand_made_leakage_and_ttl_cases_match_feast(store, con):
    rows = pd.DataFrame({"user_id": [c[0] for c in CASES], "event_timestamp": [c[1] for c in CASES]})
    expected = [c[2] for c in CASES]
    frame = ours(con, resolve(store, "clicks_v1"), rows, chunk_rows=3)
    assert values(frame["user_clicks__clicks"]) == expected
    assert frame["event_timestamp"].tolist() == [pd.Timestamp(t, tz="UTC") for t in rows["event_timestamp"]]
    service = store.get_feature_service("clicks_v1")
    theirs = store.get_historical_features(
        rows.assign(order=range(len(rows))), features=service, full_feature_names=True
    )
    assert values(theirs.to_df().sort_values("order")["user_clicks__clicks"]) == expected


@settings(max_examples=100, deadline=None)
@given(
    clicks=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 48)), unique=True, max_size=40),
    rows=st.lists(st.tuples(st.sampled_from("abcd"), st.integers(-2, 60)), min_size=1, max_size=25),
    ttl_hours=st.integers(0, 30),
    chunk_rows=st.integers(1, 12),
    data=st.data(),
)
def test_random_event_orders_never_leak(tmp_path_factory, con, clicks, rows, ttl_hours, chunk_rows, data):
    """Values (the hour each became known) are the latest known at the row's time, within the TTL
    (a TTL of 0 means none, as in Feast)."""
    path = tmp_path_factory.getbasetemp() / "property-clicks.parquet"
    order = data.draw(st.permutations(clicks))
    write_clicks(path, [(user, START + timedelta(hours=h), h) for user, h in order])
    ttl = timedelta(hours=ttl_hours)
    plan = plan_views("property", ["user_clicks:clicks"], [clicks_view(path, ttl)], [])
    entities = pd.DataFrame(
        {"user_id": [u for u, _ in rows], "event_timestamp": [START + timedelta(hours=h) for _, h in rows]}
    )
    found = values(ours(con, plan, entities, chunk_rows)["user_clicks__clicks"])
    assert len(found) == len(rows)
    for (user, hour), value in zip(rows, found, strict=True):
        known = [h for u, h in clicks if u == user and h <= hour and (not ttl_hours or h >= hour - ttl_hours)]
        assert value == (max(known) if known else None)
        assert value is None or value <= hour
