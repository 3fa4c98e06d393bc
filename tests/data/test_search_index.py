"""The catalog's search index: BM25 retrieval (bm25s, equal to the Lucene formula by hand),
filters, popular-in-category backfill, reuse while the catalog is unchanged, and recall."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shoprank.config import Settings
from shoprank.errors import ConfigError, WarehouseError
from shoprank.features.bm25 import TitleIndex
from shoprank.search import index as search_index
from shoprank.search.index import FOLDER, build_index, document_words, open_index
from shoprank.search.recall import clicked_searches, retrieval_recall
from shoprank.search.retrieve import retrieve, retrieve_batch
from shoprank.text import tokens
from tests.conftest import shared_dataset

DRILLS, SKIRTS = "Tools > Power Tools > Drills", "Clothing > Women > Skirts"
CATALOG = pl.DataFrame(
    [
        ("d1", "Cordless Drill 18 V", "Torqen", DRILLS, 99.0, 5.0),
        ("d2", "Hammer Drill Heavy Duty", "Forgemaster", DRILLS, 149.0, 50.0),
        ("d3", "Compact Drill Driver", "Torqen", DRILLS, 59.0, 20.0),
        ("s1", "Circular Saw 1400 W", "Torqen", "Tools > Power Tools > Saws", 120.0, 30.0),
        ("k1", "Denim Mini Skirt", "Mavenwear", SKIRTS, 29.0, 1.0),
        ("k2", "Pleated Midi Skirt", "Northloom", SKIRTS, 39.0, 40.0),
        ("k3", "Wrap Skirt Floral", None, SKIRTS, 35.0, 10.0),
        ("j1", "Slim Fit Jeans", "Mavenwear", "Clothing > Men > Jeans", 49.0, 100.0),
        ("t1", "Smart TV 55 in", "Voltix", "Electronics > TV", None, 0.0),
        ("e1", None, None, None, 5.0, 0.0),  # no word: left out
    ],
    schema=["item_id", "title", "brand", "category_path", "price", "popularity"],
    orient="row",
)


@pytest.fixture(scope="module")
def index():
    return build_index(CATALOG)


def ids(found: pl.DataFrame) -> list[str]:
    return found["item_id"].to_list()


def test_an_exact_title_ranks_its_item_first(index):
    for item, title in CATALOG.drop_nulls("title").select("item_id", "title").iter_rows():
        assert ids(retrieve(index, title, k=3))[0] == item, title
    assert "e1" not in index.items["item_id"].to_list()


def test_a_misspelled_query_finds_its_item(index):
    assert ids(retrieve(index, "pleated midi skrit", k=3))[0] == "k2"  # swapped letters
    assert ids(retrieve(index, "cordles dril", k=3))[0] == "d1"  # dropped letters
    assert ids(retrieve(index, "hammerr", k=3, backfill=False)) == ["d2"]  # a doubled letter
    assert ids(retrieve(index, "xyzzy", k=3, backfill=False)) == []  # nothing one edit away


def test_brand_and_category_words_find_items(index):
    assert set(ids(retrieve(index, "torqen", k=10, backfill=False))) == {"d1", "d3", "s1"}
    assert ids(retrieve(index, "electronics", k=10, backfill=False)) == ["t1"]


def test_a_document_counts_a_brand_named_in_the_title_once():
    fields = {"title": "Torqen Drill", "brand": "Torqen Tools", "category_path": "Tools > Drills"}
    assert document_words(fields) == ["torqen", "drill", "tools", "tools", "drills"]
    assert document_words({"title": "Torqen Drill"}) == ["torqen", "drill"]
    with pytest.raises(ConfigError, match=r"Cannot index the catalog field\(s\) \['leaf'\]; index some of title"):
        build_index(CATALOG, ("title", "leaf"))


def test_filters_exclude_items_outside_the_category_and_the_price_range(index):
    assert set(ids(retrieve(index, "drill saw skirt", k=10, category="Tools"))) == {"d1", "d2", "d3", "s1"}
    assert set(ids(retrieve(index, "drill saw skirt", k=10, category=DRILLS))) == {"d1", "d2", "d3"}
    # d2 costs more, d3 less; the backfill keeps to the range too
    assert ids(retrieve(index, "drill", k=10, price_min=60, price_max=120)) == ["d1"]
    assert ids(retrieve(index, "tv", k=10, price_max=1000)) == []  # an item without a price fails a price filter


def test_in_stock_filters_a_catalog_that_tracks_stock(index):
    stocked = build_index(CATALOG.with_columns(in_stock=pl.col("item_id") != "k2"))
    assert set(ids(retrieve(stocked, "skirt", k=10, in_stock=True))) == {"k1", "k3"}
    assert ids(retrieve(stocked, "skirt", k=10, in_stock=False)) == ["k2"]
    with pytest.raises(ConfigError, match='no "in_stock" column.*drop the in-stock filter'):
        retrieve(index, "skirt", in_stock=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"category": "Tool"}, r'Category "Tool" is not in the catalog index \(9 items\)'),
        ({"price_min": 50, "price_max": 10}, r"The price range \[50, 10\] is empty"),
        ({"k": 0}, "k must be at least 1, got 0"),
    ],
)
def test_invalid_filters_are_named(index, options, message):
    with pytest.raises(ConfigError, match=message):
        retrieve(index, "drill", **options)


def test_backfill_fills_up_to_k_with_popular_items_of_the_matched_category(index):
    found = retrieve(index, "denim", k=3)
    # k1 matches; k2 and k3 are the popular rest of its category (j1, more popular, is not in it)
    assert found.rows() == [("k1", pytest.approx(found["score"][0]), False), ("k2", 0.0, True), ("k3", 0.0, True)]
    assert found["score"][0] > 0
    assert ids(retrieve(index, "denim", k=3, backfill=False)) == ["k1"]
    # a brand in two categories backfills from both, most popular first
    assert ids(retrieve(index, "mavenwear", k=4)) == ["j1", "k1", "k2", "k3"]


def test_without_a_match_only_a_category_filter_gives_a_backfill(index):
    assert retrieve(index, "unknownword", k=5).is_empty()
    assert retrieve(index, None, k=5).is_empty()
    found = retrieve(index, "unknownword", k=2, category="Clothing")
    assert ids(found) == ["j1", "k2"] and found["backfill"].all()


def test_a_batch_equals_its_queries_one_by_one(index):
    queries = ["drill", None, "denim", "torqen saw", "unknownword"]
    batch = retrieve_batch(index, queries, k=3)
    assert batch.columns == ["query", "rank", "item_id", "score", "backfill"]
    for position, query in enumerate(queries):
        alone = batch.filter(pl.col("query") == position).select("item_id", "score", "backfill")
        assert alone.equals(retrieve(index, query, k=3)), query
    assert batch.filter(pl.col("query") == 0)["rank"].to_list() == [0, 1, 2]


def lucene_bm25(query: str, titles: list[str | None]) -> list[float]:
    """Lucene's BM25 (k1 = 1.2, b = 0.75) of the query's distinct words against each title, by hand."""
    documents = [Counter(tokens(title)) for title in titles]
    indexed = [d for d in documents if d]
    mean_length = sum(sum(d.values()) for d in indexed) / len(indexed)
    scores = []
    for d in documents:
        score = 0.0
        for word in set(tokens(query)) & set(d):
            df = sum(word in other for other in indexed)
            idf = math.log(1 + (len(indexed) - df + 0.5) / (df + 0.5))
            norm = 1.2 * (0.25 + 0.75 * sum(d.values()) / mean_length)
            score += idf * d[word] * 2.2 / (d[word] + norm)
        scores.append(score)
    return scores


WORDS = st.sampled_from(["red", "Shoe", "shoes", "blue", "drill", "18", "v", "acme", "x"])
TEXTS = st.lists(WORDS, min_size=0, max_size=6).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(st.lists(TEXTS, min_size=1, max_size=12), st.lists(TEXTS, min_size=1, max_size=4))
def test_bm25s_scores_equal_the_lucene_formula_by_hand(titles, queries):
    if not any(tokens(title) for title in titles):
        return
    item_ids = [f"i{k}" for k in range(len(titles))]
    catalog = pl.DataFrame(
        {"item_id": item_ids, "title": titles, "brand": None, "category_path": "c", "price": 1.0},
        schema_overrides={"brand": pl.Utf8},
    )
    index, pairs = build_index(catalog, ("title",)), TitleIndex.build(item_ids, titles)
    for query in queries:
        expected = dict(zip(item_ids, lucene_bm25(query, titles), strict=True))
        assert pairs.score([query] * len(item_ids), item_ids).tolist() == pytest.approx(list(expected.values()))
        spelled = " ".join(index.speller.correct(tokens(query)))  # retrieval corrects misspellings first
        expected = dict(zip(item_ids, lucene_bm25(spelled, titles), strict=True))
        found = retrieve(index, query, k=len(titles), backfill=False)
        assert found["score"].to_list() == pytest.approx([expected[item] for item in ids(found)])
        assert set(ids(found)) == {item for item, score in expected.items() if score > 0}


def test_title_pairs_of_an_item_listed_twice_use_its_first_title():
    index = TitleIndex.build(["a", "b", "a"], ["red shoe", "blue shoe", "green shoe"])
    assert index.score(["green", "red", "blue", "red"], ["a", "a", "b", "missing"]).tolist() == pytest.approx(
        [0.0, math.log(2), math.log(2), 0.0]
    )


def write_shop(workdir: Path, catalog: pl.DataFrame, views: dict[str, list[tuple[datetime, int]]]) -> Settings:
    """A workdir whose warehouse holds ``marts.dim_items`` and whose marts hold
    ``item_features_daily`` (``item_id -> [(event_timestamp, views_7d)]``)."""
    shop = Settings(workdir=workdir)
    shop.marts.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(shop.warehouse)) as con:
        con.execute("create schema if not exists marts")
        con.register("catalog", catalog.drop("popularity"))
        con.execute("create or replace table marts.dim_items as select * from catalog")
    rows = [(item, at, n) for item, days in views.items() for at, n in days]
    days = pl.DataFrame(rows, schema=["item_id", "event_timestamp", "views_7d"], orient="row")
    days.write_parquet(shop.marts / "item_features_daily.parquet")
    return shop


def test_the_index_is_reused_while_the_catalog_is_unchanged_and_rebuilt_when_it_changes(tmp_path, monkeypatch):
    views = {"k1": [(datetime(2025, 1, 1), 90), (datetime(2025, 1, 2), 3)], "k3": [(datetime(2025, 1, 1), 7)]}
    shop = write_shop(tmp_path, CATALOG, views)
    builds = []
    monkeypatch.setattr(search_index, "build_index", lambda *a: builds.append(a) or build_index(*a))
    first = open_index(shop)
    again = open_index(shop)
    assert len(builds) == 1 and again.fingerprint == first.fingerprint
    assert [p.name for p in (tmp_path / FOLDER).iterdir()] == [first.fingerprint[:16]]
    # popularity: each item's newest row, read on every open (k1's views fell to 3)
    assert dict(again.items.select("item_id", "popularity").iter_rows())["k1"] == 3.0
    assert ids(retrieve(again, "denim", k=3)) == ["k1", "k3", "k2"]

    write_shop(tmp_path, CATALOG.with_columns(pl.col("title").str.replace("Denim", "Corduroy")), views)
    changed = open_index(shop)
    assert len(builds) == 2 and changed.fingerprint != first.fingerprint
    assert [p.name for p in (tmp_path / FOLDER).iterdir()] == [changed.fingerprint[:16]]
    assert ids(retrieve(changed, "corduroy", k=1)) == ["k1"]

    monkeypatch.setattr(search_index, "tokenizer_digest", lambda: "another tokenizer")
    assert open_index(shop).fingerprint != changed.fingerprint and len(builds) == 3


def test_a_missing_catalog_is_named(tmp_path):
    with pytest.raises(WarehouseError, match="does not exist"):
        open_index(Settings(workdir=tmp_path))
    shop = write_shop(tmp_path, CATALOG, {})
    with duckdb.connect(str(shop.warehouse)) as con:
        con.execute("drop table marts.dim_items")
    with pytest.raises(WarehouseError, match='cannot answer.*run "shoprank build"'):
        open_index(shop)


def test_recall_counts_every_relevant_row_and_every_query(index):
    relevant = pl.DataFrame(
        {"query": ["denim", "denim", "denim", "drill", "unknownword"], "item_id": ["k1", "k1", "j1", "d2", "k2"]}
    )
    table = retrieval_recall(index, relevant, ks=(1, 3))
    # top 3: denim -> k1 and its category's k2, k3 (not j1); drill -> the three drills; nothing else
    assert table["k"].to_list() == [1, 3]
    assert table["recall"].to_list() == pytest.approx([2 / 5, 3 / 5])  # d2, the longest title, is not first
    assert table["query_recall"][1] == pytest.approx((2 / 3 + 1 + 0) / 3)


def test_recall_on_the_tiny_shops_clicked_searches(tiny_shop, tmp_path):
    shop = Settings(workdir=tmp_path)
    shop.marts.mkdir()
    shutil.copy(tiny_shop.warehouse, shop.warehouse)
    shutil.copy(tiny_shop.marts / "item_features_daily.parquet", shop.marts)
    table = retrieval_recall(open_index(shop), clicked_searches(shop), ks=(20, 100, 500))
    assert table["recall"].is_sorted() and table["recall"][1] > 0.5


TOYS = pl.DataFrame(
    [
        ("c1", "乐高积木城市系列警察局", "乐高", "玩具 > 积木", 399.0),
        ("c2", "儿童遥控汽车", "奥迪双钻", "玩具 > 遥控车", 199.0),
        ("c3", "毛绒玩具泰迪熊", None, "玩具 > 毛绒", 89.0),
        ("c4", "LEGO Technic 赛车", "乐高", "玩具 > 积木", 299.0),
    ],
    schema=["item_id", "title", "brand", "category_path", "price"],
    orient="row",
)


def test_a_chinese_titled_catalog_is_searchable():
    index = build_index(TOYS)
    assert ids(retrieve(index, "乐高积木", k=2, backfill=False)) == ["c1", "c4"]
    assert ids(retrieve(index, "遥控汽车", k=1))[0] == "c2"
    assert ids(retrieve(index, "泰迪熊", k=1))[0] == "c3"
    assert ids(retrieve(index, "lego 赛车", k=1))[0] == "c4"


@pytest.fixture(scope="module")
def home_depot():
    path = shared_dataset("homedepot_search_relevance/judgments_dev.csv")
    rows = pl.read_csv(path, infer_schema=False).unique("product_uid", keep="first", maintain_order=True)
    catalog = rows.select(
        pl.col("product_uid").alias("item_id"),
        pl.col("product_title").alias("title"),
        pl.lit(None, pl.Utf8).alias("brand"),
        pl.lit(None, pl.Utf8).alias("category_path"),
        pl.lit(None, pl.Float64).alias("price"),
    )
    return catalog, build_index(catalog)


def test_home_depot_titles_find_their_items_exactly_and_misspelled(home_depot):
    catalog, index = home_depot
    titles = catalog.filter(pl.col("title").is_unique()).sample(200, seed=1)
    firsts = [ids(retrieve(index, title, k=1))[0] == item for item, title in titles.select("item_id", "title").rows()]
    assert sum(firsts) >= 195  # an exact title ranks its item first (a few titles are near-copies of others)
    typo = "Milwauke Hamer Dril"  # every word misspelled: nothing matches it as typed
    assert index.speller.correct(tokens(typo)) == ["milwaukee", "hammer", "drill"]
    found = catalog.filter(pl.col("item_id").is_in(retrieve(index, typo, k=10, backfill=False)["item_id"].implode()))
    titles = found["title"].str.to_lowercase()
    assert found.height == 10 and titles.str.contains("milwaukee").all() and titles.str.contains("hammer").all()
