"""Baselines on hand-made shops: each reads only what was known at the row's time and ranks as
its definition says; BM25 equals a hand computation."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from shoprank.config import Settings
from shoprank.errors import ConfigError, ContractError
from tests.handmade import hand_shop
from training.baselines import BASELINES, score_baselines

T = datetime(2025, 1, 10, 12)
DAY = timedelta(days=1)
MIDNIGHT = datetime(2025, 1, 10)


def entity_rows(items: list[str], at: datetime = T, **columns: list) -> pl.DataFrame:
    """One group of ``u1`` at ``at`` (UTC) over ``items``."""
    n = len(items)
    return pl.DataFrame(
        {
            "query_id": ["q1"] * n,
            "user_id": ["u1"] * n,
            "item_id": items,
            "event_timestamp": [at.replace(tzinfo=UTC)] * n,
            **columns,
        }
    )


def scores(settings: Settings, frame: pl.DataFrame, name: str) -> list[float]:
    return score_baselines(settings, frame, [name])[name].tolist()


@pytest.fixture
def shop(tmp_path: Path) -> Settings:
    def day(item: str, at: datetime, views: int, rank: int) -> dict:
        return {
            "item_id": item,
            "event_timestamp": at,
            "category_path": "c",
            "popularity_rank_in_category": rank,
            "views_7d": views,
        }

    events = [
        ("u1", "R", T - timedelta(hours=2), "view"),
        ("u1", "R2", T - 2 * DAY, "click"),
        ("u1", "Q", T - 10 * DAY, "purchase"),  # older than the 7-day history
        ("u1", "S", T + timedelta(hours=1), "view"),  # after the row
    ]
    item_days = [
        day("X", MIDNIGHT, 5, 2),
        day("Y", MIDNIGHT, 1, 1),
        day("Y", MIDNIGHT + DAY, 100, 1),  # after the row at T
    ]
    snapshot = MIDNIGHT - 4 * DAY
    pairs = [
        ("R", "N1", snapshot, 0.8),
        ("R", "N2", snapshot, 0.3),
        ("R2", "N2", snapshot, 0.6),
        ("Q", "N3", snapshot, 0.9),
        ("S", "N5", snapshot, 0.9),
        ("R", "N4", MIDNIGHT + DAY, 0.99),  # a snapshot after the row
    ]
    titles = {"i1": "Red wool scarf", "i2": "red cotton shirt", "i3": "Blue wool sweater, warm", "i4": "RED shoes"}
    return hand_shop(tmp_path, events, item_days, pairs, titles)


def test_popularity_counts_the_past_week_as_of_the_row(shop):
    items = ["X", "Y", "never"]
    assert scores(shop, entity_rows(items), "popularity") == [5, 1, 0]
    # a day later Y's busy day is known and X has no activity left
    assert scores(shop, entity_rows(items, T + DAY), "popularity") == [0, 100, 0]


def test_category_popularity_is_minus_the_rank_in_the_category_as_of_the_row(shop):
    assert scores(shop, entity_rows(["X", "Y", "never"]), "category_popularity") == [-2, -1, -1e9]


def test_item_cf_sums_the_similarity_to_the_users_recent_items(shop):
    frame = entity_rows(["N1", "N2", "N3", "N4", "N5"])
    # N2 neighbours both recent items; N3 only Q (too old), N4 only in a later snapshot, N5 only
    # S (seen after the row)
    assert scores(shop, frame, "item_cf") == pytest.approx([0.8, 0.9, 0, 0, 0])
    assert scores(shop, entity_rows(["N1", "N4"]), "item_cf")[0] > 0


def test_bm25_equals_a_hand_computation_and_ranks_the_rare_word_first(shop):
    frame = entity_rows(["i2", "i4", "i1", "i3", "unknown"], query=["Red SCARF!"] * 5)
    # 4 titles of 3, 3, 4 and 2 words (mean 3); "red" is in 3 of them, "scarf" in 1
    red, scarf = math.log(1 + 1.5 / 3.5), math.log(1 + 3.5 / 1.5)
    length_norm = 1 + 1.2 * (0.25 + 0.75 * 2 / 3)  # i4: 2 words; 3 words give 1 + 1.2
    expected = [red, red * 2.2 / length_norm, red + scarf, 0, 0]
    got = scores(shop, frame, "bm25")
    assert got == pytest.approx(expected)
    assert int(np.argmax(got)) == 2
    assert scores(shop, entity_rows(["i1"], query=[None]), "bm25") == [0]


def test_logging_policy_reproduces_the_served_order(shop):
    frame = entity_rows(["a", "b", "c", "d"], position=[2, 0, 3, 1])
    order = np.argsort(-score_baselines(shop, frame, ["logging_policy"])["logging_policy"], kind="stable")
    assert frame["position"].to_numpy()[order].tolist() == [0, 1, 2, 3]
    with pytest.raises(ContractError, match="position"):
        score_baselines(shop, entity_rows(["a"], position=[None]), ["logging_policy"])


def test_random_is_seeded(shop):
    frame = entity_rows([f"i{k}" for k in range(50)])
    first, again = scores(shop, frame, "random"), scores(shop, frame, "random")
    other = scores(Settings(workdir=shop.workdir, seed=shop.seed + 1), frame, "random")
    assert first == again and first != other and len(set(first)) == 50


def test_unknown_baselines_are_named(shop):
    with pytest.raises(ConfigError, match="popularty"):
        score_baselines(shop, entity_rows(["X"]), ["popularty"])


def test_every_list_baseline_scores_the_tiny_shops_served_lists(tiny_shop):
    frame = pl.read_parquet(tiny_shop.datasets / "ranker_v2" / "*.parquet")
    names = [name for name in BASELINES if name != "bm25"]
    scored = score_baselines(tiny_shop, frame, names)
    for name in names:
        assert scored[name].shape == (frame.height,) and np.isfinite(scored[name]).all(), name
    assert (scored["popularity"] > 0).any() and (scored["category_popularity"] > -1e9).any()
