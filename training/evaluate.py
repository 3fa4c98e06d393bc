"""Honest evaluation: time-based splits, and every ranker scored on the same test rows.

A model, the baselines and (on the simulator) the oracle that ranks by the true relevance are
measured per group with ``training.metrics``, against the observed labels and, when the shop is
simulated, against the true relevance grades. Rows are shuffled within their group first (with a
fixed seed) so that ties never inherit the served order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from shoprank.errors import ContractError
from shoprank.simulate.truth import grade
from training import metrics
from training.contracts import GROUP

KS = (5, 10, 20)
HEADLINE = "ndcg@10"
LOGGING_POLICY = "logging_policy"
ORACLE = "oracle"
SLICE_METRIC = "ndcg@10"


@dataclass(frozen=True)
class Split:
    """Train, validation and test frames, and the time (or query) window of each."""

    train: pl.DataFrame
    valid: pl.DataFrame
    test: pl.DataFrame
    windows: dict[str, tuple[str, str]]

    @property
    def rows(self) -> dict[str, int]:
        return {name: getattr(self, name).height for name in ("train", "valid", "test")}

    @property
    def groups(self) -> dict[str, int]:
        return {name: getattr(self, name)[GROUP].n_unique() for name in ("train", "valid", "test")}


def time_split(frame: pl.DataFrame, valid_fraction: float = 0.1, test_fraction: float = 0.2) -> Split:
    """Split whole groups by time: the oldest for training, then validation, the newest for test.

    A group's time is its ``event_timestamp``; the cuts fall at the group quantiles
    ``1 - valid_fraction - test_fraction`` and ``1 - test_fraction``.

    Raises:
        ContractError: Too few groups to give every part one.
    """
    times = frame.group_by(GROUP).agg(pl.col("event_timestamp").min()).sort("event_timestamp", GROUP)
    if times.height < 3:
        raise ContractError(f"Only {times.height} group(s) in the frame; a time split needs at least 3")
    cut_valid = times["event_timestamp"][int(times.height * (1 - valid_fraction - test_fraction))]
    cut_test = times["event_timestamp"][int(times.height * (1 - test_fraction))]
    ts = pl.col("event_timestamp")
    parts = [
        frame.filter(ts < cut_valid),
        frame.filter((ts >= cut_valid) & (ts < cut_test)),
        frame.filter(ts >= cut_test),
    ]
    return _split(parts, lambda part: (_iso(part["event_timestamp"].min()), _iso(part["event_timestamp"].max())))


def query_split(frame: pl.DataFrame, valid_fraction: float = 0.1, test_fraction: float = 0.2) -> Split:
    """Split whole groups by a stable hash of ``query_id`` (for judgments, which have no time)."""
    buckets = frame[GROUP].map_elements(lambda q: zlib.crc32(q.encode()) % 1000 / 1000, return_dtype=pl.Float64)
    train_end = 1 - valid_fraction - test_fraction
    parts = [
        frame.filter(buckets < train_end),
        frame.filter((buckets >= train_end) & (buckets < 1 - test_fraction)),
        frame.filter(buckets >= 1 - test_fraction),
    ]
    return _split(parts, lambda part: (f"{part[GROUP].n_unique()} queries", "split by query hash"))


def _split(parts: list[pl.DataFrame], window) -> Split:
    names = ("train", "valid", "test")
    empty = [name for name, part in zip(names, parts, strict=True) if part.height == 0]
    if empty:
        raise ContractError(f"The {', '.join(empty)} part of the split is empty; use more data or other fractions")
    return Split(*parts, windows={name: window(part) for name, part in zip(names, parts, strict=True)})


@dataclass(frozen=True)
class Evaluation:
    """Metrics of every ranker on the test rows (tables as in the registry's ``evaluation/``)."""

    metrics: pl.DataFrame  # ranker, kind, metric, value, against
    curve: pl.DataFrame  # ranker, k, ndcg (against the true relevance when known, as the headline)
    slices: pl.DataFrame  # slice, slice_value, ranker, metric, score, groups
    headline: dict


def evaluate(
    test: pl.DataFrame,
    model: tuple[str, np.ndarray],
    baselines: dict[str, np.ndarray],
    truth: np.ndarray | None = None,
    seed: int = 0,
) -> Evaluation:
    """Measure a model and its baselines on the same test rows.

    Args:
        test: The test frame (contiguous groups, ``label``; ``surface``, ``category_path`` and
            ``user_features__*`` columns feed the slices when present).
        model: The model's name and its scores.
        baselines: Scores of each baseline.
        truth: True relevance of each row (simulated shops): adds the oracle, and metrics against
            the true grades.
        seed: Seed of the within-group shuffle.
    """
    rankers = {model[0]: ("model", model[1]), **{name: ("baseline", s) for name, s in baselines.items()}}
    if truth is not None:
        rankers[ORACLE] = ("oracle", truth)
    order = _shuffled(test, seed)
    rows, groups = test[order], test[GROUP].to_numpy()[order]
    labels = rows["label"].to_numpy().astype("float64")
    grades = None if truth is None else grade(truth[order]).astype("float64")
    shuffled = {name: np.asarray(scores, "float64")[order] for name, (_, scores) in rankers.items()}
    measured, curves = [], []
    for name, (kind, _) in rankers.items():
        scores = shuffled[name]
        for against, gains in (("labels", labels), ("truth", grades)):
            if gains is not None:
                values = metrics.ranking_metrics(gains, scores, groups, KS)
                measured += [
                    (name, kind, metric, float(v), against) for metric, v in values.items() if metric != "groups"
                ]
        basis = labels if grades is None else grades  # the headline's basis
        curves += [(name, k, float(v)) for k, v in metrics.ndcg_curve(basis, scores, groups).items()]
    table = pl.DataFrame(measured, schema=["ranker", "kind", "metric", "value", "against"], orient="row")
    curve = pl.DataFrame(curves, schema=["ranker", "k", "ndcg"], orient="row")
    slices = _slices(rows, groups, labels, shuffled)
    return Evaluation(table, curve, slices, headline(table, model[0]))


def headline(table: pl.DataFrame, model: str) -> dict:
    """The model's NDCG@10 against the best baseline, and the share of the gap between the
    logging policy and the oracle that it closes (when both were measured).

    On a simulated shop the headline is measured against the true relevance: observed clicks
    carry the served positions' bias, which favors the logging policy that chose the positions.
    """
    against = "truth" if (table["against"] == "truth").any() else "labels"
    chosen = table.filter((pl.col("against") == against) & (pl.col("metric") == HEADLINE))
    value = dict(zip(chosen["ranker"], chosen["value"], strict=True))
    baselines = chosen.filter(pl.col("kind") == "baseline").sort("value", descending=True)
    best = baselines["ranker"][0] if baselines.height else None
    result = {"metric": HEADLINE, "against": against, "model": value[model], "best_baseline": best}
    result["baseline"] = value.get(best)
    result["lift"] = 100 * (value[model] / value[best] - 1) if best and value[best] else None
    closed = metrics.gap_closed(value[model], value.get(LOGGING_POLICY, np.nan), value.get(ORACLE, np.nan))
    result["gap_closed"] = None if np.isnan(closed) else 100 * closed
    return result


def _shuffled(test: pl.DataFrame, seed: int) -> np.ndarray:
    """Row order with groups kept contiguous and rows shuffled inside each group."""
    codes = test[GROUP].rle_id().to_numpy()
    return np.lexsort((np.random.default_rng(seed).random(test.height), codes))


def _slices(rows: pl.DataFrame, groups: np.ndarray, labels: np.ndarray, scores: dict[str, np.ndarray]) -> pl.DataFrame:
    """NDCG@10 of each ranker per surface, user activity (new / returning) and top category."""
    per_group = rows.select(GROUP, *_slice_columns(rows)).group_by(GROUP, maintain_order=True).first()
    schema = ["slice", "slice_value", "ranker", "metric", "score", "groups"]
    measured = {name: metrics.ndcg_at(labels, s, groups, 10) for name, s in scores.items()}
    out = []
    for column in (c for c in per_group.columns if c != GROUP):
        values = per_group[column].fill_null("unknown").to_numpy()
        for value in np.unique(values):
            chosen = values == value
            for name, ndcg in measured.items():
                kept = ndcg[chosen][~np.isnan(ndcg[chosen])]
                if kept.size:
                    out.append((column, str(value), name, SLICE_METRIC, float(kept.mean()), int(kept.size)))
    return pl.DataFrame(out, schema=schema, orient="row")


def _slice_columns(rows: pl.DataFrame) -> list[pl.Expr]:
    columns = rows.columns
    exprs = []
    if "surface" in columns:
        exprs.append(pl.col("surface"))
    user = [c for c in columns if c.startswith("user_features__")]
    if user:
        known = pl.any_horizontal([pl.col(c).is_not_null() for c in user])
        exprs.append(pl.when(known).then(pl.lit("returning")).otherwise(pl.lit("new")).alias("user_activity"))
    if "category_path" in columns:
        top = pl.col("category_path").str.split(" > ").list.first()
        exprs.append(top.mode().first().over(GROUP).alias("category"))
    return exprs


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""
