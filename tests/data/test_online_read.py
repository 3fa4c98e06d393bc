"""The fast online read equals Feast's ``get_online_features`` on both profiles (SQLite; Redis),
value for value, on random requests: known, unknown and anonymous users, items outside the
catalog, with and without a query, at request times in whole seconds as the service's clock gives
them (Feast's online read cuts them to seconds before its on-demand views; training does not); and
values cached in memory are re-read after ``CACHE_SECONDS``."""

from __future__ import annotations

import random
import shutil
import sqlite3
import struct
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value

import serving.online
from serving.features import online_features, request_rows
from serving.online import OnlineReader
from shoprank.features.bm25 import TitleIndex
from shoprank.features.store import open_store
from shoprank.warehouse import read
from training.plan import resolve
from training.signals import catalog_index

REQUESTS = 25  # per service and profile
BUDGET = 5.0  # seconds a read may take: these tests check values, and a loaded machine stalls reads past 20 ms
SERVICES = ("ranker_v1", "ranker_v2", "search_ranker_v2", "search_ranker_v3")


@pytest.fixture(scope="module", params=["embedded", "production"])
def shop(request):
    settings = request.getfixturevalue("tiny_shop" if request.param == "embedded" else "production_shop")
    catalog = read(settings.warehouse, "select * from marts.dim_items")
    users = read(settings.warehouse, "select user_id from marts.dim_users order by user_id")["user_id"].to_list()
    queries = read(settings.warehouse, "select distinct query from raw.requests where query is not null order by 1")
    return settings, open_store(settings), catalog, users, queries["query"].to_list(), catalog_index(settings)


def _requests(catalog: pl.DataFrame, users: list[str], queries: list[str], titles: TitleIndex, seed: int):
    """Random requests: 1-100 candidates (a few outside the catalog), a user known or not, a query
    seen, unseen, misspelled or none, a request time anywhere in a month."""
    rng = random.Random(seed)
    items = catalog["item_id"].to_list()
    for _ in range(REQUESTS):
        ids = rng.sample(items, rng.randint(1, 100)) + ["i-not-in-catalog"] * rng.randint(0, 2)
        query = rng.choice([None, rng.choice(queries), "unseen words here", rng.choice(queries)[::-1]])
        user = rng.choice([None, "u-unknown", *rng.sample(users, 3)])
        bm25 = titles.score([query] * len(ids), ids) if query else np.zeros(len(ids))
        candidates = pl.DataFrame({"item_id": ids, "query": [query] * len(ids), "retrieval_bm25": bm25})
        at = datetime(2025, 9, 1) + timedelta(seconds=rng.randint(0, 30 * 86400))
        yield request_rows(catalog, candidates, at, user)


@pytest.mark.parametrize("service", SERVICES)
def test_the_fast_read_equals_get_online_features(shop, service):
    settings, store, catalog, users, queries, titles = shop
    plan = resolve(store, service)
    reader = OnlineReader(store, plan, BUDGET)
    found = 0
    for rows in _requests(catalog, users, queries, titles, seed=len(service)):
        expected, got = online_features(store, plan, rows), reader.read(rows)
        assert got.schema == expected.schema
        for column in plan.features:
            assert _bits(got[column]) == _bits(expected[column]), (service, column, rows["user_id"][0])
        found += expected.height * len(plan.features) - expected.select(plan.features).null_count().sum_horizontal()[0]
    assert found > 1000, "the requests should find stored values"


def _bits(series: pl.Series) -> list:
    """Values compared exactly: floats by their bits (NaN, -0.0 and nulls told apart)."""
    if series.dtype.is_float():
        return [None if v is None else struct.pack("<d", v) for v in series.to_list()]
    return series.to_list()


def test_values_are_cached_for_at_most_cache_seconds(tiny_shop, tmp_path, monkeypatch):
    shutil.copy(tiny_shop.online_store, tmp_path / "online_store.db")
    store = open_store(tiny_shop)
    store.config.online_store.path = str(tmp_path / "online_store.db")
    plan = resolve(store, "ranker_v1")
    reader = OnlineReader(store, plan, BUDGET)
    catalog = read(tiny_shop.warehouse, "select * from marts.dim_items")
    item = catalog["item_id"][0]
    key = EntityKey(join_keys=["item_id"], entity_values=[Value(string_val=item)])
    rows = request_rows(catalog, pl.DataFrame({"item_id": [item]}), datetime(2025, 9, 20), None)
    before = reader.read(rows)["item_features__price"][0]
    with sqlite3.connect(tmp_path / "online_store.db") as db:
        db.execute(
            "update shoprank_item_features set value = ? where feature_name = 'price' and entity_key = ?",
            [b"\x29" + struct.pack("<d", before + 1), serialize_entity_key(key, entity_key_serialization_version=3)],
        )
    assert reader.read(rows)["item_features__price"][0] == before  # cached
    monkeypatch.setattr(serving.online, "CACHE_SECONDS", 0.0)
    assert reader.read(rows)["item_features__price"][0] == before + 1
