"""The main job and its steps, as library calls the CLI wraps: simulate -> ingest -> build ->
validate -> features apply -> materialize -> training frames -> train, evaluate, register, report."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, TypeVar

from shoprank import warehouse
from shoprank.build import BuildResult, dbt_build
from shoprank.config import Settings
from shoprank.features.definitions import Definitions, apply
from shoprank.features.materialize import MaterializeResult, materialize
from shoprank.ingest import journal
from shoprank.ingest.run import IngestReport, ingest
from shoprank.progress import Advance
from shoprank.salt import pii_salt
from shoprank.simulate import ShopSpec, SimulationSummary, simulate, spec_for
from shoprank.validate import MartReport, validate_marts
from training.dataset import DatasetResult, build_dataset
from training.run import TrainingRun, train_model

ProgressFactory = Callable[[str], AbstractContextManager[Advance]]
T = TypeVar("T")


SERVICES = ("ranker_v2", "search_ranker_v2")


@dataclass
class PipelineResult:
    """What each step of the main job produced, and how long each took."""

    simulation: SimulationSummary
    ingest: IngestReport
    build: BuildResult
    marts: list[MartReport]
    definitions: Definitions
    materialized: MaterializeResult
    datasets: list[DatasetResult]
    trainings: list[TrainingRun]  # one per service of SERVICES
    seconds: dict[str, float] = field(default_factory=dict)


def run_simulation(settings: Settings, advance: Advance | None = None) -> SimulationSummary:
    """Simulate the configured shop into the workdir's landing folder (truth kept apart).

    Raises:
        ConfigError: Unknown preset or simulator option.
    """
    report = None if advance is None else (lambda done, total, what: advance(1, what, total))
    return simulate(shop_spec(settings), settings.seed, settings.landing, settings.truth, report)


def shop_spec(settings: Settings) -> ShopSpec:
    """The simulator's spec of the settings: the preset with its overrides.

    Raises:
        ConfigError: Unknown preset or simulator option.
    """
    options = dict(settings.simulate)
    return spec_for(options.pop("preset"), options)


def run_pipeline(settings: Settings, progress: ProgressFactory) -> PipelineResult:
    """Run simulate -> ingest -> dbt build -> validate -> features apply -> materialize ->
    training frames (one per feature service) -> train the recommendation and the search ranker
    (each evaluated against the baselines, registered, with its report) on the workdir.

    Args:
        settings: Resolved settings (workdir, seed, simulator preset and options).
        progress: Makes a progress display per step (``shoprank.progress.progress_bar``).

    Raises:
        ShoprankError: A step failed; later steps do not run.
    """
    pii_salt(settings)  # the production profile refuses to start without a salt of its own
    timed = Steps(progress)
    simulation = timed("simulate", lambda advance: run_simulation(settings, advance))
    loaded = load_and_build(settings, [settings.landing], timed)
    definitions = timed("features apply", lambda advance: apply(settings))
    trained = materialize_and_train(settings, timed)
    return PipelineResult(simulation, *loaded, definitions, *trained, timed.seconds)


class Steps:
    """Runs the steps of a job, each under its own progress display, and times them."""

    def __init__(self, progress: ProgressFactory) -> None:
        self.progress = progress
        self.seconds: dict[str, float] = {}

    def __call__(self, step: str, run: Callable[[Advance], T]) -> T:
        started = time.perf_counter()
        with self.progress(step) as advance:
            result = run(advance)
        self.seconds[step] = time.perf_counter() - started
        return result


class Loaded(NamedTuple):
    """What ingest -> dbt build -> validate produced."""

    ingest: IngestReport
    build: BuildResult
    marts: list[MartReport]


class Trained(NamedTuple):
    """What materialize -> training frames -> train produced (one frame and model per service)."""

    materialized: MaterializeResult
    datasets: list[DatasetResult]
    trainings: list[TrainingRun]


def load_and_build(settings: Settings, paths: list[Path], timed: Steps) -> Loaded:
    """Ingest ``paths`` (files or folders), then ``dbt build`` (incremental) and validate the marts."""
    report = timed(
        "ingest",
        lambda advance: ingest(
            settings.warehouse, paths, progress=lambda src, rows: advance(rows), lake=settings.raw_lake
        ),
    )
    build = timed("build", lambda advance: dbt_build(settings, progress=advance))
    marts = timed("validate", lambda advance: validate_marts(settings, advance))
    return Loaded(report, build, marts)


def materialize_and_train(settings: Settings, timed: Steps) -> Trained:
    """Materialize the online store (incremental), build each service's training frame and train,
    evaluate and register a new model version of each of ``SERVICES``."""
    materialized = timed("materialize", lambda advance: materialize(settings, progress=advance))
    datasets = timed(
        "datasets", lambda advance: [build_dataset(settings, service, progress=advance) for service in SERVICES]
    )
    trainings = timed(
        "train",
        lambda advance: [
            train_model(settings, service, progress=advance, dataset=dataset)
            for service, dataset in zip(SERVICES, datasets, strict=True)
        ],
    )
    return Trained(materialized, datasets, trainings)


@dataclass(frozen=True)
class WorkdirStatus:
    """Rows per table in each warehouse schema (raw, quarantine, marts)."""

    schemas: dict[str, dict[str, int]]


def workdir_status(settings: Settings) -> WorkdirStatus:
    """Count the rows of every table the workdir's warehouse holds (of the raw and quarantine
    contract tables, the rows of committed ingest runs only).

    Raises:
        WarehouseError: There is no warehouse in the workdir yet.
    """
    con = warehouse.connect(settings.warehouse, read_only=True)
    try:
        counts = {schema: warehouse.table_counts(con, schema) for schema in ("raw", "quarantine", "marts")}
        for schema in ("raw", "quarantine"):
            if "ingest_runs" in counts["raw"]:
                counts[schema].update(journal.committed_counts(con, schema))
        return WorkdirStatus(counts)
    finally:
        con.close()
