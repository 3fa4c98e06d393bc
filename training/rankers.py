"""Learning-to-rank models: LightGBM ``lambdarank`` and XGBoost ``rank:ndcg`` on one feature list.

Both train on contiguous ``query_id`` groups with early stopping on the validation NDCG@10, read
the same matrix (numeric features as float64, string features as categoricals whose vocabulary
is fixed at training and saved with the model) and give scores, per-prediction contributions
(SHAP values from the models' own ``pred_contrib``/``pred_contribs``), gain importance and the
learning curve. Position bias (``RankerConfig.position``):

- ``feature``: the served position is a feature in training and a constant (``SERVING_POSITION``)
  when scoring, so the model learns the position effect apart and ranks as if every item sat at
  the top;
- ``unbiased``: the models' own unbiased LambdaMART (LightGBM's ``position`` of a dataset,
  XGBoost's ``lambdarank_unbiased``), which estimates position propensities while training;
- ``none``: position is ignored (the clicks' position bias stays in the labels).

``RankerConfig.prior`` names a feature to boost from: its value (times ``prior_weight``) is every
row's starting score (LightGBM's ``init_score``, XGBoost's ``base_margin``), so the trees learn a
correction to a strong ranker such as ``title_bm25`` instead of rediscovering it from scratch; it is
added to every prediction and shows as its own ``prior`` column in the contributions.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import polars as pl
import xgboost as xgb

from shoprank.errors import ConfigError, ContractError
from training.contracts import GROUP

ALGORITHMS = ("lightgbm", "xgboost")
POSITION_MODES = ("feature", "unbiased", "none")
POSITION = "position"
SERVING_POSITION = 0
EVAL_AT = 10
ONE_THREAD_ROWS = 5_000  # rows a prediction scores on one thread
MODEL_FILES = {"lightgbm": "model.lgb.txt", "xgboost": "model.xgb.json"}


@dataclass(frozen=True)
class RankerConfig:
    """Hyperparameters of a ranker (the ``[train]`` table of the config file)."""

    algorithm: str = "lightgbm"
    objective: str = ""  # default: lambdarank (LightGBM), rank:ndcg (XGBoost); rank:pairwise works too
    position: str = "feature"
    learning_rate: float = 0.05
    num_leaves: int = 31
    max_depth: int = 8
    min_child_samples: int = 100
    subsample: float = 0.8
    colsample: float = 0.8
    l2: float = 1.0
    rounds: int = 500
    early_stopping: int = 40
    threads: int = 2
    seed: int = 0
    prior: str = ""  # a feature whose value starts every score ("" for none), e.g. title_bm25
    prior_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f'Unknown algorithm "{self.algorithm}"; use one of {", ".join(ALGORITHMS)}')
        if self.position not in POSITION_MODES:
            raise ConfigError(f'Unknown position mode "{self.position}"; use one of {", ".join(POSITION_MODES)}')


@dataclass
class Ranker:
    """A trained ranker: its booster, the ordered columns it reads and their categories.

    Attributes:
        config: The hyperparameters it was trained with.
        features: Input columns, in model order (the service's features, then ``position`` when
            ``config.position == "feature"``).
        categories: Vocabulary of each string feature (codes follow this order).
        booster: The LightGBM ``Booster`` or XGBoost ``Booster``.
        best_iteration: Rounds kept by early stopping.
        curve: Learning curve: ``iteration``, ``dataset`` (train/valid), ``metric``, ``value``.
    """

    config: RankerConfig
    features: tuple[str, ...]
    categories: dict[str, list[str]]
    booster: Any
    best_iteration: int
    curve: pl.DataFrame = field(default_factory=pl.DataFrame)

    def predict(self, frame: pl.DataFrame) -> np.ndarray:
        """Scores of the rows of ``frame`` (higher ranks first)."""
        return self._predict(frame, contributions=False) + _prior(frame, self.config)

    def score(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """``predict`` of rows given as Python values by column (one request's candidates): the
        model's matrix is built straight from them, without a frame, when every input is a number."""
        if self.categories:
            return self.predict(pl.DataFrame(dict(columns), strict=False))
        n = len(next(iter(columns.values())))
        serving = {POSITION: [SERVING_POSITION] * n} if self.config.position == "feature" else {}
        inputs = (serving[name] if name in serving else columns[name] for name in self.features)
        # one pass over the values (None is NaN), twice as fast as np.array over the columns' lists
        flat = np.fromiter(itertools.chain.from_iterable(inputs), "float64", n * len(self.features))
        matrix = np.ascontiguousarray(flat.reshape(len(self.features), n).T)
        scores = self._booster_predict(matrix, contributions=False)
        if not self.config.prior:
            return scores
        return scores + _weighted_prior(np.array(columns[self.config.prior], "float64"), self.config)

    def contributions(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Per-row SHAP values: one column per feature, then ``prior`` when boosting from one, then
        ``bias``; each row sums to the score."""
        values = pl.DataFrame(self._predict(frame, contributions=True), schema=[*self.features, "bias"], orient="row")
        if not self.config.prior:
            return values
        return values.insert_column(len(self.features), pl.Series("prior", _prior(frame, self.config)))

    def importance(self) -> pl.DataFrame:
        """Total gain and number of splits per feature, by gain descending."""
        if self.config.algorithm == "lightgbm":
            gain = self.booster.feature_importance("gain", iteration=self.best_iteration)
            splits = self.booster.feature_importance("split", iteration=self.best_iteration)
        else:
            by_gain = self.booster.get_score(importance_type="total_gain")
            by_count = self.booster.get_score(importance_type="weight")
            gain = [by_gain.get(name, 0.0) for name in self.features]
            splits = [int(by_count.get(name, 0)) for name in self.features]
        table = pl.DataFrame(
            {"feature": list(self.features), "gain": np.asarray(gain, "float64"), "splits": np.asarray(splits, "int64")}
        )
        return table.sort(["gain", "feature"], descending=[True, False])

    def save(self, folder: Path) -> Path:
        """Write the model file into ``folder``; return its path."""
        path = folder / MODEL_FILES[self.config.algorithm]
        if self.config.algorithm == "lightgbm":
            self.booster.save_model(path, num_iteration=self.best_iteration)
        else:
            self.booster.save_model(path)
        return path

    def _predict(self, frame: pl.DataFrame, contributions: bool) -> np.ndarray:
        rows = _serving(frame, self.config)
        # a plain array when every input is a number: the boosters read it without pandas' checks
        matrix = _matrix(rows, self.features, self.categories) if self.categories else _numbers(rows, self.features)
        return self._booster_predict(matrix, contributions)

    def _booster_predict(self, matrix: np.ndarray | pd.DataFrame, contributions: bool) -> np.ndarray:
        # one thread for a request's candidates: starting the others costs more than they save
        threads = 1 if len(matrix) <= ONE_THREAD_ROWS else self.config.threads
        if self.config.algorithm == "lightgbm":
            return self.booster.predict(
                matrix, num_iteration=self.best_iteration, pred_contrib=contributions, num_threads=threads
            )
        names = None if self.categories else list(self.features)
        data = xgb.DMatrix(matrix, enable_categorical=True, nthread=threads, feature_names=names)
        rounds = (0, self.best_iteration)
        return self.booster.predict(data, iteration_range=rounds, pred_contribs=contributions).astype("float64")


def train(
    config: RankerConfig, train_rows: pl.DataFrame, valid_rows: pl.DataFrame, features: tuple[str, ...]
) -> Ranker:
    """Train a ranker with early stopping on the validation NDCG@10.

    Args:
        config: Hyperparameters.
        train_rows: Training frame (contiguous ``query_id`` groups, ``label``, ``position`` when
            the position mode needs it, and every column of ``features``).
        valid_rows: Validation frame of the same shape (later in time than ``train_rows``).
        features: The feature service's columns, in order.

    Raises:
        ContractError: A frame lacks a column or a group.
    """
    columns = (*features, POSITION) if config.position == "feature" else tuple(features)
    if config.prior and config.prior not in features:
        close = [f for f in features if f.endswith(f"__{config.prior}")] or difflib.get_close_matches(
            config.prior, features
        )
        hint = f"did you mean {', '.join(close)}?" if close else f"use one of {', '.join(features)}"
        raise ConfigError(f'The prior "{config.prior}" is not a feature of the service; {hint}')
    for name, rows in (("training", train_rows), ("validation", valid_rows)):
        missing = [c for c in (*columns, GROUP, "label") if c not in rows.columns]
        if missing or rows.height == 0:
            raise ContractError(f"The {name} frame has no rows or lacks column(s) {missing}; rebuild the dataset")
    categories = {
        name: sorted(train_rows[name].drop_nulls().unique().to_list())
        for name in columns
        if train_rows.schema[name] == pl.Utf8
    }
    fit = _fit_lightgbm if config.algorithm == "lightgbm" else _fit_xgboost
    booster, best, curve = fit(config, *(_data(rows, columns, categories, config) for rows in (train_rows, valid_rows)))
    return Ranker(config, columns, categories, booster, best, curve)


def load(folder: Path, config: RankerConfig, features: tuple[str, ...], categories: dict[str, list[str]]) -> Ranker:
    """A ranker saved by ``Ranker.save`` (its curve is not kept)."""
    path = folder / MODEL_FILES[config.algorithm]
    if config.algorithm == "lightgbm":
        booster = lgb.Booster(model_file=path)
        return Ranker(config, features, categories, booster, booster.current_iteration())
    booster = xgb.Booster(model_file=path)
    return Ranker(config, features, categories, booster, booster.num_boosted_rounds())


@dataclass(frozen=True)
class _Data:
    matrix: pd.DataFrame
    labels: np.ndarray
    groups: np.ndarray  # group sizes, in row order
    positions: np.ndarray | None
    prior: np.ndarray | None


def _data(rows: pl.DataFrame, columns: tuple[str, ...], categories: dict, config: RankerConfig) -> _Data:
    sizes = rows.select(pl.col(GROUP).rle().struct.field("len"))[:, 0].to_numpy()
    positions = rows[POSITION].fill_null(0).to_numpy() if config.position == "unbiased" else None
    prior = _prior(rows, config) if config.prior else None
    return _Data(_matrix(rows, columns, categories), rows["label"].to_numpy(), sizes, positions, prior)


def _prior(rows: pl.DataFrame, config: RankerConfig) -> np.ndarray | float:
    """Each row's starting score: the prior feature times its weight (0 where missing)."""
    if not config.prior:
        return 0.0
    return _weighted_prior(rows[config.prior].cast(pl.Float64).to_numpy(), config)


def _weighted_prior(values: np.ndarray, config: RankerConfig) -> np.ndarray:
    """The prior feature's values (NaN where missing) as starting scores: times its weight, 0 where missing."""
    return np.where(np.isnan(values), 0.0, values) * config.prior_weight


def _matrix(rows: pl.DataFrame, columns: tuple[str, ...], categories: dict[str, list[str]]) -> pd.DataFrame:
    """The model's input: numbers as float64, strings as categoricals of the training vocabulary."""
    numbers = [c for c in columns if c not in categories]
    matrix = rows.select([pl.col(c).cast(pl.Float64) for c in numbers]).to_pandas()
    for name, vocabulary in categories.items():
        matrix[name] = pd.Categorical(rows[name].to_list(), categories=vocabulary)
    return matrix[list(columns)]


def _numbers(rows: pl.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """The model's input when it is all numbers: a float64 array, columns in model order."""
    return rows.select([pl.col(c).cast(pl.Float64) for c in columns]).to_numpy()


def _serving(frame: pl.DataFrame, config: RankerConfig) -> pl.DataFrame:
    """Rows as serving sees them: with position as a feature, every item at ``SERVING_POSITION``."""
    if config.position != "feature":
        return frame
    return frame.with_columns(pl.lit(SERVING_POSITION, pl.Int64).alias(POSITION))


def _fit_lightgbm(config: RankerConfig, train: _Data, valid: _Data) -> tuple[Any, int, pl.DataFrame]:
    params = {
        "objective": config.objective or "lambdarank",
        "metric": "ndcg",
        "eval_at": [EVAL_AT],
        "learning_rate": config.learning_rate,
        "num_leaves": config.num_leaves,
        "max_depth": config.max_depth,
        "min_child_samples": config.min_child_samples,
        "bagging_fraction": config.subsample,
        "bagging_freq": 1,
        "feature_fraction": config.colsample,
        "lambda_l2": config.l2,
        "num_threads": config.threads,
        "seed": config.seed,
        "deterministic": True,
        "verbosity": -1,
    }
    datasets = [
        lgb.Dataset(d.matrix, d.labels, group=d.groups, position=d.positions, init_score=d.prior, free_raw_data=False)
        for d in (train, valid)
    ]
    datasets[1].reference = datasets[0]
    history: dict = {}
    booster = lgb.train(
        params,
        datasets[0],
        num_boost_round=config.rounds,
        valid_sets=datasets,
        valid_names=["train", "valid"],
        callbacks=[lgb.early_stopping(config.early_stopping, verbose=False), lgb.record_evaluation(history)],
    )
    curve = _curve({name: scores[f"ndcg@{EVAL_AT}"] for name, scores in history.items()})
    return booster, booster.best_iteration or config.rounds, curve


def _fit_xgboost(config: RankerConfig, train: _Data, valid: _Data) -> tuple[Any, int, pl.DataFrame]:
    params = {
        "objective": config.objective or "rank:ndcg",
        "eval_metric": f"ndcg@{EVAL_AT}",
        "learning_rate": config.learning_rate,
        "max_depth": config.max_depth,
        "min_child_weight": 1.0,
        "subsample": config.subsample,
        "colsample_bytree": config.colsample,
        "lambda": config.l2,
        "tree_method": "hist",
        "nthread": config.threads,
        "seed": config.seed,
        "lambdarank_unbiased": config.position == "unbiased",
    }
    matrices = [
        xgb.DMatrix(
            d.matrix, d.labels, group=d.groups, base_margin=d.prior, enable_categorical=True, nthread=config.threads
        )
        for d in (train, valid)
    ]
    history: dict = {}
    booster = xgb.train(
        params,
        matrices[0],
        num_boost_round=config.rounds,
        evals=[(matrices[0], "train"), (matrices[1], "valid")],
        early_stopping_rounds=config.early_stopping,
        evals_result=history,
        verbose_eval=False,
    )
    booster = booster[: booster.best_iteration + 1]
    curve = _curve({name: scores[f"ndcg@{EVAL_AT}"] for name, scores in history.items()})
    return booster, booster.num_boosted_rounds(), curve


def _curve(history: dict[str, list[float]]) -> pl.DataFrame:
    return pl.concat(
        pl.DataFrame(
            {
                "iteration": np.arange(1, len(values) + 1),
                "dataset": name,
                "metric": f"ndcg@{EVAL_AT}",
                "value": np.asarray(values, "float64"),
            }
        )
        for name, values in history.items()
    )
