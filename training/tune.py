"""A short random search of ranker hyperparameters on the validation NDCG@10."""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
import polars as pl

from training.rankers import RankerConfig, train

SPACE = {
    "learning_rate": (0.03, 0.05, 0.1, 0.2),
    "num_leaves": (15, 31, 63, 127),
    "max_depth": (6, 8, 10, 12),
    "min_child_samples": (20, 50, 100, 200),
    "colsample": (0.6, 0.8, 1.0),
    "l2": (0.0, 1.0, 10.0),
}


def tune(
    config: RankerConfig, train_rows: pl.DataFrame, valid_rows: pl.DataFrame, features: tuple[str, ...], trials: int
) -> tuple[RankerConfig, pl.DataFrame]:
    """Try ``trials`` random configurations (the first is ``config`` itself) and keep the best.

    Returns:
        The best configuration, and a table of every trial (its parameters, rounds and score).
    """
    rng = np.random.default_rng(config.seed)
    candidates = [config] + [
        replace(config, **{name: values[rng.integers(len(values))] for name, values in SPACE.items()})
        for _ in range(trials - 1)
    ]
    rows = []
    for number, candidate in enumerate(candidates):
        ranker = train(candidate, train_rows, valid_rows, features)
        valid = ranker.curve.filter(pl.col("dataset") == "valid")["value"]
        score = float(valid[ranker.best_iteration - 1])
        rows.append({"trial": number, **asdict(candidate), "rounds": ranker.best_iteration, "valid_ndcg@10": score})
    table = pl.DataFrame(rows)
    best = table.sort("valid_ndcg@10", descending=True).row(0, named=True)
    return replace(config, **{name: best[name] for name in SPACE}), table
