"""Serving latency and throughput: ``shoprank serve`` under an open-loop load of ``/v1/rerank``
(100 candidates, the full ``ranker_v1`` feature service), on Redis and on SQLite, beside the
anchors for the same entities and features: Feast's ``get_online_features`` in-process and Feast's
own feature server (``feast serve``, one worker, HTTP ``/get-online-features``).

    python benchmarks/serving.py [--preset small] [--duration 20] [--stores redis sqlite] [--workers 1 2]

Workdirs: ``benchmarks/work/serving/<preset>/{redis,sqlite}`` (``shoprank pipeline`` and
``shoprank train --service ranker_v1`` when absent; Redis is the production profile, Feast project
``bench_serving_<preset>``, so it needs Redis and PostgreSQL; SQLite the embedded one). First, how
steadily the machine runs Python: a fixed chunk of pure-Python work (about 5 ms) timed for 20 s,
alone (``_machine_noise``), the floor under any latency measured after it. Then what CPU per
request a p99 goal leaves: a FastAPI app that validates the same bodies, burns a fixed CPU time
(0 to 5 ms) and answers as large a ranking, at 200 rps on two workers (``_cpu_budget``). Then per
store, in this order, nothing else of the benchmark running meanwhile:

1. In-process feature read, on the same entity rows (1 user + 100 items, varied users): Feast's
   ``get_online_features`` (``serving.features.online_features``) and ours
   (``serving.online.OnlineReader.read``) as served (item-keyed values and on-demand outputs
   remembered across requests) and with those caches emptied before every read; values checked
   equal. Then one request's stages, single-threaded, without HTTP.
2. ``shoprank serve --service ranker_v1 --as-of materialized --workers N``, for each N given: warm-up,
   then 50, 100 and 200 rps, then a search for the max sustainable rate. ``/metrics`` is read
   before and after each rate: its stage histograms give the server-side time per stage at that rate.
3. ``feast serve`` on the same workdir: 10 rps, then the same search; its saturation is the
   highest throughput it achieved at any offered rate.

The load generator (this process, asyncio, HTTP/1.1 keep-alive over up to ``CONNECTIONS``
connections) is open loop: request i is due at ``start + i / rate`` whether or not earlier ones
were answered, and its latency runs from that due time (no coordinated omission); a request not
answered 200 within ``TIMEOUT`` s counts as an error with infinite latency. A rate is
*sustainable* when at least 95% of the offered rate is achieved, p99 <= 100 ms and under 1% of the
requests fail. Server and load generator share the machine's cores. Figures and findings:
``benchmarks/README.md``, "Serving latency and throughput".
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import math
import os
import pstats
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import numpy as np
from openloop import TIMEOUT, open_loop, post, remove_served_logs, send_one, server

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "serving"
SERVICE = "ranker_v1"
CANDIDATES = 100
RATES = (50, 100, 200)  # rps offered to shoprank serve
FEAST_RATE = 10  # rps offered to feast serve (the anchor)
PROFILES = {"redis": "production", "sqlite": "embedded"}
PORTS = {"shoprank": 18731, "feast": 18732, "budget": 18733}
P99_LIMIT = 0.100  # sustainable: p99 at most this...
ACHIEVED_SHARE = 0.95  # ...at least this share of the offered rate achieved...
ERROR_SHARE = 0.01  # ...and fewer failed requests than this share
SEARCH_STEPS = 6  # rates tried when searching the max sustainable rate
GOAL_P99, GOAL_RATE, GOAL_READ = 0.010, 200, 5.0
BODIES = 2_000  # distinct requests, cycled
READS = 300  # in-process reads per path and store
WARMUP_SECONDS = 10.0  # at WARMUP_RATE: most catalog items read once, gently (a cold server overloads sooner)
WARMUP_RATE = 20
STAGE_WARMUP = 150  # requests before the single-request stages are timed
SATURATION_STEPS = 4  # doublings of the offered rate to find feast serve's saturation
BURNS_MS = (0, 2, 3, 4, 5)  # CPU per request of the calibrated app (``_cpu_budget``)
BUDGET_WORKERS = 2


def main(preset: str, duration: float, stores: list[str], workers: list[int]) -> None:
    code = _code()
    print(f"Code measured: {code}")
    print(_machine_noise())
    budget = _cpu_budget(_bodies(Shop.open(_workdir(preset, stores[0]))), duration)
    runs = {}
    for store in stores:
        settings = _workdir(preset, store)
        print(f"\n== {store}: {settings.workdir} (Feast project {settings.project}, {settings.profile} profile)")
        runs[store] = _run_store(settings, duration, workers)
    print(_report(preset, duration, runs))
    print(_budget_report(budget))
    print(f"\nCode measured: {code}")
    if _code().split()[1:] != code.split()[1:]:  # servers started at different moments ran different code
        print(f"WARNING: the code changed during the run (now {_code()}); run again")


def _machine_noise(seconds: float = 20.0) -> str:
    """How steady this machine runs Python: the same pure-Python chunk (about 5 ms) timed again
    and again for ``seconds``, with nothing else of the benchmark running. A latency goal in
    milliseconds cannot be met below the slowdowns the chunk shows."""

    def chunk() -> int:
        total = 0
        for i in range(60_000):
            total += i * i % 7
        return total

    chunk()
    spent, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        chunk()
        spent.append(time.perf_counter() - started)
        time.sleep(0.005)
    times = np.array(spent) * 1000
    p50, p99 = np.percentile(times, [50, 99])
    slow = (times > 2.5 * p50).mean()
    return (
        f"Machine: a fixed pure-Python chunk timed {len(times):,} times over {seconds:g} s, alone: p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms ({p99 / p50:.1f}x), max {times.max() / p50:.1f}x; {slow:.1%} of chunks over 2.5x the p50"
    )


def _code() -> str:
    """The commit, and a digest of the Python and YAML files a server runs (as they are on disk)."""
    import hashlib

    root = HERE.parent
    digest = hashlib.sha1()
    for folder in ("serving", "shoprank", "training", "feature_repo"):
        for path in sorted((root / folder).rglob("*")):
            if path.suffix in (".py", ".yaml", ".yml") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    return f"{head.strip()} (code digest {digest.hexdigest()[:10]})"


def _cpu_budget(bodies: list[bytes], duration: float) -> dict[float, Load]:
    """The latency at ``GOAL_RATE`` of a FastAPI app that only validates the same request bodies,
    burns a fixed CPU time per request (``BURNS_MS``) and answers as large a ranking
    (``_cpu_budget_app.py``, ``BUDGET_WORKERS`` workers): what CPU per request a p99 goal leaves on
    this machine, HTTP included."""
    loads = {}
    uvicorn = [sys.executable, "-m", "uvicorn", "_cpu_budget_app:app", "--factory", "--port", str(PORTS["budget"])]
    uvicorn += ["--workers", str(BUDGET_WORKERS), "--log-level", "warning", "--no-access-log"]
    # the project first: its serving package, not this script of the same name
    path = os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")])
    (WORK / "logs").mkdir(parents=True, exist_ok=True)
    print(f"Calibrated FastAPI app ({BUDGET_WORKERS} workers), {GOAL_RATE} rps:", flush=True)
    for burn in BURNS_MS:
        env = {**os.environ, "BURN_MS": str(burn), "PYTHONPATH": path}
        with server(uvicorn, env, PORTS["budget"], WORK / "logs" / "cpu-budget.log") as group:
            print(f"  {burn} ms of CPU burnt per request:", flush=True)
            _load(PORTS["budget"], group, bodies, WARMUP_RATE * BUDGET_WORKERS, WARMUP_SECONDS / 2, metrics=False)
            loads[burn] = _load(PORTS["budget"], group, bodies, GOAL_RATE, duration, metrics=False)
    return loads


def _budget_report(loads: dict[float, Load]) -> str:
    rows = [
        [f"{burn:g}", f"{load.cpu_ms:.1f}", f"{load.achieved:.1f}", _ms(load.p(50)), _ms(load.p(95)), _ms(load.p(99))]
        for burn, load in loads.items()
    ]
    header = ["CPU burnt per request, ms", "server CPU ms / answer", "achieved rps", "p50 ms", "p95 ms", "p99 ms"]
    title = f"\nCalibrated FastAPI app, {BUDGET_WORKERS} workers, {GOAL_RATE} rps offered (the same bodies, no store, no model)\n"
    return title + _table(header, rows)


# --- workdirs --------------------------------------------------------------------------------


def _workdir(preset: str, store: str):
    """The store's workdir, built (shop, ranker_v2, search_ranker_v2, ranker_v1) when missing."""
    from shoprank.config import Settings

    settings = Settings(workdir=WORK / preset / store, profile=PROFILES[store])
    if settings.profile == "production":  # Redis and PostgreSQL are shared: a project of its own
        settings = replace(settings, project=f"bench_serving_{preset}")
    shoprank = [str(Path(sys.executable).with_name("shoprank")), "--workdir", str(settings.workdir)]
    shoprank += ["--profile", settings.profile, "--project", settings.project]
    if not (settings.models / "ranker_v2").is_dir():
        subprocess.run([*shoprank, "pipeline", "--preset", preset], check=True)
    if not (settings.models / SERVICE).is_dir():
        subprocess.run([*shoprank, "train", "--service", SERVICE], check=True)
    return settings


@dataclass
class Shop:
    """What the requests are drawn from and read with."""

    settings: object
    catalog: object  # marts.dim_items
    users: list[str]
    at: object  # request time of the in-process reads and of feast serve's requests

    @classmethod
    def open(cls, settings) -> Shop:
        from serving.clock import Clock
        from shoprank.features.store import open_store
        from shoprank.warehouse import read

        catalog = read(settings.warehouse, "select * from marts.dim_items")
        users = read(settings.warehouse, "select user_id from marts.dim_users order by user_id")["user_id"].to_list()
        # whole seconds: Feast passes request times to on-demand views in whole seconds, our read as given
        at = Clock.parse("materialized", open_store(settings)).now().replace(microsecond=0)
        return cls(settings, catalog, users, at)

    def requests(self, count: int, seed: int) -> list[tuple[str, list[str]]]:
        """``count`` requests: a random known user and 100 distinct random catalog items."""
        rng = random.Random(seed)
        items = self.catalog["item_id"].to_list()
        return [(rng.choice(self.users), rng.sample(items, CANDIDATES)) for _ in range(count)]

    def rows(self, user: str, items: list[str], at=None):
        """The request's entity rows, as the service builds them (at ``at``, default ``self.at``)."""
        import polars as pl

        from serving.features import request_rows

        return request_rows(self.catalog, pl.DataFrame({"item_id": items}), at or self.at, user)


# --- in-process ------------------------------------------------------------------------------


def _in_process(shop: Shop) -> dict:
    """Feast's get_online_features vs our read on the same rows; one request's stages."""
    from serving.features import online_features
    from serving.online import OnlineReader
    from shoprank.features.store import open_store
    from training.plan import resolve

    store = open_store(shop.settings)
    plan = resolve(store, SERVICE)
    reader = OnlineReader(store, plan)
    requests = enumerate(shop.requests(READS, seed=11))  # each at its own time, as the service's clock runs
    rows = [shop.rows(user, items, shop.at + timedelta(seconds=index)) for index, (user, items) in requests]
    for each in rows[:20]:  # warm-up: registry caches, connections, imports
        online_features(store, plan, each), reader.read(each)

    def cold(each):
        reader.forget()  # item-keyed values kept CACHE_SECONDS, on-demand outputs by input row
        return reader.read(each)

    paths = {"feast": lambda each: online_features(store, plan, each), "warm": reader.read, "cold": cold}
    seconds = {name: [] for name in paths}
    mismatches = cells = 0
    for index, each in enumerate(rows):
        frames = {}
        for name in list(paths) if index % 2 else list(paths)[::-1]:  # alternate the order
            started = time.perf_counter()
            frames[name] = paths[name](each)
            seconds[name].append(time.perf_counter() - started)
        for column in plan.features:
            expected = _bits(frames["feast"][column])
            for name in ("warm", "cold"):
                got = _bits(frames[name][column])
                mismatches += sum(a != b for a, b in zip(expected, got, strict=True))
                cells += len(expected)
    reader.close()
    result = {name: np.array(values) for name, values in seconds.items()}
    result.update(mismatches=mismatches, cells=cells, features=len(plan.features), stages=_stages(shop))
    return result


def _bits(series) -> list:
    """Values compared exactly (floats by their bits)."""
    import struct

    if series.dtype.is_float():
        return [None if v is None else struct.pack("<d", v) for v in series.to_list()]
    return series.to_list()


def _stages(shop: Shop) -> dict[str, np.ndarray]:
    """One /v1/rerank's work, single-threaded and without HTTP, per step (seconds per request):
    ``Searcher.rank`` with its parts timed from inside (entity rows, the store's round trip, each
    on-demand view, the rest of the read, scores), the JSON response, and the list's lines for the
    served log (written to its files once the response is sent). Each request has its own request
    time, as the service's clock gives; ``Searcher.rank`` runs on one event loop, as in the service."""
    from serving.app import _ranking
    from serving.search import Searcher
    from serving.served_log import ServedLog

    searcher = Searcher.open(shop.settings, SERVICE)
    reader, spent, loop = searcher.reader, Counter(), asyncio.new_event_loop()

    def rank(*args, **kwargs):
        return loop.run_until_complete(searcher.rank(*args, **kwargs))

    profile = cProfile.Profile()  # first, before the timers wrap anything
    for index, (user, items) in enumerate(shop.requests(STAGE_WARMUP + 100, seed=17)):
        if index == STAGE_WARMUP:
            profile.enable()
        rank(items, user, None, explain=False, at=shop.at + timedelta(seconds=index))
    profile.disable()

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return wrapper

    def timed_async(name: str, function: Callable) -> Callable:
        async def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return wrapper

    on_demand = reader._on_demand
    reader._on_demand = lambda odfv, columns: timed(f"on-demand view {odfv.view.name}", on_demand)(odfv, columns)
    reader._tables.read_async = timed_async("store round trip", reader._tables.read_async)
    reader.features_async = timed_async("read", reader.features_async)
    searcher.ranker.score = timed("scores (Ranker.score)", searcher.ranker.score)
    searcher.rows.columns = timed("entity rows (RequestRows.columns)", searcher.rows.columns)
    steps: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        served = ServedLog(replace(shop.settings, workdir=Path(folder)))
        for index, (user, items) in enumerate(shop.requests(STAGE_WARMUP + 200, seed=13)):
            at = shop.at + timedelta(seconds=index)
            spent.clear()
            t0 = time.perf_counter()
            result = rank(items, user, None, explain=False, at=at)
            t1 = time.perf_counter()
            request_id, _ = _ranking("/bench", result, False)
            t2 = time.perf_counter()
            served.record(
                request_id, at, user, "recommend", None, result.model, result.vectors, result.order, result.entities
            )
            t3 = time.perf_counter()
            if index < STAGE_WARMUP:  # most catalog items read once, as under load
                continue
            parts = {name: spent[name] for name in ("entity rows (RequestRows.columns)", "store round trip")}
            views = {name: seconds for name, seconds in spent.items() if name.startswith("on-demand")}
            parts.update(views)
            parts["rest of the read (keys, decoding)"] = spent["read"] - spent["store round trip"] - sum(views.values())
            parts["scores (Ranker.score)"] = spent["scores (Ranker.score)"]
            parts["rest of Searcher.rank (results)"] = (
                (t1 - t0) - spent["read"] - spent["entity rows (RequestRows.columns)"] - spent["scores (Ranker.score)"]
            )
            parts["**Searcher.rank** (all of the above)"] = t1 - t0
            parts["JSON response (_ranking)"] = t2 - t1
            parts["served log, its lines written (ServedLog.record, after the response)"] = t3 - t2
            parts["**total**"] = t3 - t0
            for name, seconds in parts.items():
                steps.setdefault(name, []).append(seconds)
        served.close()
    reader.close()
    loop.close()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(20)
    print(f"cProfile of Searcher.rank, 100 requests ({shop.settings.workdir.name}), by own time:")
    print("\n".join(line for line in text.getvalue().splitlines()[4:] if line.strip()))
    return {name: np.array(values) for name, values in steps.items()}


# --- servers ---------------------------------------------------------------------------------


def _group_cpu(group: int) -> float:
    """CPU seconds (user + system) of the live processes of a process group."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _busy() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat, idle and iowait excluded)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def _settle(group: int, seconds: float = 60.0) -> None:
    """Wait until the server is idle (below 0.1 core over 0.5 s), at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = _group_cpu(group)
        time.sleep(0.5)
        if _group_cpu(group) - before < 0.05:
            return


# --- load ------------------------------------------------------------------------------------


@dataclass
class Load:
    """One fixed-rate run."""

    offered: float
    seconds: float
    latencies: np.ndarray  # per request, from its due time; inf when it failed
    outcomes: Counter
    achieved: float  # 200 answers per second, from the first due time to the last answer
    lag_p99: float  # how late the generator sent (its own health)
    server_cores: float  # the server's CPU over the run, in cores
    client_cores: float  # the load generator's
    other_cores: float  # everything else on the machine (other work sharing it)
    wall: float  # seconds from the first send to the last answer or timeout
    metrics: dict = field(default_factory=dict)  # /metrics deltas over the run

    @property
    def cpu_ms(self) -> float:
        """The server's CPU time per answered request, ms."""
        answered = np.isfinite(self.latencies).sum()
        return self.server_cores * self.wall * 1000 / answered if answered else math.nan

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q, method="inverted_cdf"))

    @property
    def errors(self) -> int:
        return int(np.isinf(self.latencies).sum())

    @property
    def sustainable(self) -> bool:
        return (
            self.achieved >= ACHIEVED_SHARE * self.offered
            and self.p(99) <= P99_LIMIT
            and self.errors < ERROR_SHARE * len(self.latencies)
        )


def _load(port: int, group: int, payloads: list[bytes], rate: float, seconds: float, metrics: bool) -> Load:
    """Offer ``rate`` requests per second for ``seconds``; measure; let the server settle."""
    before = _scrape(port) if metrics else {}
    cpu, client, busy, started = _group_cpu(group), time.process_time(), _busy(), time.perf_counter()
    latencies, outcomes, achieved, lag, _ = asyncio.run(open_loop(port, payloads, rate, seconds))
    wall = time.perf_counter() - started
    server, client = (_group_cpu(group) - cpu) / wall, (time.process_time() - client) / wall
    others = max(0.0, (_busy() - busy) / wall - server - client)
    _settle(group)  # an overloaded server still works off requests the client gave up on
    after = _scrape(port) if metrics else {}
    delta = {key: value - before.get(key, 0.0) for key, value in after.items()}
    load = Load(rate, seconds, latencies, outcomes, achieved, lag, server, client, others, wall, delta)
    p = [f"{load.p(q) * 1000:.1f}" if math.isfinite(load.p(q)) else "inf" for q in (50, 95, 99)]
    print(
        f"  {rate:6.0f} rps offered: {achieved:6.1f} achieved, p50/p95/p99 {'/'.join(p)} ms, "
        f"errors {load.errors} ({dict(outcomes)}), server {server:.2f} cores ({load.cpu_ms:.1f} ms per answer), "
        f"client {client:.2f}, others {others:.2f}, "
        f"send lag p99 {lag * 1000:.1f} ms -> {'sustainable' if load.sustainable else 'NOT sustainable'}",
        flush=True,
    )
    return load


def _search(run: Callable[[float], Load], loads: list[Load], first: float) -> list[Load]:
    """Rates tried after ``loads`` to bracket the max sustainable rate (within 15%)."""
    tried = []
    for _ in range(SEARCH_STEPS):
        done = loads + tried
        passed = [load.offered for load in done if load.sustainable]
        failed = [load.offered for load in done if not load.sustainable and load.offered > max(passed, default=0)]
        lo, hi = max(passed, default=0.0), min(failed, default=None)
        if hi is None:
            rate = lo * 1.5 if lo else first
        elif lo and hi / lo <= 1.15:
            break
        else:
            rate = (lo + hi) / 2 if lo else hi / 2
        rate = round(rate / 5) * 5 if rate >= 20 else max(1, round(rate))
        if rate in (lo, hi) or (lo == 0 and rate <= 1 and hi == 1):
            break
        tried.append(run(rate))
    return tried


def _max_sustainable(loads: list[Load]) -> tuple[float, float | None]:
    """The highest sustainable rate tried, and the lowest unsustainable one above it."""
    passed = max((load.offered for load in loads if load.sustainable), default=0.0)
    above = [load.offered for load in loads if not load.sustainable and load.offered > passed]
    return passed, min(above, default=None)


# --- /metrics --------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^(shoprank_\w+)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def _scrape(port: int) -> dict[tuple, float]:
    """The service's shoprank_* samples: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=120) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if match := _SAMPLE.match(line):
            labels = tuple(sorted(_LABEL.findall(match.group(2) or "")))
            samples[(match.group(1), labels)] = float(match.group(3))
    return samples


def _histogram(delta: dict, name: str, **labels: str) -> tuple[float, float, float]:
    """Count, mean and p99 (interpolated within buckets, as Prometheus does) of a histogram's delta."""

    def value(suffix: str, **more: str) -> float:
        return delta.get((f"{name}_{suffix}", tuple(sorted({**labels, **more}.items()))), 0.0)

    count = value("count")
    if not count:
        return 0.0, math.nan, math.nan
    buckets = sorted(
        (float(dict(key[1])["le"]), count_le)
        for key, count_le in delta.items()
        if key[0] == f"{name}_bucket" and {k: v for k, v in key[1] if k != "le"} == labels
    )
    rank, previous_bound, previous_count, p99 = 0.99 * count, 0.0, 0.0, math.inf
    for bound, count_le in buckets:
        if count_le >= rank:
            if not math.isinf(bound):  # else above the last bucket: unknown (shown as —)
                share = (rank - previous_count) / max(count_le - previous_count, 1e-9)
                p99 = previous_bound + (bound - previous_bound) * share
            break
        previous_bound, previous_count = bound, count_le
    return count, value("sum") / count, p99


# --- one store -------------------------------------------------------------------------------


def _run_store(settings, duration: float, workers: list[int]) -> dict:
    shop = Shop.open(settings)
    print(f"In-process reads: {READS} requests of 1 user + {CANDIDATES} items, {SERVICE}", flush=True)
    reads = _in_process(shop)
    env = {**os.environ, **settings.env()}
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    store = settings.workdir.name

    ours_bodies = _bodies(shop)
    served = {count: _serve(settings, count, ours_bodies, duration, env, logs) for count in workers}

    feast_bodies = []
    for user, items in shop.requests(BODIES, seed=3):
        rows = shop.rows(user, items)
        entities = {
            "user_id": rows["user_id"].to_list(),
            "item_id": rows["item_id"].to_list(),
            "category_path": rows["category_path"].fill_null("").to_list(),  # a missing key matches nothing
            "request_time": [shop.at.isoformat()] * rows.height,
        }
        body = {"feature_service": SERVICE, "entities": entities, "full_feature_names": True}
        feast_bodies.append(post("/get-online-features", body))
    feast = [sys.executable, "-c", "from feast.cli.cli import cli; cli()", "-c", str(settings.workdir.resolve())]
    feast += ["-f", str(settings.feature_store_yaml), "serve", "-p", str(PORTS["feast"]), "--workers", "1"]
    feast += ["--no-access-log", "--max-requests", "1000000"]  # no worker restarts every 1,000 requests
    print(f"feast serve ({store}): /get-online-features, {SERVICE}, {CANDIDATES} rows, one worker", flush=True)
    with server(feast, env, PORTS["feast"], logs / f"feast-{store}.log") as group:
        feast_equal = _check_feast(PORTS["feast"], feast_bodies[0], shop)

        def theirs(rate: float, seconds: float = duration) -> Load:
            return _load(PORTS["feast"], group, feast_bodies, rate, seconds, metrics=False)

        print("  warm-up:")
        theirs(FEAST_RATE / 2, WARMUP_SECONDS / 2)
        feast_loads = [theirs(FEAST_RATE)]
        print("  max sustainable rate and saturation:")
        feast_loads += _search(theirs, feast_loads, FEAST_RATE)
        for _ in range(SATURATION_STEPS):  # offer twice the most until it falls behind
            if any(load.achieved < ACHIEVED_SHARE * load.offered for load in feast_loads):
                break
            feast_loads.append(theirs(2 * max(load.offered for load in feast_loads)))
    return {"reads": reads, "served": served, "feast": feast_loads, "feast_equal": feast_equal}


def _serve(settings, workers: int, bodies: list[bytes], duration: float, env: dict, logs: Path) -> dict:
    """``shoprank serve --workers``: warm-up, the fixed rates, then the max sustainable rate."""
    store = settings.workdir.name
    shoprank = [str(Path(sys.executable).with_name("shoprank")), "--workdir", str(settings.workdir)]
    shoprank += ["--profile", settings.profile, "--project", settings.project, "serve", "--service", SERVICE]
    shoprank += ["--as-of", "materialized", "--port", str(PORTS["shoprank"]), "--workers", str(workers)]
    print(f"shoprank serve ({store}, {workers} worker(s)): /v1/rerank, {SERVICE}, {CANDIDATES} candidates", flush=True)
    with server(shoprank, env, PORTS["shoprank"], logs / f"shoprank-{store}-{workers}.log") as group:
        _check_ranking(PORTS["shoprank"], bodies[0])

        def ours(rate: float, seconds: float = duration) -> Load:
            return _load(PORTS["shoprank"], group, bodies, rate, seconds, metrics=True)

        print("  warm-up:")
        ours(WARMUP_RATE * workers, WARMUP_SECONDS)
        loads = [ours(rate) for rate in RATES]
        print("  max sustainable rate:")
        search = _search(ours, loads, RATES[0])
    remove_served_logs(settings)
    return {"loads": loads, "search": search}


def _bodies(shop: Shop) -> list[bytes]:
    """``BODIES`` requests of ``/v1/rerank`` (``Shop.requests``, seed 3)."""
    bodies = []
    for user, items in shop.requests(BODIES, seed=3):
        body = {"user_id": user, "item_ids": items, "query": None, "surface": "recommend"}
        bodies.append(post("/v1/rerank", body))
    return bodies


def _check_ranking(port: int, payload: bytes) -> None:
    """The service ranks with the model (not the fallback) and returns every candidate."""
    status, body = send_one(port, payload)
    answer = json.loads(body)
    if status != 200 or answer.get("fallback") or len(answer["items"]) != CANDIDATES:
        raise RuntimeError(f"/v1/rerank did not rank with the model: {status} {body[:500]!r}")


def _check_feast(port: int, payload: bytes, shop: Shop) -> bool:
    """Whether feast serve's values for one request equal our in-process read of the same rows."""
    from serving.online import OnlineReader
    from shoprank.features.store import open_store
    from training.plan import resolve

    status, body = send_one(port, payload)
    if status != 200:
        raise RuntimeError(f"feast serve answered {status}: {body[:500]!r}")
    answer = json.loads(body)
    entities = json.loads(payload.split(b"\r\n\r\n", 1)[1])["entities"]
    store = open_store(shop.settings)
    plan = resolve(store, SERVICE)
    reader = OnlineReader(store, plan)
    ours = reader.read(shop.rows(entities["user_id"][0], entities["item_id"]))
    reader.close()
    theirs = dict(zip(answer["metadata"]["feature_names"], answer["results"], strict=True))
    for column in plan.features:
        for a, b in zip(ours[column].to_list(), theirs[column]["values"], strict=True):
            if not (
                a == b or (a is None and b is None) or (isinstance(a, float) and b is not None and math.isclose(a, b))
            ):
                print(f"  feast serve differs from our read: {column} {a!r} != {b!r}")
                return False
    return True


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if math.isfinite(seconds) else "—"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    return "\n".join([*lines, *("| " + " | ".join(row) + " |" for row in rows)])


def _report(preset: str, duration: float, runs: dict) -> str:
    out = [
        f"\n# Serving benchmark — {preset} shop, {SERVICE}, {CANDIDATES} candidates, {duration:g} s per rate, {os.cpu_count()} cores shared by servers and load generator\n"
    ]
    rows = []
    for store, workers, served in _served(runs):
        for load in served["loads"] + served["search"]:
            rows.append(_load_row(f"shoprank serve /v1/rerank ({store}, {workers} worker(s))", load))
        best, above = _max_sustainable(served["loads"] + served["search"])
        rows.append(
            [
                f"**shoprank ({store}, {workers} worker(s)) max sustainable**",
                f"**{best:g}**",
                f"(next tried: {above:g})" if above else "",
                *[""] * 9,
            ]
        )
    for store, run in runs.items():
        for load in run["feast"]:
            rows.append(_load_row(f"feast serve /get-online-features ({store})", load))
        best, above = _max_sustainable(run["feast"])
        saturation = max(load.achieved for load in run["feast"])
        rows.append(
            [
                f"**feast serve ({store}) max sustainable**",
                f"**{best:g}**",
                f"saturation {saturation:.1f} rps achieved",
                *[""] * 9,
            ]
        )
    header = [
        "server (HTTP, full request)",
        "offered rps",
        "achieved rps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "server cores",
        "server CPU ms / answer",
        "client cores",
        "other work cores",
        "sustainable",
    ]
    out.append(_table(header, rows))
    for store, workers, served in _served(runs):
        at = next((load for load in served["loads"] if load.offered == GOAL_RATE), None)
        if at is not None:
            met = at.p(99) <= GOAL_P99 and at.achieved >= ACHIEVED_SHARE * at.offered and at.errors == 0
            out.append(
                f"\nGoal p99 <= {GOAL_P99 * 1000:g} ms at {GOAL_RATE} rps ({store}, {workers} worker(s)): "
                f"p99 {_ms(at.p(99))} ms -> {'met' if met else 'NOT met'}"
            )
    for store, run in runs.items():
        out.append(
            f"feast serve ({store}) values equal to our read on a checked request: {'yes' if run['feast_equal'] else 'NO'}"
        )

    rows = []
    for store, run in runs.items():
        reads = run["reads"]
        feast = reads["feast"]
        for name, label in (
            ("warm", "as served (item values and on-demand outputs remembered)"),
            ("cold", "caches emptied before each read"),
        ):
            ours = reads[name]
            rows.append(
                [
                    f"{store}, ours {label}",
                    f"{_ms(np.median(feast))} / {_ms(np.percentile(feast, 99))}",
                    f"{_ms(np.median(ours))} / {_ms(np.percentile(ours, 99))}",
                    f"**{np.median(feast) / np.median(ours):.1f}x** / {np.percentile(feast, 99) / np.percentile(ours, 99):.1f}x",
                    f"{reads['mismatches']:,} of {reads['cells']:,}",
                ]
            )
    out.append(
        f"\nIn-process feature read, {READS} requests of 1 user + {CANDIDATES} items each ({runs[next(iter(runs))]['reads']['features']} features of {SERVICE}); goal: ours >= {GOAL_READ:g}x Feast\n"
    )
    header = [
        "store, our read",
        "Feast get_online_features p50 / p99 ms",
        "ours p50 / p99 ms",
        "speed-up p50 / p99",
        "cells differing",
    ]
    out.append(_table(header, rows))

    rows = []
    for store, workers, served in _served(runs):
        for load in served["loads"] + served["search"]:
            d = load.metrics
            _, request, request99 = _histogram(d, "shoprank_request_seconds", endpoint="/v1/rerank")
            _, features, features99 = _histogram(d, "shoprank_stage_seconds", endpoint="/v1/rerank", stage="features")
            _, score, score99 = _histogram(d, "shoprank_stage_seconds", endpoint="/v1/rerank", stage="score")
            fallbacks = d.get(("shoprank_fallbacks_total", (("endpoint", "/v1/rerank"),)), 0.0)
            client = (
                float(np.mean(load.latencies[np.isfinite(load.latencies)]))
                if np.isfinite(load.latencies).any()
                else math.nan
            )
            rows.append(
                [
                    f"{store}, {workers}",
                    f"{load.offered:g}",
                    f"{_ms(features)} / {_ms(features99)}",
                    f"{_ms(score)} / {_ms(score99)}",
                    _ms(request - features - score),
                    f"{_ms(request)} / {_ms(request99)}",
                    _ms(client - request) if not load.errors else "—",  # timeouts: the app outlives the client
                    _ms(client),
                    f"{fallbacks:g}",
                ]
            )
    out.append(
        "\nWhere the time goes under load (/metrics stage histograms, deltas over each rate; p99 interpolated within the buckets 1, 2.5, 5, 7.5, 10, 15, 20, 25, 50 ms...)\n"
    )
    header = [
        "store, workers",
        "rps",
        "features mean / p99 ms",
        "score mean / p99 ms",
        "rest in app mean ms",
        "app (middleware) mean / p99 ms",
        "outside app mean ms",
        "client mean ms",
        "fallbacks",
    ]
    out.append(_table(header, rows))

    names = list(next(iter(runs.values()))["reads"]["stages"])
    rows = [
        [
            name,
            *(
                f"{_ms(np.median(run['reads']['stages'][name]))} / {_ms(np.percentile(run['reads']['stages'][name], 99))}"
                for run in runs.values()
            ),
        ]
        for name in names
    ]
    out.append(
        f"\nOne request in-process, single-threaded, no HTTP (200 requests after {STAGE_WARMUP} of warm-up; p50 / p99 ms)\n"
    )
    out.append(_table(["step", *(f"{store} p50 / p99 ms" for store in runs)], rows))
    out.append(
        f"\nrest in app = the middleware's whole-request time minus the features and score stages (JSON body parse, pydantic "
        "validation, response model and serialization, inner middleware, waiting for the event loop or a thread); outside app = client latency minus the "
        "middleware's time until the answer is sent (uvicorn's HTTP parsing, event-loop queueing behind other requests and their served-log lines, the load generator). Sustainable: achieved >= "
        f"{ACHIEVED_SHARE:.0%} of offered, p99 <= {P99_LIMIT * 1000:g} ms, failures < {ERROR_SHARE:.0%} (timeout {TIMEOUT:g} s, "
        "latency from each request's scheduled time)."
    )
    return "\n".join(out)


def _served(runs: dict) -> Iterator[tuple[str, int, dict]]:
    """Each store's shoprank serve runs: (store, workers, loads)."""
    for store, run in runs.items():
        for workers, served in run["served"].items():
            yield store, workers, served


def _load_row(name: str, load: Load) -> list[str]:
    return [
        name,
        f"{load.offered:g}",
        f"{load.achieved:.1f}",
        _ms(load.p(50)),
        _ms(load.p(95)),
        _ms(load.p(99)),
        f"{load.errors}",
        f"{load.server_cores:.2f}",
        f"{load.cpu_ms:.1f}",
        f"{load.client_cores:.2f}",
        f"{load.other_cores:.2f}",
        "yes" if load.sustainable else "no",
    ]


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds per rate.")
    parser.add_argument("--stores", nargs="+", choices=list(PROFILES), default=list(PROFILES))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="shoprank serve --workers to measure.")
    args = parser.parse_args()
    main(args.preset, args.duration, args.stores, args.workers)
