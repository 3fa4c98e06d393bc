"""The main job and its steps, as library calls the CLI wraps: simulate -> ingest -> build ->
validate -> features apply -> materialize -> training frames -> train, evaluate, register, report."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from shoprank import warehouse
from shoprank.build import BuildResult, dbt_build
from shoprank.config import Settings
from shoprank.features.definitions import Definitions, apply
from shoprank.features.materialize import MaterializeResult, materialize
from shoprank.ingest.run import IngestReport, ingest
from shoprank.progress import Advance
from shoprank.simulate import SimulationSummary, simulate, spec_for
from shoprank.validate import MartReport, validate_marts
from training.dataset import DatasetResult, build_dataset
from training.run import TrainingRun, train_model

ProgressFactory = Callable[[str], AbstractContextManager[Advance]]


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
    options = dict(settings.simulate)
    spec = spec_for(options.pop("preset"), options)
    report = None if advance is None else (lambda done, total, what: advance(1, what, total))
    return simulate(spec, settings.seed, settings.landing, settings.truth, report)


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
    seconds: dict[str, float] = {}

    def timed(step: str, run: Callable[[Advance], object]) -> object:
        started = time.perf_counter()
        with progress(step) as advance:
            result = run(advance)
        seconds[step] = time.perf_counter() - started
        return result

    simulation = timed("simulate", lambda advance: run_simulation(settings, advance))
    report = timed(
        "ingest",
        lambda advance: ingest(settings.warehouse, [settings.landing], progress=lambda src, rows: advance(rows)),
    )
    build = timed("build", lambda advance: dbt_build(settings, progress=advance))
    marts = timed("validate", lambda advance: validate_marts(settings, advance))
    definitions = timed("features apply", lambda advance: apply(settings))
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
    return PipelineResult(simulation, report, build, marts, definitions, materialized, datasets, trainings, seconds)


@dataclass(frozen=True)
class WorkdirStatus:
    """Rows per table in each warehouse schema (raw, quarantine, marts)."""

    schemas: dict[str, dict[str, int]]


def workdir_status(settings: Settings) -> WorkdirStatus:
    """Count the rows of every table the workdir's warehouse holds.

    Raises:
        WarehouseError: There is no warehouse in the workdir yet.
    """
    con = warehouse.connect(settings.warehouse, read_only=True)
    try:
        return WorkdirStatus({schema: warehouse.table_counts(con, schema) for schema in ("raw", "quarantine", "marts")})
    finally:
        con.close()
