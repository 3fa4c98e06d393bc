"""Label sources: candidate lists made from the past only and labelled by the next window, their
recall, and human judgments grouped by normalized query."""

from __future__ import annotations

import csv
import math
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from shoprank.config import Settings
from shoprank.text import normalize_query
from shoprank.warehouse import connect as connect_warehouse
from tests.handmade import hand_shop
from training.labels import CONTEXT_COLUMNS, LABEL_COLUMNS, LabelSource, candidate_recall, candidates, judgments
from training.pit import connect

CUTOFF = datetime(2025, 1, 10)
HOUR = timedelta(hours=1)
# One generator each: u1's 5 most recent items, 5 item-CF neighbours, the most popular item, and
# the top 2 items of u1's recent categories (round robin: each category's best first).
SIZES = {"repeat": 5, "item_cf": 5, "popularity": 1, "category_popularity": 2}
PAST = [
    ("u1", "A", CUTOFF - 14 * HOUR, "view"),
    ("u1", "B", CUTOFF - 13 * HOUR, "view"),
    ("u1", "E", CUTOFF - 12 * HOUR, "view"),
    ("u1", "D", CUTOFF - 36 * HOUR, "click"),
    ("u1", "O", CUTOFF - timedelta(days=9), "purchase"),  # before the 7-day history
]
NEXT_WINDOW = [
    ("u1", "A", CUTOFF + HOUR, "view"),
    ("u1", "A", CUTOFF + HOUR, "purchase"),
    ("u1", "B", CUTOFF + 2 * HOUR, "add_to_cart"),
    ("u1", "D", CUTOFF + 3 * HOUR, "favorite"),
    ("u1", "E", CUTOFF + 3 * HOUR, "click"),
    ("u1", "N", CUTOFF + 4 * HOUR, "view"),
    ("u1", "G", CUTOFF + 5 * HOUR, "purchase"),  # proposed by no generator
    ("u3", "H", CUTOFF + HOUR, "view"),  # u3 has no history: no list
]
LATER = [("u1", "B", CUTOFF + timedelta(days=1, hours=1), "purchase")]  # after the 1-day window


def _day(item: str, at: datetime, category: str, rank: int, views: int) -> dict:
    return {
        "item_id": item,
        "event_timestamp": at,
        "category_path": category,
        "popularity_rank_in_category": rank,
        "views_7d": views,
    }


ITEM_DAYS = [
    _day("P1", CUTOFF, "c1", 1, 50),
    _day("A", CUTOFF, "c1", 2, 1),
    _day("B", CUTOFF, "c1", 3, 1),
    _day("E", CUTOFF, "c1", 4, 1),
    _day("D", CUTOFF, "c2", 1, 0),
    _day("P2", CUTOFF, "c3", 1, 40),
]
FUTURE_ITEM_DAYS = [_day("Z", CUTOFF + timedelta(days=1), "c1", 1, 1000)]  # would top popularity and c1
PAIRS = [("A", "N", CUTOFF - timedelta(days=3), 0.9)]
FUTURE_PAIRS = [("A", "Y", CUTOFF + timedelta(days=1), 0.99)]


@pytest.fixture
def shop(tmp_path: Path) -> Settings:
    """u1's past, next window and later events, with mart rows dated after the cutoff too."""
    return hand_shop(tmp_path / "shop", PAST + NEXT_WINDOW + LATER, ITEM_DAYS + FUTURE_ITEM_DAYS, PAIRS + FUTURE_PAIRS)


def rows(settings: Settings, source: LabelSource) -> pl.DataFrame:
    con = connect(settings.workdir / "spill")
    try:
        return con.sql(source.select(con, settings)).pl()
    finally:
        con.close()


def test_candidates_are_made_only_from_events_and_mart_rows_before_the_cutoff(shop, tmp_path):
    past_only = hand_shop(tmp_path / "past", PAST, ITEM_DAYS, PAIRS)
    source = candidates(cutoffs=[CUTOFF], per_generator=SIZES)
    proposed = set(rows(shop, source)["item_id"])
    # repeat A, B, E, D (not O: older than the history); item-CF N (the snapshot before the
    # cutoff); popular P1; categories c1 and c2 (u1's) give their best, P1 and D. Not G (bought
    # after the cutoff), nor Y and Z (mart rows dated after it).
    assert proposed == {"A", "B", "E", "D", "N", "P1"}
    assert set(rows(past_only, source)["item_id"]) == proposed


def test_candidate_rows_are_labelled_by_the_strongest_interaction_of_the_next_window(shop):
    frame = rows(shop, candidates(cutoffs=[CUTOFF], per_generator=SIZES))
    assert frame.columns == [*LABEL_COLUMNS, *CONTEXT_COLUMNS]
    labels = dict(zip(frame["item_id"], frame["label"], strict=True))
    # purchase 3 (over a view), add_to_cart 2 (B's purchase lies after the window), favorite,
    # click and view 1, nothing 0
    assert labels == {"A": 3, "B": 2, "D": 1, "E": 1, "N": 1, "P1": 0}
    assert frame["query_id"].unique().to_list() == ["u1@2025-01-10T00"]
    assert frame["event_timestamp"].unique().to_list() == [CUTOFF]
    assert frame["surface"].unique().to_list() == ["candidates"]
    assert frame["position"].null_count() == frame.height


def test_candidate_recall_counts_next_window_positives_found_overall_and_per_generator(shop):
    recall = candidate_recall(shop, cutoffs=[CUTOFF], per_generator=SIZES)
    # positives of u1: A, B, D, E, N, G; found: all but G
    assert (recall.positives, recall.groups, recall.candidates, recall.uncovered) == (6, 1, 6, 1)
    assert recall.recall == pytest.approx(5 / 6)
    expected = {"repeat": 4 / 6, "item_cf": 1 / 6, "popularity": 0.0, "category_popularity": 1 / 6}
    assert recall.by_generator == pytest.approx(expected)


def test_turned_off_generators_propose_nothing(shop):
    recall = candidate_recall(shop, cutoffs=[CUTOFF], per_generator={**SIZES, "repeat": 0, "item_cf": 0})
    assert set(recall.by_generator) == {"popularity", "category_popularity"}
    assert recall.recall == pytest.approx(1 / 6)


def test_daily_cutoffs_are_the_midnights_after_the_first_event_day_up_to_the_last(tiny_shop):
    frame = rows(tiny_shop, candidates())
    with connect_warehouse(tiny_shop.warehouse, read_only=True) as warehouse:
        first, last = warehouse.execute(
            "select min(event_time)::date, max(event_time)::date from intermediate.int_events_sessionized"
        ).fetchone()
    days = (last - first).days
    assert sorted(frame["event_timestamp"].unique()) == [
        datetime(first.year, first.month, first.day) + timedelta(d) for d in range(1, days + 1)
    ]
    query_ids = pl.col("user_id") + "@" + pl.col("event_timestamp").dt.strftime("%Y-%m-%dT%H")
    assert (frame.select(query_ids)["user_id"] == frame["query_id"]).all()
    assert frame.select("query_id", "item_id").is_duplicated().sum() == 0
    assert frame["label"].is_between(0, 3).all() and frame["label"].max() > 0


# --- human judgments --------------------------------------------------------------------------


def test_judgments_give_one_group_per_normalized_query_with_graded_labels(home_depot_shop):
    settings, sample = home_depot_shop
    frame = rows(settings, judgments())
    with sample.open(encoding="utf-8") as file:
        judged = list(csv.DictReader(file))
    queries = {normalize_query(row["search_term"]) for row in judged} - {None}
    assert set(frame["query_id"]) == queries
    assert (frame["query_id"] == frame["query_norm"]).all()
    assert frame.select("query_id", "item_id").is_duplicated().sum() == 0
    assert frame["label"].is_between(0, 3).all()
    expected = [min(3, math.floor(2 * (grade - 1) + 1e-9)) for grade in frame["grade"]]
    assert frame["label"].to_list() == expected
    assert set(frame["label"]) == {0, 1, 2, 3}
    # one moment for all, after the catalog's date (the adapter dates items 2016-01-18)
    assert frame["event_timestamp"].unique().to_list() == [datetime(2016, 1, 19)]
    assert set(frame["user_id"]) == {"anonymous"} and set(frame["surface"]) == {"search"}
