"""Every raw contract accepts good rows and names the check each bad row breaks."""

from datetime import datetime

import pandera.polars as pa
import polars as pl
import pytest

from shoprank.contracts import RAW_TABLES
from shoprank.ingest.batch import Batch
from shoprank.ingest.load import rejection_reasons

NOW = datetime(2026, 1, 1)
GOOD = {
    "events": {
        "event_id": "e1", "event_time": "2025-06-01 10:00:00", "user_id": "u1", "session_id": None,
        "event_type": " View", "item_id": "i1", "request_id": "r1", "position": "0", "price": "9.5", "quantity": "1",
    },
    "requests": {
        "request_id": "r1", "request_time": "2025-06-01 10:00:00", "user_id": "u1", "session_id": "s1",
        "surface": "search", "query": "red shoes", "item_id": "i1", "position": "3",
    },
    "items": {"item_id": "i1", "title": "Red Shoes", "category_path": "A > B", "brand": None, "price": "10", "updated_at": "2025-01-01"},
    "users": {"user_id": "u1", "signup_time": "2024-01-01", "region": "EU", "email": "a@b.c", "phone": None},
    "judgments": {"query": "angle bracket", "item_id": "100001", "grade": "2.67"},
    "categories": {"category_id": "12", "parent_id": None, "name": "Shoes"},
}  # fmt: skip
BAD = [
    ("events", {"event_type": "pageview"}, "event_type: unknown_event_type"),
    ("events", {"item_id": None}, "item_id: not_nullable"),
    ("events", {"user_id": "  "}, "user_id: empty"),
    ("events", {"event_time": "2099-01-01"}, "event_time: implausible_timestamp"),
    ("events", {"event_time": "1970-01-01"}, "event_time: implausible_timestamp"),
    ("events", {"event_time": "yesterday"}, "event_time: not a timestamp"),
    ("events", {"position": "-1"}, "position: greater_than_or_equal_to(0)"),
    ("events", {"quantity": "0"}, "quantity: greater_than_or_equal_to(1)"),
    ("events", {"price": "-3"}, "price: greater_than_or_equal_to(0)"),
    ("requests", {"surface": "email"}, "surface: unknown_surface"),
    ("requests", {"query": None}, "search_without_query"),
    ("items", {"price": "free"}, "price: not a number"),
    ("items", {"updated_at": None}, "updated_at: not_nullable"),
    ("users", {"signup_time": "2999-01-01"}, "signup_time: implausible_timestamp"),
    ("judgments", {"grade": "-1"}, "grade: greater_than_or_equal_to(0)"),
    ("categories", {"parent_id": "12"}, "own_parent"),
    ("events", {"price": "NaN"}, "price: not_finite"),
    ("items", {"price": "inf"}, "price: not_finite"),
    ("judgments", {"grade": "Infinity"}, "grade: not_finite"),
    ("events", {"item_id": "i" * 257}, "item_id: too_long"),
    ("requests", {"request_id": "r" * 10_000_000}, "request_id: too_long"),
    ("events", {"event_id": "e1\x00"}, "event_id: control_character"),
    ("items", {"price": "1e308"}, "price: out_of_range"),
    ("users", {"user_id": "u\t1"}, "user_id: control_character"),
]


def _batch(table: str, **changes: object) -> Batch:
    return Batch(table, pl.DataFrame([{**GOOD[table], **changes}], schema={k: pl.Utf8 for k in GOOD[table]}), "test")


@pytest.mark.parametrize("table", sorted(RAW_TABLES))
def test_good_rows_pass(table):
    typed, reasons = rejection_reasons(_batch(table), NOW)
    assert reasons.to_list() == [None]
    RAW_TABLES[table].schema(NOW).validate(typed)


@pytest.mark.parametrize(("table", "change", "reason"), BAD)
def test_bad_rows_are_rejected_with_the_check_they_break(table, change, reason):
    _, reasons = rejection_reasons(_batch(table, **change), NOW)
    assert reasons[0] is not None and reason in reasons[0]


def test_every_failure_of_a_row_is_reported_and_other_rows_are_untouched():
    frame = pl.DataFrame(
        [GOOD["events"], {**GOOD["events"], "event_id": "e2", "event_type": "share", "item_id": None}],
        schema={k: pl.Utf8 for k in GOOD["events"]},
    )
    _, reasons = rejection_reasons(Batch("events", frame, "test"), NOW)
    assert reasons[0] is None
    assert set(reasons[1].split("; ")) == {
        "item_id: not_nullable",
        "event_type: unknown_event_type (allowed: view, click, add_to_cart, favorite, purchase)",
    }


def test_contract_columns_are_the_documented_raw_layout():
    assert list(RAW_TABLES["events"].columns) == [
        "event_id", "event_time", "user_id", "session_id", "event_type",
        "item_id", "request_id", "position", "price", "quantity",
    ]  # fmt: skip
    assert RAW_TABLES["events"].key == ("event_id",)
    with pytest.raises(pa.errors.SchemaError):
        RAW_TABLES["judgments"].schema(NOW).validate(pl.DataFrame({"query": ["q"]}))
