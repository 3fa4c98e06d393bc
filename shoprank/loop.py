"""``shoprank loop``: the closed loop on a workdir ``shoprank pipeline`` ran on.

1. Start ``shoprank serve --as-of materialized --speed S`` (a subprocess on a free local port, with
   a fresh API key): its clock starts where the online data ends and runs S times the wall clock.
2. Let the simulator's users live the whole days after it against the service
   (``shoprank.simulate.live``): their lists are served by the current models, their clicks,
   carts and purchases posted to ``/v1/events``.
3. Stop the service: its served lists become raw ``requests`` rows in ``landing/requests/``.
4. Ingest the landing files no ingest has read yet (the served lists and the posted events), then
   the pipeline's own steps: incremental ``dbt build``, validate, incremental materialize,
   training frames, and a new model version of each service.
5. Measure the version that served and the new one on the same test rows (the newest 20 % of the
   new frame's lists, which neither trained nor validated on).
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from serving.app import API_KEY
from serving.clock import MATERIALIZED, Clock
from serving.served_log import recover
from shoprank.config import ENVIRONMENT, Settings
from shoprank.errors import ConfigError, FeatureStoreError, ModelError, WarehouseError
from shoprank.features.store import open_store, source_file
from shoprank.ingest.readers import files_under
from shoprank.pipeline import (
    SERVICES,
    Loaded,
    ProgressFactory,
    Steps,
    Trained,
    load_and_build,
    materialize_and_train,
    shop_spec,
)
from shoprank.progress import Advance
from shoprank.simulate import PRESETS, build_world
from shoprank.simulate.behavior import World
from shoprank.simulate.live import (
    DayLists,
    LiveReport,
    LiveUsers,
    ServiceClock,
    ServiceError,
    ShopClient,
    first_live_day,
    live_days,
)
from shoprank.warehouse import read
from training.dataset import DatasetResult
from training.evaluate import evaluate, time_split
from training.registry import ModelVersion, get, load_ranker, versions
from training.run import truth_relevance

SERVICE_START_SECONDS = 180.0
ANSWER_SECONDS = 0.04  # a list asked, answered and reacted to by one client (~35 ms on the tiny shop, 2 cores)
MAX_DELAY_SECONDS = 300.0  # how late (simulated) the default pace may ask a list
MAX_SPEED = 3600.0
SERVICE_STOP_SECONDS = 60.0

LIST_CTR_SQL = """
select lower(trim(r.surface)) as surface, count(*) as impressions, count(c.request_id) as clicks
from raw.requests r
left join (
    select distinct request_id, position from raw.events where lower(trim(event_type)) = 'click'
) c on c.request_id = r.request_id and c.position = r.position
group by 1
order by 1
"""


@dataclass(frozen=True)
class Comparison:
    """Two versions of a service measured on the same test rows.

    Attributes:
        service: The feature service.
        served, retrained: The version that served the live days, and the one trained after them.
        window: First and last request time of the test rows.
        groups: Test lists.
        metrics: ``version``, ``against`` (labels, truth), ``metric``, ``value``.
        served_saw: The end of the served version's validation window when it reaches into the
            test rows (its figures then flatter it), else None.
    """

    service: str
    served: str
    retrained: str
    window: tuple[str, str]
    groups: int
    metrics: pl.DataFrame
    served_saw: str | None = None


@dataclass(frozen=True)
class LoopResult:
    """What a loop did: the live days, the rebuild, the new models and their comparison."""

    live: LiveReport
    earlier_lists: dict[str, tuple[int, int]]  # surface -> (impressions, clicks) before the loop
    loaded: Loaded
    trained: Trained
    comparisons: list[Comparison]
    seconds: dict[str, float]
    service_log: Path


def run_loop(settings: Settings, days: int, speed: float | None, progress: ProgressFactory) -> LoopResult:
    """Serve ``days`` live days of the workdir's simulated shop at ``speed`` (None: ``pace``), then
    ingest, rebuild, rematerialize and retrain, and compare each new model with the one that served.

    Raises:
        ShoprankError: The workdir lacks models, its own feature store or a simulated shop of
            the settings' preset and seed; the service failed; or a pipeline step failed.
    """
    served = {service: _served_model(settings, service) for service in SERVICES}
    _check_own_marts(settings)
    world = simulated_world(settings)
    start = Clock.parse(MATERIALIZED, open_store(settings)).start
    first = first_live_day(world, start)
    if first < world.spec.days:
        raise ConfigError(
            f"The online store of {settings.workdir} ends at {start:%Y-%m-%d %H:%M}, inside the simulated period "
            f'(until {world.spec.end:%Y-%m-%d}); run "shoprank features materialize" first'
        )
    _check_nothing_pending(settings)
    _check_past(world, range(first, first + days))
    earlier = list_clicks(settings)
    traffic = live_days(world, settings.seed, range(first, first + days))
    speed = speed or pace(traffic)
    timed = Steps(progress)
    log = settings.workdir / "serving" / "loop-service.log"
    live = timed("live", lambda advance: _live(settings, world, traffic, speed, log, advance))
    if not live.lists:
        raise ServiceError(f"The service served no list ({dict(live.failed) or 'no request'}); see {log}")
    loaded = load_and_build(settings, pending_files(settings), timed)
    trained = materialize_and_train(settings, timed)
    comparisons = timed(
        "compare",
        lambda advance: [
            compare(settings, run.dataset, served[run.model.card["service"]], run.model) for run in trained.trainings
        ],
    )
    return LoopResult(live, earlier, loaded, trained, comparisons, timed.seconds, log)


def simulated_world(settings: Settings) -> World:
    """The simulator's world of the workdir: the settings' preset, else the one preset of as many
    users whose users are the workdir's (``landing/users.parquet``), with the settings' seed and
    simulator options.

    Raises:
        ConfigError: The workdir holds no simulated shop, or none of the settings' seed and options.
    """
    users = settings.landing / "users.parquet"
    if not users.is_file():
        raise ConfigError(
            f"No simulated shop in {settings.workdir} ({users} is missing): the live users are the simulator's; "
            'run "shoprank pipeline" first'
        )
    landed = pl.read_parquet(users)
    chosen = settings.simulate["preset"]
    presets = [chosen, *(name for name, spec in PRESETS.items() if spec.n_users == landed.height and name != chosen)]
    for preset in presets:
        world = build_world(shop_spec(settings.with_overrides(preset=preset)), settings.seed)
        if world.population.table.equals(landed):
            return world
    raise ConfigError(
        f'The shop in {settings.workdir} ({landed.height:,} users) is not the simulator\'s preset "{chosen}" with '
        f"seed {settings.seed} and options {dict(settings.simulate)}; give the preset, options and seed it was "
        'simulated with, e.g. "shoprank --seed 7 loop --preset tiny" ([simulate] in the config file for options)'
    )


def pending_files(settings: Settings) -> list[Path]:
    """The landing files no finished ingest has read. A file is matched by its path under
    ``landing/`` (``raw.ingest_batches`` keeps every file of a finished run), so a copied workdir
    counts the files its original read."""
    sources = read(settings.warehouse, "select distinct _source from raw.ingest_batches")["_source"]
    done = {_under_landing(Path(source), settings.landing.name) for source in sources}
    return [
        path for path in files_under([settings.landing]) if path.relative_to(settings.landing).as_posix() not in done
    ]


def list_clicks(settings: Settings) -> dict[str, tuple[int, int]]:
    """Impressions and clicked impressions of the served lists in the warehouse, per surface."""
    rows = read(settings.warehouse, LIST_CTR_SQL).iter_rows()
    return {surface: (impressions, clicks) for surface, impressions, clicks in rows}


def compare(settings: Settings, dataset: DatasetResult, served: ModelVersion, retrained: ModelVersion) -> Comparison:
    """Measure ``served`` and ``retrained`` on the test rows of ``retrained``'s training frame
    (``dataset``; the time split training made), against the observed labels and, for a simulated
    shop, the true relevance."""
    frame = pl.read_parquet(dataset.path / "*.parquet")
    split = time_split(frame)
    truth = truth_relevance(settings, split.test)
    measured = []
    for model in (served, retrained):
        version = model.card["version"]
        ranker, _ = load_ranker(settings, dataset.service, version)
        evaluation = evaluate(split.test, (version, ranker.predict(split.test)), {}, truth, settings.seed)
        measured.append(evaluation.metrics.filter(pl.col("kind") == "model"))
    metrics = pl.concat(measured).select(pl.col("ranker").alias("version"), "against", "metric", "value")
    seen = served.card["window"]["valid"][1]
    return Comparison(
        dataset.service,
        served.card["version"],
        retrained.card["version"],
        split.windows["test"],
        split.groups["test"],
        metrics,
        seen if datetime.fromisoformat(seen) >= datetime.fromisoformat(split.windows["test"][0]) else None,
    )


@contextmanager
def running_service(settings: Settings, speed: float, log: Path) -> Iterator[ShopClient]:
    """``shoprank serve --as-of materialized --speed speed`` on the workdir, on a free local port,
    with a fresh API key and its output in ``log``; stopped (its served log rotated) on exit.

    Raises:
        ServiceError: It exited or did not answer within ``SERVICE_START_SECONDS``, or did not stop.
    """
    port, key = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-c", "from shoprank.cli import main; main()", "serve", "--port", str(port)]
    command += ["--as-of", MATERIALIZED, "--speed", str(speed)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=_service_env(settings, key))
    try:
        client = ShopClient(f"http://127.0.0.1:{port}", key)
        _wait_ready(process, client, log)
        yield client
    finally:
        process.terminate()
        try:
            process.wait(timeout=SERVICE_STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            recovered = recover(settings)
            raise ServiceError(
                f"The service (pid {process.pid}) did not stop within {SERVICE_STOP_SECONDS:.0f} s and was killed; "
                f"{len(recovered)} served-log file(s) it left were recovered: run the loop again, or "
                f'"shoprank ingest {settings.landing}" to ingest what was served'
            ) from None


def pace(traffic: list[DayLists]) -> float:
    """The fastest whole speed, at most ``MAX_SPEED``, at which a client that takes
    ``ANSWER_SECONDS`` a list asks none of ``traffic`` over ``MAX_DELAY_SECONDS`` after its time
    (the lists queue behind each other's answers: the peak hours decide)."""
    times = np.concatenate([day.lists.time_us for day in traffic]) / 1e6
    order = np.arange(len(times))

    def worst_delay(speed: float) -> float:
        step = ANSWER_SECONDS * speed  # simulated seconds an answer takes
        asked = order * step + np.maximum.accumulate(times - order * step)  # max(time, previous asked + step)
        return float((asked - times).max(initial=0.0))

    slow, fast = 1.0, MAX_SPEED
    if worst_delay(fast) <= MAX_DELAY_SECONDS:
        return fast
    while fast - slow > 1.0:
        middle = (slow + fast) / 2
        slow, fast = (middle, fast) if worst_delay(middle) <= MAX_DELAY_SECONDS else (slow, middle)
    return float(int(slow))


def _live(
    settings: Settings, world: World, traffic: list[DayLists], speed: float, log: Path, advance: Advance
) -> LiveReport:
    with running_service(settings, speed, log) as client:
        return LiveUsers(world, client, ServiceClock.of(client, speed)).live(traffic, advance)


def _served_model(settings: Settings, service: str) -> ModelVersion:
    """The version of ``service`` the service will load (production, else the newest).

    Raises:
        ModelError: There is none.
    """
    if not versions(settings, service):
        raise ModelError(
            f'No model of "{service}" in {settings.models}: the loop serves a workdir "shoprank pipeline" ran on; '
            f'run "shoprank --workdir {settings.workdir} pipeline" first'
        )
    return get(settings, service)


def _check_own_marts(settings: Settings) -> None:
    """Refuse a feature store whose views read another workdir's marts (a workdir copied with its
    registry): the rebuilt marts would never reach the online store or the training frames.

    Raises:
        FeatureStoreError: Nothing is registered, or the views read marts elsewhere.
    """
    marts = settings.marts.resolve()
    store = open_store(settings)
    repo = store.config.repo_path
    sources = {source_file(view.batch_source, repo).resolve().parent for view in store.list_feature_views()}
    foreign = sorted(str(folder) for folder in sources if folder != marts)
    if foreign:
        raise FeatureStoreError(
            f"The feature store of {settings.workdir} reads the marts in {foreign[0]}, not {marts}: the workdir was "
            f"copied with its registry. Delete {settings.registry} and {settings.online_store}, then run "
            '"shoprank features apply" and "shoprank features materialize"'
        )


def _check_nothing_pending(settings: Settings) -> None:
    """Refuse to go live while landing files wait for an ingest (say, of a loop cut off before
    its rebuild): the online store would not know them, and the live day would be lived twice.

    Raises:
        WarehouseError: Some landing files were never ingested.
    """
    pending = pending_files(settings)
    if pending:
        raise WarehouseError(
            f"{len(pending)} file(s) in {settings.landing} were never ingested (e.g. {pending[0]}); run "
            f'"shoprank ingest {settings.landing}", "shoprank build" and "shoprank features materialize" first'
        )


def _check_past(world: World, days: range) -> None:
    """Refuse live days that end in the future: the events contract would reject their events.

    Raises:
        ConfigError: They do.
    """
    end = world.spec.start + timedelta(days=days.stop)
    if end > datetime.now(UTC).replace(tzinfo=None):
        raise ConfigError(f"{len(days)} live day(s) would end at {end:%Y-%m-%d}, in the future; give fewer --days")


def _wait_ready(process: subprocess.Popen, client: ShopClient, log: Path) -> None:
    deadline = time.monotonic() + SERVICE_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            lines = log.read_text().strip().splitlines() or ["no output"]
            raise ServiceError(f"The service exited with status {process.returncode}: {lines[-1]}; see {log}")
        try:
            client.health()
            return
        except ServiceError:
            time.sleep(0.5)
    raise ServiceError(f"The service did not answer /health within {SERVICE_START_SECONDS:.0f} s; see {log}")


def _service_env(settings: Settings, key: str) -> dict[str, str]:
    """The environment of the service: this run's settings (as their ``SHOPRANK_*`` variables) and key."""
    values = {**vars(settings), "workdir": settings.workdir.resolve()}
    chosen = {variable: str(values[name]) for name, variable in ENVIRONMENT.items() if values[name] is not None}
    return {**os.environ, **chosen, API_KEY: key}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _under_landing(path: Path, landing: str) -> str:
    """``path`` from below its last folder named ``landing`` (the whole path when there is none)."""
    parts = path.parts
    below = max((i for i, part in enumerate(parts) if part == landing), default=-1)
    return Path(*parts[below + 1 :]).as_posix()
