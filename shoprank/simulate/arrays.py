"""Small vectorized helpers shared by the simulator's modules: times, ids, ragged tables."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND


def us(moment: datetime) -> int:
    """Microseconds since 1970-01-01 of a naive UTC datetime."""
    return int((np.datetime64(moment, "us") - np.datetime64(0, "us")).astype(np.int64))


def seconds(values: np.ndarray | float) -> np.ndarray:
    """Seconds (float) as whole microseconds."""
    return np.round(np.asarray(values) * US_PER_SECOND).astype(np.int64)


def timestamps(values_us: np.ndarray, name: str) -> pl.Series:
    """Microseconds since 1970 as a naive UTC ``Datetime("us")`` series."""
    return pl.Series(name, values_us, dtype=pl.Int64).cast(pl.Datetime("us"))


def ids(prefix: str, numbers: np.ndarray, width: int, name: str) -> pl.Series:
    """Format numbers as string ids (``ids("u", [5], 6, ..)`` -> ``"u000005"``); negatives become null."""
    n = pl.Series(name, numbers, dtype=pl.Int64)
    return pl.select(pl.when(n >= 0).then(pl.lit(prefix) + n.cast(pl.String).str.zfill(width))).to_series().alias(name)


def gather(values: pl.Series, index: np.ndarray) -> pl.Series:
    """``values`` at ``index``; index -1 gives null."""
    position = pl.Series(index, dtype=pl.Int64)
    return values.gather(pl.select(pl.when(position >= 0).then(position)).to_series())


def padded(groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Stack ragged id lists into a -1 padded matrix and their lengths."""
    width = max(1, max(len(g) for g in groups))
    matrix = np.full((len(groups), width), -1, dtype=np.int64)
    for row, group in enumerate(groups):
        matrix[row, : len(group)] = group
    return matrix, np.array([len(g) for g in groups])


def pick(matrix: np.ndarray, counts: np.ndarray, rows: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Pick one entry of each given row of a padded matrix, uniformly by ``r`` in [0, 1) (-1 if empty)."""
    k = np.minimum((r * counts[rows]).astype(np.int64), np.maximum(counts[rows] - 1, 0))
    return np.where(counts[rows] > 0, matrix[rows, k], -1)


def categorical(cumulative: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Draw one category per row from row-wise cumulative probabilities (last column 1)."""
    return np.minimum((r[:, None] > cumulative).sum(axis=1), cumulative.shape[1] - 1)


def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted unique values (sort-based; much faster than ``np.unique`` on large int arrays)."""
    ordered = np.sort(values)
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])] if len(ordered) else ordered


def group_starts(ordered: np.ndarray) -> np.ndarray:
    """Index of the first element of every run of equal values in a sorted array."""
    return np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]])) if len(ordered) else ordered


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-x))
