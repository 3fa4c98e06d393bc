"""One training run: dataset -> split -> (tune) -> train -> baselines -> evaluate -> register -> report."""

from __future__ import annotations

import hashlib
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from shoprank import __version__
from shoprank.config import REPO_ROOT, Settings
from shoprank.errors import ConfigError
from shoprank.progress import Advance
from shoprank.simulate.truth import relevance
from shoprank.warehouse import connect
from training import metrics
from training.baselines import score_baselines
from training.contracts import GROUP, check_leakage
from training.dataset import DatasetResult, build_dataset
from training.evaluate import KS, Evaluation, evaluate, query_split, time_split
from training.labels import LabelSource
from training.rankers import POSITION, RankerConfig, train
from training.registry import ModelVersion, features_hash, register
from training.report import write_report
from training.tune import tune

# Baselines of each label source (plus bm25 wherever the rows hold search queries).
BASELINES = {
    "served": ("logging_policy", "random", "popularity", "category_popularity", "item_cf"),
    "candidates": ("random", "popularity", "category_popularity", "item_cf"),
    "judgments": ("random", "popularity"),
}


@dataclass(frozen=True)
class TrainingRun:
    """A registered model, its evaluation and where its report is."""

    model: ModelVersion
    evaluation: Evaluation
    dataset: DatasetResult
    report: Path
    seconds: float


def ranker_config(settings: Settings, **overrides: Any) -> RankerConfig:
    """The ranker's hyperparameters: defaults < the config file's ``[train]`` < ``overrides``.

    Raises:
        ConfigError: An unknown hyperparameter or a bad value.
    """
    values = {"seed": settings.seed, **settings.train, **{k: v for k, v in overrides.items() if v is not None}}
    known = RankerConfig.__dataclass_fields__
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"Unknown [train] setting(s) {unknown}; known: {', '.join(known)}")
    try:
        return RankerConfig(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Bad [train] setting: {exc}") from None


def train_model(
    settings: Settings,
    service: str = "ranker_v2",
    labels: LabelSource | None = None,
    config: RankerConfig | None = None,
    trials: int = 0,
    progress: Advance | None = None,
    dataset: DatasetResult | None = None,
) -> TrainingRun:
    """Build the service's training frame, train a ranker on the past, measure it and its
    baselines on the future, register it and write its report.

    Args:
        settings: The workdir (marts, applied feature store; ``truth/`` when simulated).
        service: The feature service the model reads.
        labels: The label source (default: served lists of the service's surfaces).
        config: Hyperparameters (default: ``ranker_config(settings)``).
        trials: Random-search trials on the validation NDCG@10 before the final fit (0: none).
        progress: Called as ``progress(n, what=...)`` per stage.
        dataset: The service's training frame when already built (else it is built here).

    Raises:
        ShoprankError: A stage failed (missing marts or service, a broken or leaky frame...).
    """
    started = time.perf_counter()
    config = config or ranker_config(settings)
    step = progress or (lambda *args, **kwargs: None)
    dataset = dataset or build_dataset(settings, service, labels=labels, progress=progress)
    frame = pl.read_parquet(dataset.path / "*.parquet")
    split = query_split(frame) if dataset.labels == "judgments" else time_split(frame)
    if config.position != "none" and split.train[POSITION].null_count() == split.train.height:
        config = replace(config, position="none")  # no served positions: nothing to correct
    check_leakage(split.train, dataset.features)
    trial_table = None
    if trials:
        step(0, what=f"tuning ({trials} trials)")
        config, trial_table = tune(config, split.train, split.valid, dataset.features, trials)
    step(0, what=f"training {config.algorithm}")
    ranker = train(config, split.train, split.valid, dataset.features)
    step(0, what="evaluating against baselines")
    searches = split.test["query"].null_count() < split.test.height
    names = tuple(dict.fromkeys(BASELINES[dataset.labels] + (("bm25",) if searches else ())))
    baselines = score_baselines(settings, split.test, names)
    truth = truth_relevance(settings, split.test) if dataset.labels != "judgments" else None
    evaluation = evaluate(split.test, (config.algorithm, ranker.predict(split.test)), baselines, truth, settings.seed)
    valid = metrics.ranking_metrics(
        split.valid["label"].to_numpy(), ranker.predict(split.valid), split.valid[GROUP].to_numpy(), KS
    )
    test = evaluation.metrics.filter((pl.col("ranker") == config.algorithm) & (pl.col("against") == "labels"))
    card = {
        "service": service,
        "algorithm": config.algorithm,
        "features": list(ranker.features),
        "service_features": dataset.types,
        "features_hash": features_hash(dataset.types),
        "label_source": dataset.labels,
        "window": split.windows,
        "rows": split.rows,
        "groups": split.groups,
        "lineage": lineage(settings),
        "config": asdict(config),
        "seed": settings.seed,
        "best_iteration": ranker.best_iteration,
        "metrics": {"valid": valid, "test": dict(zip(test["metric"], test["value"], strict=True))},
        "headline": evaluation.headline,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    tables = {
        "evaluation/metrics.parquet": evaluation.metrics,
        "evaluation/ndcg_curve.parquet": evaluation.curve,
        "evaluation/slices.parquet": evaluation.slices,
        "importance.parquet": ranker.importance(),
        "learning_curve.parquet": ranker.curve,
    }
    if trial_table is not None:
        tables["tuning.parquet"] = trial_table
    if labels is not None and labels.recall is not None:
        card["candidate_recall"] = asdict(labels.recall(settings))
    model = register(settings, ranker, card, tables)
    report = write_report(model.path)
    return TrainingRun(model, evaluation, dataset, report, time.perf_counter() - started)


def truth_relevance(settings: Settings, rows: pl.DataFrame) -> np.ndarray | None:
    """The simulator's true relevance of each row's (user, item), or None for a real shop."""
    users, items = settings.truth / "user_latent.parquet", settings.truth / "item_latent.parquet"
    if not (users.is_file() and items.is_file()):
        return None
    return relevance(pl.read_parquet(users), pl.read_parquet(items), rows.select("user_id", "item_id"))


def lineage(settings: Settings) -> dict[str, Any]:
    """Where the training data came from: the dbt manifest, the warehouse's ingest runs, the code."""
    manifest = settings.dbt_target / "manifest.json"
    with connect(settings.warehouse, read_only=True) as con:
        runs, last = con.execute(
            "select count(*), max(finished_at) from raw.ingest_runs where status = 'done'"
        ).fetchall()[0]
    return {
        "dbt_manifest_hash": hashlib.sha256(manifest.read_bytes()).hexdigest()[:16] if manifest.is_file() else None,
        "warehouse": {
            "path": str(settings.warehouse.resolve()),
            "bytes": settings.warehouse.stat().st_size,
            "ingest_runs": runs,
            "last_ingest": str(last),
        },
        "code_version": _code_version(),
    }


def _code_version() -> str:
    """The package version and, in a git checkout, the commit (``+dirty`` with local changes)."""
    try:
        commit = subprocess.run(
            ["git", "describe", "--always", "--dirty=+dirty"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return __version__
    return f"{__version__} ({commit})"
