"""Dataset adapters on the real samples in ../shared/datasets and on small hand-made fixtures."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from functools import cache
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest

from shoprank.contracts import RAW_TABLES
from shoprank.errors import InputError
from shoprank.ingest import readers
from shoprank.ingest.adapters import ADAPTERS
from shoprank.ingest.batch import Batch, coerce

SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "adapters"
NOW = datetime(2025, 1, 1)

TAOBAO = {
    "timeslice_2017-11-26_110k.csv": 110_300,
    "usercomplete_head_43users.csv": 4_321,
    "usercomplete_tail_114users.csv": 10_000,
}


def shared(relative: str) -> Path:
    """A real sample, or skip the test when the shared datasets are not next to the repo."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"real sample {path} is absent (the shared datasets live next to the repo, not in it)")
    return path


@cache
def _read(fmt: str, path: Path) -> tuple[Batch, ...]:
    return tuple(ADAPTERS[fmt](path))


def read(fmt: str, path: Path) -> dict[str, pl.DataFrame]:
    """All batches of a file, concatenated per table."""
    tables: dict[str, list[pl.DataFrame]] = {}
    for batch in _read(fmt, path):
        tables.setdefault(batch.table, []).append(batch.frame)
    return {table: pl.concat(frames, how="diagonal_relaxed") for table, frames in tables.items()}


def notes(fmt: str, path: Path) -> list[str]:
    return [note for batch in _read(fmt, path) for note in batch.notes]


def source(path: Path, delimiter: str = ",", names: list[str] | None = None) -> pl.DataFrame:
    return pl.read_csv(path, separator=delimiter, has_header=names is None, new_columns=names, infer_schema=False)


def contract_failures(frame: pl.DataFrame, table: str) -> Counter:
    """``"<column>: <check>"`` -> rows failing it, after casting and lazy Pandera validation."""
    typed, reasons = coerce(frame, table)
    failures = Counter(reasons.drop_nulls().to_list())
    try:
        RAW_TABLES[table].schema(NOW).validate(typed, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.select(pl.col("column") + ": " + pl.col("check").str.extract(r"^(\w+)"))
        failures.update(cases.to_series().to_list())
    return failures


def test_every_format_has_an_adapter():
    assert set(ADAPTERS) == {"taobao", "diginetica", "retailrocket", "homedepot"}


# --- Taobao UserBehavior ----------------------------------------------------------------------


@pytest.mark.parametrize("name", TAOBAO)
def test_taobao_maps_every_row_to_one_event_and_each_item_once(name):
    path = shared(f"taobao_userbehavior/{name}")
    rows = source(path, names=["user", "item", "category", "behavior", "time"])
    tables = read("taobao", path)
    events, items = tables["events"], tables["items"]
    assert events.height == rows.height == TAOBAO[name]
    behaviors = dict(rows.group_by("behavior").len().iter_rows())
    expected = {
        "view": behaviors["pv"],
        "add_to_cart": behaviors["cart"],
        "favorite": behaviors["fav"],
        "purchase": behaviors["buy"],
    }
    assert dict(events.group_by("event_type").len().iter_rows()) == expected
    assert items.height == rows["item"].n_unique() == items["item_id"].n_unique()
    assert set(items["updated_at"]) == {datetime(2017, 11, 24, 16)}
    pairs = rows.select(item_id="item", category_path="category").unique()
    assert items.select("item_id", "category_path").sort("item_id").equals(pairs.sort("item_id"))
    assert events["event_id"].n_unique() == rows.unique().height
    assert contract_failures(events, "events") == Counter() and contract_failures(items, "items") == Counter()


def test_taobao_hand_checked_row_and_window_note():
    path = shared("taobao_userbehavior/usercomplete_head_43users.csv")
    events = read("taobao", path)["events"]
    # first row: 1,2268318,2520377,pv,1511544070 = 2017-11-25 01:21:10 China time
    assert events.row(0, named=True) | {"event_id": None} == {
        "event_id": None,
        "event_time": datetime(2017, 11, 24, 17, 21, 10),
        "user_id": "1",
        "event_type": "view",
        "item_id": "2268318",
    }
    # the one row outside the window (1505117799 = 2017-09-11) is kept and flagged
    assert events.filter(pl.col("event_time") == datetime(2017, 9, 11, 8, 16, 39)).height == 1
    assert any("1 of 4321" in note and "outside" in note for note in notes("taobao", path))
    assert any(
        "4 of 10000" in note for note in notes("taobao", shared("taobao_userbehavior/usercomplete_tail_114users.csv"))
    )


def test_taobao_ids_are_stable_across_reads_and_chunkings(monkeypatch):
    path = shared("taobao_userbehavior/usercomplete_head_43users.csv")
    whole = read("taobao", path)
    again = {batch.table: batch.frame for batch in ADAPTERS["taobao"](path)}
    monkeypatch.setattr(readers, "CHUNK_ROWS", 1_000)
    batches = list(ADAPTERS["taobao"](path))
    chunked = {
        t: pl.concat([b.frame for b in batches if b.table == t], how="diagonal_relaxed") for t in ("events", "items")
    }
    assert sum(b.table == "events" for b in batches) == 5
    assert again["events"]["event_id"].to_list() == whole["events"]["event_id"].to_list()
    assert chunked["events"].equals(whole["events"])
    assert chunked["items"].sort("item_id").equals(whole["items"].sort("item_id"))
    assert whole["events"]["event_id"][0] == "tb-af52b8a119936600"  # fixed across processes and Polars versions


def test_taobao_passes_invalid_values_through_for_quarantine():
    path = FIXTURES / "taobao_dirty.csv"
    events = read("taobao", path)["events"]
    assert events.height == 5
    assert events["event_type"].to_list() == ["view", "clk", "purchase", "favorite", "view"]
    assert events["event_time"][2] == "not-a-time"
    assert events["event_id"][0] == events["event_id"][4] != events["event_id"][1]  # duplicate rows share an id
    assert contract_failures(events, "events") == Counter(
        {
            "event_time: not a timestamp": 1,
            "event_time: not_nullable": 1,
            "user_id: not_nullable": 1,
            "event_type: unknown_event_type": 1,
        }
    )


def test_taobao_rejects_other_files(tmp_path):
    expected = r"expected 5 columns user_id,item_id,category_id,behavior,timestamp without a header, found 4\); pass the right --format"
    with pytest.raises(InputError, match=expected):
        next(ADAPTERS["taobao"](FIXTURES / "retailrocket_item_properties_part1.csv"))
    headed = tmp_path / "with_header.csv"
    headed.write_text("user_id,item_id,category_id,behavior,timestamp\n1,2,3,pv,1511544070\n")
    with pytest.raises(InputError, match="found a header row"):
        next(ADAPTERS["taobao"](headed))
    with pytest.raises(InputError, match="does not exist"):
        next(ADAPTERS["taobao"](tmp_path / "missing.csv"))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,3,pv,1511544070\n1,2,3,pv,1511544070,extra\n")
    with pytest.raises(InputError, match=r'".*ragged.csv" cannot be read as csv \(found more fields'):
        list(ADAPTERS["taobao"](ragged))


# --- DIGINETICA ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "event_type", "session", "user"),
    [
        ("sample_train-item-views.csv", "view", "session_id", "user_id"),
        ("train-purchases.csv", "purchase", "sessionId", "userId"),
    ],
)
def test_diginetica_events(name, event_type, session, user):
    path = shared(f"diginetica/{name}")
    rows = source(path, ";")
    events = read("diginetica", path)["events"]
    assert events.height == rows.height
    assert set(events["event_type"]) == {event_type}
    assert events["session_id"].to_list() == ("dg-s" + rows[session]).to_list()
    anonymous = rows[user] == "NA"
    assert events.filter(anonymous)["user_id"].to_list() == events.filter(anonymous)["session_id"].to_list()
    assert events.filter(~anonymous)["user_id"].to_list() == rows.filter(~anonymous)[user].to_list()
    assert any(f"{anonymous.sum()} of {rows.height}" in note for note in notes("diginetica", path))
    assert events["event_id"].n_unique() == rows.unique().height
    assert contract_failures(events, "events") == Counter()


def test_diginetica_hand_checked_times_and_duplicate_purchases():
    views = read("diginetica", shared("diginetica/sample_train-item-views.csv"))["events"]
    # 1;NA;81766;526309;2016-05-09 -> 2016-05-09 + 526.309 s
    assert views.row(0, named=True)["event_time"] == datetime(2016, 5, 9, 0, 8, 46, 309_000)
    purchases = read("diginetica", shared("diginetica/train-purchases.csv"))["events"]
    # 150;18278;17100868;2016-05-06;16421;25911 -> 2016-05-06 + 17100.868 s
    assert purchases.row(0, named=True) | {"event_id": None} == {
        "event_id": None,
        "event_time": datetime(2016, 5, 6, 4, 45, 0, 868_000),
        "user_id": "18278",
        "session_id": "dg-s150",
        "event_type": "purchase",
        "item_id": "25911",
    }
    assert purchases.height - purchases["event_id"].n_unique() == 28  # 28 rows repeat another row exactly


def test_diginetica_categories_become_items():
    path = shared("diginetica/product-categories.csv")
    rows = source(path, ";")
    items = read("diginetica", path)["items"]
    assert items.select("item_id", "category_path").equals(
        rows.rename({"itemId": "item_id", "categoryId": "category_path"})
    )
    assert set(items["updated_at"]) == {datetime(2016, 1, 1)}
    assert contract_failures(items, "items") == Counter()


def test_diginetica_rejects_other_files():
    expected = r'does not look like DIGINETICA .*expected the header "session_id;user_id;item_id;timeframe;eventdate".*--format'
    with pytest.raises(InputError, match=expected):
        next(ADAPTERS["diginetica"](FIXTURES / "retailrocket_events.csv"))


# --- RetailRocket ---------------------------------------------------------------------------------


def test_retailrocket_category_tree():
    path = shared("retailrocket_category_tree/category_tree.csv")
    rows = source(path)
    categories = read("retailrocket", path)["categories"]
    assert categories.equals(rows.rename({"categoryid": "category_id", "parentid": "parent_id"}))
    assert categories["parent_id"].null_count() == 25  # the roots
    assert contract_failures(categories, "categories") == Counter()


def test_retailrocket_events():
    events = read("retailrocket", FIXTURES / "retailrocket_events.csv")["events"]
    assert events["event_type"].to_list() == ["view", "view", "add_to_cart", "purchase", "purchase", "view"]
    assert events["event_time"][0] == datetime(2015, 6, 2, 5, 2, 12, 117_000)  # 1433221332117 ms
    assert events["user_id"][3] == "599528" and events["item_id"][3] == "356475"
    ids = events["event_id"]
    assert ids[0] == ids[5] and ids[:5].n_unique() == 5 and ids.str.starts_with("rr-").all()
    assert contract_failures(events, "events") == Counter()


def test_retailrocket_item_properties_give_category_and_price_versions():
    items = read("retailrocket", FIXTURES / "retailrocket_item_properties_part1.csv")["items"]
    typed, _ = coerce(items, "items")
    assert typed.select("item_id", "category_path", "price", "updated_at").rows() == [
        ("460429", "1338", 277200.0, datetime(2015, 6, 28, 3)),
        ("460429", "1338", None, datetime(2015, 9, 13, 3)),
        ("59481", "1246", 15360.0, datetime(2015, 5, 10, 3)),
        ("59481", None, 14400.0, datetime(2015, 5, 31, 3)),
    ]
    assert contract_failures(items, "items") == Counter()


def test_retailrocket_rejects_other_files():
    with pytest.raises(
        InputError, match=r'does not look like RetailRocket .*"timestamp,visitorid,event,itemid,transactionid"'
    ):
        next(ADAPTERS["retailrocket"](FIXTURES / "taobao_dirty.csv"))


# --- Home Depot -------------------------------------------------------------------------------------


def test_homedepot_judgments_and_items():
    path = shared("homedepot_search_relevance/judgments_dev.csv")
    rows = source(path)
    tables = read("homedepot", path)
    judgments, items = tables["judgments"], tables["items"]
    assert judgments.height == rows.height == 52_463
    assert judgments.row(0) == ("angle bracket", "100001", "3")  # id 2
    assert judgments.equals(rows.select(query="search_term", item_id="product_uid", grade="relevance"))
    assert items.height == rows["product_uid"].n_unique() == 41_342
    assert items.filter(pl.col("item_id") == "101549")["title"].to_list() == [
        "Easy Gardener 10 ft. Brown Lawn Edging Border"
    ]
    assert any(note.startswith("13 rows") and "another title" in note for note in notes("homedepot", path))
    assert contract_failures(judgments, "judgments") == Counter() and contract_failures(items, "items") == Counter()


def test_homedepot_rejects_other_files(tmp_path):
    expected = r'expected the header "id,product_uid,product_title,search_term,relevance", found "timestamp,visitorid,event,itemid,transactionid"'
    with pytest.raises(InputError, match=expected):
        next(ADAPTERS["homedepot"](FIXTURES / "retailrocket_events.csv"))
    latin = tmp_path / "train.csv"
    latin.write_bytes(
        "id,product_uid,product_title,search_term,relevance\n2,100001,Caf\xe9 table,table,3\n".encode("latin-1")
    )
    with pytest.raises(InputError, match=r"cannot be read as UTF-8 text .*; re-encode it as UTF-8"):
        list(ADAPTERS["homedepot"](latin))
