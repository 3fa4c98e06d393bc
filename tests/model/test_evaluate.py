"""Evaluation: splits keep whole groups and time order, every ranker meets the same rows, ties do
not inherit the served order, slices and the headline are computed as documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from shoprank.errors import ContractError
from training.evaluate import evaluate, headline, query_split, time_split


def frame(groups: int = 50, size: int = 4) -> pl.DataFrame:
    start = datetime(2025, 9, 1, tzinfo=UTC)
    return pl.DataFrame(
        {
            "query_id": np.repeat([f"g{g:03d}" for g in range(groups)], size),
            "event_timestamp": pl.Series([start + timedelta(hours=g // size) for g in range(groups * size)]),
            "label": np.tile([1, 0, 0, 0], groups).astype("int32"),
            "position": np.tile(np.arange(size), groups),
            "surface": np.repeat(["search", "recommend"] * (groups // 2), size),
        }
    )


def test_time_split_trains_on_the_past_and_tests_on_the_future():
    split = time_split(frame(), valid_fraction=0.2, test_fraction=0.2)
    assert split.groups == {"train": 30, "valid": 10, "test": 10}
    assert split.train["event_timestamp"].max() < split.valid["event_timestamp"].min()
    assert split.valid["event_timestamp"].max() < split.test["event_timestamp"].min()
    assert sum(split.rows.values()) == frame().height
    assert split.windows["test"][0] == "2025-09-02T16:00:00+00:00"


def test_query_split_is_stable_and_keeps_queries_whole():
    first, second = query_split(frame(200)), query_split(frame(200))
    assert first.test["query_id"].to_list() == second.test["query_id"].to_list()
    parts = [set(part["query_id"]) for part in (first.train, first.valid, first.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert 0.1 < len(parts[2]) / 200 < 0.3


def test_a_split_with_an_empty_part_is_a_user_error():
    with pytest.raises(ContractError, match="Only 2 group"):
        time_split(frame(2))


def test_ties_are_broken_at_random_not_by_the_served_order():
    test = frame(400)
    tied = np.zeros(test.height)  # a constant scorer: as good as random, never as the served order
    served = -test["position"].to_numpy().astype(float)
    result = evaluate(test, ("model", tied), {"logging_policy": served})
    values = {(r, m): v for r, m, v in result.metrics.select("ranker", "metric", "value").iter_rows()}
    assert values[("logging_policy", "mrr")] == 1.0
    assert 0.45 < values[("model", "mrr")] < 0.6  # 1/4 (1 + 1/2 + 1/3 + 1/4) = 0.52 expected


def test_slices_headline_and_oracle():
    test = frame(40)
    truth = np.tile([0.9, 0.6, 0.1, 0.1], 40)  # the clicked item is also the truly relevant one
    perfect = test["label"].to_numpy().astype(float)
    result = evaluate(test, ("model", perfect), {"logging_policy": np.zeros(test.height)}, truth)
    surfaces = result.slices.filter((pl.col("slice") == "surface") & (pl.col("ranker") == "model"))
    assert dict(zip(surfaces["slice_value"], surfaces["groups"], strict=True)) == {"recommend": 20, "search": 20}
    assert set(result.metrics["against"]) == {"labels", "truth"}
    assert result.headline["against"] == "truth"
    assert result.curve.filter(pl.col("ranker") == "oracle").height == 20


def test_headline_arithmetic():
    rows = [
        ("lightgbm", "model", 0.66),
        ("logging_policy", "baseline", 0.50),
        ("popularity", "baseline", 0.60),
        ("oracle", "oracle", 0.90),
    ]
    table = pl.DataFrame(
        [(r, k, "ndcg@10", v, "labels") for r, k, v in rows],
        schema=["ranker", "kind", "metric", "value", "against"],
        orient="row",
    )
    head = headline(table, "lightgbm")
    assert head["best_baseline"] == "popularity"
    assert head["lift"] == pytest.approx(10.0)  # 0.66 / 0.60 - 1
    assert head["gap_closed"] == pytest.approx(40.0)  # (0.66 - 0.50) / (0.90 - 0.50)
