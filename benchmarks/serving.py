"""Serving latency and throughput of what users run: ``shoprank serve`` with its defaults (the
models ``shoprank pipeline`` trains: ``search_ranker_v2`` for search and rerank, ``ranker_v2`` for
recommendations) under an open-loop load of each ranking endpoint as clients call it, on SQLite and
on Redis, with 1 and 2 workers; beside the anchors: Feast's ``get_online_features`` in-process and
Feast's own feature server (``feast serve``) on the same rows.

    python benchmarks/serving.py [--preset small] [--duration 20] [--stores redis sqlite] [--workers 1 2]
        [--endpoints search recommend rerank]

The endpoints, their bodies drawn from the shop afresh for every load (``openloop.shop_requests``):

- ``/v1/search``: a query the shop's users searched (one per search the shop logged, so a frequent
  query comes as often as it did), a random known user, ``k`` 20. Beside it, labelled *long
  tail*: each distinct query alike (rare queries as often as frequent ones), on two workers.
- ``/v1/recommend``: a random known user and two random catalog items as the session, ``k`` 20.
- ``/v1/rerank``: a random known user and 100 random catalog items (no query).

Workdirs: ``benchmarks/work/serving/<preset>/{redis,sqlite}`` (``shoprank pipeline`` when absent;
Redis is the production profile, Feast project ``bench_serving_<preset>``, so it needs Redis and
PostgreSQL; SQLite the embedded one). First, how steadily the machine runs Python: a fixed chunk of
pure-Python work (about 5 ms) timed for 20 s, alone (``_machine_noise``), the floor under any
latency measured after it. Then what CPU per request a p99 goal leaves: a FastAPI app that
validates the rerank bodies, burns a fixed CPU time (0 to 5 ms) and answers as large a ranking,
at 200 rps on two workers (``_cpu_budget``). Then per store, in this order, nothing else of the
benchmark running meanwhile:

1. In-process, per endpoint, on the rows its service reads (the search's retrieved candidates,
   the recommender's candidates, the rerank's items): Feast's ``get_online_features``
   (``serving.features.online_features``) and our read (``serving.online.OnlineReader.read``) as
   served (values and on-demand outputs remembered across requests) and with those caches emptied
   before every read; values checked equal. Then one request of each endpoint, single-threaded,
   without HTTP, by stage.
2. ``shoprank serve --as-of materialized --workers N``, for each N given: warm-up, then per
   endpoint 100 and 200 rps, then a search for its max sustainable rate. ``/metrics`` is read
   before and after each rate: its stage histograms give the server-side time per stage.
3. ``feast serve`` on the same workdir (``ranker_v2``, the rerank's rows): 10 rps, then the same
   search; its saturation is the highest throughput it achieved at any offered rate.

The load generator (this process, ``openloop.py``) is open loop: request i is due at
``start + i / rate`` whether or not earlier ones were answered, and its latency runs from that due
time (no coordinated omission); a request not answered 200 within ``TIMEOUT`` s counts as an error
with infinite latency. A fixed rate during which the load generator itself sent late (its send
lag p99 over ``STALL_LAG``: the machine stalled, not the service) runs once more with fresh
bodies; both runs are reported. The goal's rate (``GOAL_RATE``) runs ``GOAL_PARTS`` times, each
with fresh bodies, and its percentiles are over all their requests (3 x 15 s: 9,000 requests, in
which a stall of a few hundred milliseconds no longer decides the p99 alone); each run's p99 is
reported beside them. A rate is *sustainable* when at least 95% of the offered rate is achieved,
p99 <= 50 ms and under 1% of the requests fail. Server and load generator share the machine's
cores. Figures and findings: ``benchmarks/README.md``, "Serving latency and throughput".
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
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
from openloop import (
    CANDIDATES,
    ENDPOINTS,
    TIMEOUT,
    open_loop,
    post,
    remove_served_logs,
    send_one,
    server,
    shop_requests,
)

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "serving"
RANKING = ("search", "recommend", "rerank")  # the endpoints loaded by default
TAIL = "search (long tail)"  # beside search, on two workers at the goal's rate
RATES = (100, 200)  # rps offered to shoprank serve
FEAST_RATE = 10  # rps offered to feast serve
PROFILES = {"redis": "production", "sqlite": "embedded"}
PORTS = {"shoprank": 18731, "feast": 18732, "budget": 18733}
P99_LIMIT = 0.050  # sustainable: p99 at most this...
ACHIEVED_SHARE = 0.95  # ...at least this share of the offered rate achieved...
ERROR_SHARE = 0.01  # ...and fewer failed requests than this share
SEARCH_STEPS = 5  # rates tried when searching the max sustainable rate
STALL_LAG = 0.005  # a fixed rate whose requests the load generator sent later than this (p99) runs again
GOAL_PARTS = 3  # the goal's rate runs this many times (fresh bodies each), its percentiles over all their requests
GOAL_P99, GOAL_RATE, MOONSHOT_P99, MOONSHOT_RATE, GOAL_READ = 0.010, 200, 0.005, 600, 5.0
BODIES = 2_000  # requests of the calibrated app and of feast serve, cycled
READS = 200  # in-process reads per endpoint, path and store
WARMUP_SECONDS = 10.0  # per endpoint, at WARMUP_RATE per worker: caches filled gently (a cold server overloads sooner)
WARMUP_RATE = 20
STAGE_WARMUP, STAGE_REQUESTS = 150, 300  # in-process requests per endpoint before and while stages are timed
SATURATION_STEPS = 4  # doublings of the offered rate to find feast serve's saturation
BURNS_MS = (0, 2, 3, 4, 5)  # CPU per request of the calibrated app (``_cpu_budget``)
BUDGET_WORKERS = 2


def main(preset: str, duration: float, stores: list[str], workers: list[int], endpoints: list[str]) -> None:
    code = _code()
    print(f"Code measured: {code}")
    print(_machine_noise())
    first = _workdir(preset, stores[0])
    reranks = [post(ENDPOINTS["rerank"], body) for body in shop_requests(first, "rerank", BODIES, seed=3)]
    budget = _cpu_budget(reranks, duration)
    runs = {}
    for store in stores:
        settings = _workdir(preset, store)
        print(f"\n== {store}: {settings.workdir} (Feast project {settings.project}, {settings.profile} profile)")
        runs[store] = _run_store(settings, duration, workers, endpoints)
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
            _load(PORTS["budget"], group, bodies, WARMUP_RATE * BUDGET_WORKERS, WARMUP_SECONDS / 2, None)
            loads[burn] = _load(PORTS["budget"], group, bodies, GOAL_RATE, duration, None)
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
    """The store's workdir, built by ``shoprank pipeline`` when missing."""
    from shoprank.config import Settings
    from shoprank.salt import SALT_VARIABLE

    settings = Settings(workdir=WORK / preset / store, profile=PROFILES[store])
    if settings.profile == "production":  # Redis and PostgreSQL are shared: a project of its own
        settings = replace(settings, project=f"bench_serving_{preset}")
    if not (settings.models / "ranker_v2").is_dir():
        shoprank = [str(Path(sys.executable).with_name("shoprank")), "--workdir", str(settings.workdir)]
        shoprank += ["--profile", settings.profile, "--project", settings.project]
        salt = {SALT_VARIABLE: os.environ.get(SALT_VARIABLE) or "bench-serving"}  # the production profile needs one
        subprocess.run([*shoprank, "pipeline", "--preset", preset], check=True, env={**os.environ, **salt})
    return settings


@dataclass
class Shop:
    """What the service loads, opened in-process: the searcher of each default service, the
    recommender, and the time requests are asked at."""

    settings: object
    searchers: dict  # by endpoint
    recommender: object
    at: object  # request time of the first in-process request (whole seconds, as the service's clock gives)

    @classmethod
    def open(cls, settings) -> Shop:
        from serving.app import RECOMMEND_SERVICE
        from serving.clock import Clock
        from serving.recommend import Recommender
        from serving.search import SERVICE, Searcher
        from shoprank.features.store import open_store

        # reads timed here, not bounded (a cold one may pass the service's budget)
        searcher = Searcher.open(settings, SERVICE, budget=TIMEOUT)
        recommending = Searcher.open(settings, RECOMMEND_SERVICE, budget=TIMEOUT)
        searchers = {"search": searcher, "recommend": recommending, "rerank": searcher}
        # whole seconds: Feast passes request times to on-demand views in whole seconds, our read as given
        at = Clock.parse("materialized", open_store(settings)).now().replace(microsecond=0)
        return cls(settings, searchers, Recommender.open(settings, searcher.catalog), at)

    def candidates(self, endpoint: str, body: dict) -> tuple[list[str], object, str | None]:
        """The items a request ranks (as the service finds them), their backfill flags, its query."""
        from shoprank.search.retrieve import retrieved

        if endpoint == "search":
            searcher = self.searchers["search"]
            found = retrieved(searcher.index, body["query"], k=CANDIDATES)
            return found.item_ids(searcher.index), found.backfill, body["query"]
        if endpoint == "recommend":
            found = self.recommender.candidates(body["context"]["session_item_ids"], None, body["user_id"])
            return found.ids, found.backfill, None
        return body["item_ids"], None, None

    def rows(self, endpoint: str, body: dict, at):
        """The entity rows the service reads features for, as a frame."""
        import polars as pl

        searcher = self.searchers[endpoint]
        items, _, query = self.candidates(endpoint, body)
        return pl.DataFrame(searcher.entity_rows(items, body["user_id"], query, at), schema=searcher.rows.schema)


# --- in-process ------------------------------------------------------------------------------


def _in_process(shop: Shop, endpoints: list[str]) -> dict:
    """Per endpoint: Feast's get_online_features vs our read on the same rows; one request's stages."""
    return {endpoint: {**_reads(shop, endpoint), "stages": _stages(shop, endpoint)} for endpoint in endpoints}


def _reads(shop: Shop, endpoint: str) -> dict:
    """Feast's get_online_features and our read (as served; with its caches emptied) on the rows
    of ``READS`` requests, each at its own time (as the service's clock runs); values compared."""
    from serving.features import online_features
    from serving.online import OnlineReader
    from shoprank.features.store import open_store

    searcher = shop.searchers[endpoint]
    store, plan = open_store(shop.settings), searcher.plan
    reader = OnlineReader(store, plan, budget=TIMEOUT)  # timed here, not bounded
    bodies = shop_requests(shop.settings, endpoint, READS, seed=11)
    rows = [shop.rows(endpoint, body, shop.at + timedelta(seconds=index)) for index, body in enumerate(bodies)]
    rows = [each for each in rows if each.height]  # a search that found nothing reads nothing
    for each in rows[:20]:  # warm-up: registry caches, connections, imports
        online_features(store, plan, each), reader.read(each)

    def cold(each):
        reader.forget()  # values kept CACHE_SECONDS, on-demand outputs by input row
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
    return {**result, "mismatches": mismatches, "cells": cells, "features": len(plan.features), "service": plan.service}


def _bits(series) -> list:
    """Values compared exactly (floats by their bits)."""
    import struct

    if series.dtype.is_float():
        return [None if v is None else struct.pack("<d", v) for v in series.to_list()]
    return series.to_list()


def _stages(shop: Shop, endpoint: str) -> dict[str, np.ndarray]:
    """One request's work as the service does it, single-threaded and without HTTP, per stage
    (seconds per request, ``STAGE_REQUESTS`` after ``STAGE_WARMUP``): the candidates, the entity
    rows, the store's round trip, the rest of the feature read (keys, cache, decoding, on-demand
    views), the scores, the results, the JSON response and the list's lines for the served log.
    Each request has its own request time, as the service's clock gives; on one event loop. The
    searcher is the one the HTTP load runs in another process; its read is timed and restored."""
    from serving.app import _ranking
    from serving.served_log import ServedLog

    searcher = shop.searchers[endpoint]
    reader, spent, loop = searcher.reader, Counter(), asyncio.new_event_loop()

    def timed(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return wrapper

    original = reader._tables.read_async

    async def round_trip(*args):
        started = time.perf_counter()
        try:
            return await original(*args)
        finally:
            spent["store round trip"] += time.perf_counter() - started

    reader._tables.read_async = round_trip
    score = searcher.ranker.score
    searcher.ranker.score = timed("scores (Ranker.score)", score)
    steps: dict[str, list[float]] = {}
    bodies = shop_requests(shop.settings, endpoint, STAGE_WARMUP + STAGE_REQUESTS, seed=13)
    with tempfile.TemporaryDirectory() as folder:
        served = ServedLog(replace(shop.settings, workdir=Path(folder)))
        for index, body in enumerate(bodies):
            at, user = shop.at + timedelta(seconds=index), body["user_id"]
            spent.clear()
            t0 = time.perf_counter()
            items, backfill, query = shop.candidates(endpoint, body)
            t1 = time.perf_counter()
            k = body.get("k")
            result = loop.run_until_complete(searcher.rank(items, user, query, k, backfill, False, at))
            t2 = time.perf_counter()
            request_id, _ = _ranking(ENDPOINTS[endpoint], result, False)
            t3 = time.perf_counter()
            if result.items:  # as the service logs a list
                shown = [item["item_id"] for item in result.items]
                logged = (result.model, result.vectors, result.order, result.entities)
                served.record(request_id, at, user, endpoint, query, *logged, shown=shown)
            t4 = time.perf_counter()
            if index < STAGE_WARMUP:  # caches as under load
                continue
            stage = {"features": 0.0, "score": 0.0, **result.stages}  # the read; the scores and results
            parts = {"candidates (retrieval, recommender)": t1 - t0}
            parts["entity rows (with the title BM25)"] = (t2 - t1) - stage["features"] - stage["score"]
            parts["store round trip"] = spent["store round trip"]
            parts["rest of the read (keys, cache, decoding, on-demand views)"] = (
                stage["features"] - spent["store round trip"]
            )
            parts["scores (Ranker.score)"] = spent["scores (Ranker.score)"]
            parts["results"] = stage["score"] - spent["scores (Ranker.score)"]
            parts["JSON response"] = t3 - t2
            parts["served log lines"] = t4 - t3
            parts["**total**"] = t4 - t0
            for name, seconds in parts.items():
                steps.setdefault(name, []).append(seconds)
        served.close()
    searcher.ranker.score, reader._tables.read_async = score, original
    loop.close()
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

    name: str | None  # of ``ENDPOINTS`` (None: not a shoprank endpoint)
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
    stalled: Load | None = None  # a first run at this rate, in which the machine stalled
    parts: list[Load] = field(default_factory=list)  # the runs this one pools (the goal's rate)

    @property
    def cpu_ms(self) -> float:
        """The server's CPU time per answered request, ms."""
        answered = np.isfinite(self.latencies).sum()
        return self.server_cores * self.wall * 1000 / answered if answered else math.nan

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q, method="inverted_cdf"))

    @property
    def fallbacks(self) -> float:
        """Rankings the service answered from its fallback (/metrics)."""
        path = ENDPOINTS.get(self.name or "")
        return self.metrics.get(("shoprank_fallbacks_total", (("endpoint", path),)), 0.0)

    @property
    def errors(self) -> int:
        return int(np.isinf(self.latencies).sum())

    @property
    def sustainable(self) -> bool:
        return (
            self.achieved >= ACHIEVED_SHARE * self.offered
            and self.p(99) <= P99_LIMIT
            and self.errors < ERROR_SHARE * len(self.latencies)
            and self.fallbacks < ERROR_SHARE * len(self.latencies)
        )


def _load(port: int, group: int, payloads: list[bytes], rate: float, seconds: float, name: str | None) -> Load:
    """Offer ``rate`` requests per second for ``seconds``; measure; let the server settle. With
    ``name`` (``ENDPOINTS``), read the service's /metrics before and after."""
    before = _scrape(port) if name else {}
    cpu, client, busy, started = _group_cpu(group), time.process_time(), _busy(), time.perf_counter()
    latencies, outcomes, achieved, lag, _ = asyncio.run(open_loop(port, payloads, rate, seconds))
    wall = time.perf_counter() - started
    server, client = (_group_cpu(group) - cpu) / wall, (time.process_time() - client) / wall
    others = max(0.0, (_busy() - busy) / wall - server - client)
    _settle(group)  # an overloaded server still works off requests the client gave up on
    after = _scrape(port) if name else {}
    delta = {key: value - before.get(key, 0.0) for key, value in after.items()}
    load = Load(name, rate, seconds, latencies, outcomes, achieved, lag, server, client, others, wall, delta)
    p = [f"{load.p(q) * 1000:.1f}" if math.isfinite(load.p(q)) else "inf" for q in (50, 95, 99)]
    print(
        f"  {name or ''} {rate:6.0f} rps offered: {achieved:6.1f} achieved, p50/p95/p99 {'/'.join(p)} ms, "
        f"errors {load.errors} ({dict(outcomes)}), fallbacks {load.fallbacks:g}, server {server:.2f} cores "
        f"({load.cpu_ms:.2f} ms per answer), client {client:.2f}, others {others:.2f}, "
        f"send lag p99 {lag * 1000:.1f} ms -> {'sustainable' if load.sustainable else 'NOT sustainable'}",
        flush=True,
    )
    return load


def _pooled(parts: list[Load]) -> Load:
    """One load of ``parts`` (runs of one endpoint at one rate): their requests together, their
    CPU and wall time added up."""
    wall = sum(part.wall for part in parts)

    def cores(name: str) -> float:
        return sum(getattr(part, name) * part.wall for part in parts) / wall

    metrics: Counter = Counter()
    for part in parts:
        metrics.update(part.metrics)
    first = parts[0]
    return Load(
        first.name, first.offered, sum(part.seconds for part in parts),
        np.concatenate([part.latencies for part in parts]), sum((part.outcomes for part in parts), Counter()),
        min(part.achieved for part in parts), max(part.lag_p99 for part in parts), cores("server_cores"),
        cores("client_cores"), cores("other_cores"), wall, dict(metrics), parts=parts,
    )  # fmt: skip


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


def _run_store(settings, duration: float, workers: list[int], endpoints: list[str]) -> dict:
    shop = Shop.open(settings)
    print(f"In-process: {READS} reads and {STAGE_REQUESTS} requests per endpoint", flush=True)
    in_process = _in_process(shop, endpoints)
    env = {**os.environ, **settings.env()}
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    served = {count: _serve(settings, count, endpoints, duration, env, logs) for count in workers}
    return {"in_process": in_process, "served": served, "feast": _feast(shop, duration, env, logs)}


def _serve(settings, workers: int, endpoints: list[str], duration: float, env: dict, logs: Path) -> dict:
    """``shoprank serve --workers`` with its defaults: warm-up, per endpoint the fixed rates (and
    the long tail of search on two workers), then each endpoint's max sustainable rate. Every
    load draws bodies of its own (``openloop.shop_requests``): what one load brought into the
    service's memory comes again in another only as often as the shop's requests repeat."""
    store = settings.workdir.name
    shoprank = [str(Path(sys.executable).with_name("shoprank")), "--workdir", str(settings.workdir)]
    shoprank += ["--profile", settings.profile, "--project", settings.project, "serve"]
    shoprank += ["--as-of", "materialized", "--port", str(PORTS["shoprank"]), "--workers", str(workers)]
    print(f"shoprank serve ({store}, {workers} worker(s), default services): {', '.join(endpoints)}", flush=True)
    seeds = itertools.count(100 * workers)
    with server(shoprank, env, PORTS["shoprank"], logs / f"shoprank-{store}-{workers}.log") as group:
        for endpoint in endpoints:
            _check_ranking(
                PORTS["shoprank"], endpoint, post(ENDPOINTS[endpoint], *shop_requests(settings, endpoint, 1, 1))
            )

        def ours(name: str, rate: float, seconds: float = duration) -> Load:
            bodies = shop_requests(settings, name, max(1, round(rate * seconds)), next(seeds))
            return _load(
                PORTS["shoprank"], group, [post(ENDPOINTS[name], body) for body in bodies], rate, seconds, name
            )

        def fixed(name: str, rate: float) -> Load:
            """A fixed rate's load (the goal's: ``GOAL_PARTS`` of them, pooled)."""
            if rate != GOAL_RATE:
                return steady(name, rate)
            pooled = _pooled([steady(name, rate) for _ in range(GOAL_PARTS)])
            print(f"  {name} {rate:g} rps, the {GOAL_PARTS} runs together: p99 {_ms(pooled.p(99))} ms", flush=True)
            return pooled

        def steady(name: str, rate: float) -> Load:
            """A run; once more when the machine stalled during it (the load generator itself
            sent late), the stalled one kept beside it."""
            load = ours(name, rate)
            if load.lag_p99 <= STALL_LAG:
                return load
            print(f"  the load generator sent {load.lag_p99 * 1000:.1f} ms late (p99): the machine stalled; once more")
            return replace(ours(name, rate), stalled=load)

        print("  warm-up:")
        for endpoint in endpoints:
            ours(endpoint, WARMUP_RATE * workers, WARMUP_SECONDS)
        loads = {endpoint: [fixed(endpoint, rate) for rate in RATES] for endpoint in endpoints}
        if workers == 2 and "search" in endpoints:
            loads[TAIL] = [fixed(TAIL, GOAL_RATE)]
        print("  max sustainable rates:")
        search = {
            endpoint: _search(lambda rate, e=endpoint: ours(e, rate), loads[endpoint], 2 * GOAL_RATE)
            for endpoint in endpoints
        }
    remove_served_logs(settings)
    return {"loads": loads, "search": search}


def _check_ranking(port: int, endpoint: str, payload: bytes) -> None:
    """The service ranks with its default model (not the fallback) and answers a full list."""
    status, body = send_one(port, payload)
    answer = json.loads(body)
    wanted = json.loads(payload.split(b"\r\n\r\n", 1)[1]).get("k", CANDIDATES)
    if status != 200 or answer.get("fallback") or len(answer["items"]) != wanted:
        raise RuntimeError(f"{ENDPOINTS[endpoint]} did not rank with the model: {status} {body[:500]!r}")


def _feast(shop: Shop, duration: float, env: dict, logs: Path) -> dict:
    """``feast serve`` (one worker) on the rerank's rows of the recommender's service: its values
    checked against our read, then ``FEAST_RATE``, the max sustainable rate and the saturation."""
    from serving.features import NO_KEY

    settings, store = shop.settings, shop.settings.workdir.name
    plan = shop.searchers["recommend"].plan
    keys = {column for view in plan.views for column in view.join_keys.values()}
    feast_bodies = []
    for body in shop_requests(settings, "rerank", BODIES, seed=3):
        rows = shop.searchers["recommend"].entity_rows(body["item_ids"], body["user_id"], None, shop.at)
        entities = {
            column: [NO_KEY if value is None and column in keys else value for value in rows[column]]
            for column in plan.entity_columns
        }
        entities["request_time"] = [shop.at.isoformat()] * len(body["item_ids"])
        request = {"feature_service": plan.service, "entities": entities, "full_feature_names": True}
        feast_bodies.append(post("/get-online-features", request))
    feast = [sys.executable, "-c", "from feast.cli.cli import cli; cli()", "-c", str(settings.workdir.resolve())]
    feast += ["-f", str(settings.feature_store_yaml), "serve", "-p", str(PORTS["feast"]), "--workers", "1"]
    feast += ["--no-access-log", "--max-requests", "1000000"]  # no worker restarts every 1,000 requests
    print(f"feast serve ({store}): /get-online-features, {plan.service}, {CANDIDATES} rows, one worker", flush=True)
    with server(feast, env, PORTS["feast"], logs / f"feast-{store}.log") as group:
        equal = _check_feast(PORTS["feast"], feast_bodies[0], shop, plan)

        def theirs(rate: float, seconds: float = duration) -> Load:
            return _load(PORTS["feast"], group, feast_bodies, rate, seconds, None)

        print("  warm-up:")
        theirs(FEAST_RATE / 2, WARMUP_SECONDS / 2)
        loads = [theirs(FEAST_RATE)]
        print("  max sustainable rate and saturation:")
        loads += _search(theirs, loads, FEAST_RATE)
        for _ in range(SATURATION_STEPS):  # offer twice the most until it falls behind
            if any(load.achieved < ACHIEVED_SHARE * load.offered for load in loads):
                break
            loads.append(theirs(2 * max(load.offered for load in loads)))
    return {"loads": loads, "equal": equal}


def _check_feast(port: int, payload: bytes, shop: Shop, plan) -> bool:
    """Whether feast serve's values for one request equal our in-process read of the same rows."""
    import polars as pl

    from serving.online import OnlineReader
    from shoprank.features.store import open_store

    status, body = send_one(port, payload)
    if status != 200:
        raise RuntimeError(f"feast serve answered {status}: {body[:500]!r}")
    answer = json.loads(body)
    entities = json.loads(payload.split(b"\r\n\r\n", 1)[1])["entities"]
    searcher = shop.searchers["recommend"]
    rows = searcher.entity_rows(entities["item_id"], entities["user_id"][0], None, shop.at)
    reader = OnlineReader(open_store(shop.settings), plan, budget=TIMEOUT)
    ours = reader.read(pl.DataFrame(rows, schema=searcher.rows.schema))
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


# --- report ----------------------------------------------------------------------------------


def _report(preset: str, duration: float, runs: dict) -> str:
    out = [
        f"\n# Serving benchmark — {preset} shop, shoprank serve with its default services, {duration:g} s per rate, "
        f"{os.cpu_count()} cores shared by servers and load generator\n",
        _headline(runs),
        "\nEvery rate\n",
        _every_rate(runs),
        "\nWhere the time goes under load (/metrics stage histograms, deltas over each rate; p99 interpolated within "
        "the buckets 1, 2.5, 5, 7.5, 10, 15, 20, 25, 50 ms...)\n",
        _stages_under_load(runs),
        f"\nIn-process feature read, {READS} requests per endpoint, on the rows its service reads; goal: ours >= "
        f"{GOAL_READ:g}x Feast\n",
        _reads_report(runs),
        f"\nOne request in-process, single-threaded, no HTTP ({STAGE_REQUESTS} requests after {STAGE_WARMUP} of "
        "warm-up; mean / p99 ms; the mean is its CPU)\n",
        _stages_report(runs),
        "\nfeast serve (one worker, /get-online-features of the recommender's service on the rerank's rows)\n",
        _feast_report(runs),
        f"\nSustainable: achieved >= {ACHIEVED_SHARE:.0%} of offered, p99 <= {P99_LIMIT * 1000:g} ms, failures and "
        f"fallbacks each < {ERROR_SHARE:.0%} (timeout {TIMEOUT:g} s, latency from each request's scheduled time). "
        "rest in app = the middleware's whole-request time minus the stages; outside app = client latency minus "
        "the middleware's time until the answer is sent (uvicorn's HTTP parsing, queueing behind other requests and "
        "their served-log lines, the load generator).",
    ]
    return "\n".join(out)


def _served(runs: dict) -> Iterator[tuple[str, int, str, list[Load], list[Load]]]:
    """Every shoprank serve series: (store, workers, name, loads at the fixed rates, search loads)."""
    for store, run in runs.items():
        for workers, served in run["served"].items():
            for name, loads in served["loads"].items():
                yield store, workers, name, loads, served["search"].get(name, [])


def _headline(runs: dict) -> str:
    rows = []
    for store, workers, name, loads, search in _served(runs):
        at = next((load for load in loads if load.offered == GOAL_RATE), None)
        if at is None:
            continue
        best, above = _max_sustainable(loads + search) if search else (math.nan, None)
        goal = at.p(99) <= GOAL_P99 and not at.errors and not at.fallbacks and at.achieved >= ACHIEVED_SHARE * GOAL_RATE
        moonshot = at.p(99) <= MOONSHOT_P99 and goal
        rate = "" if math.isnan(best) else f"{best:g}" + (f" ({above:g} not)" if above else "")
        stalled = "".join(
            f"; a run with the machine stalled: {_ms(part.stalled.p(99))}" for part in _runs(at) if part.stalled
        )
        runs = f" (runs: {' / '.join(_ms(part.p(99)) for part in at.parts)}{stalled})" if at.parts else stalled
        rows.append(
            [
                name, store, f"{workers}", _ms(at.p(50)), _ms(at.p(95)), f"**{_ms(at.p(99))}**{runs}", f"{at.errors}",
                f"{at.fallbacks:g}", f"{at.cpu_ms:.2f}", "met" if goal else "**NOT met**",
                "met" if moonshot else "not met", rate,
                "" if math.isnan(best) or workers != 2 else ("met" if best >= MOONSHOT_RATE else "not met"),
            ]
        )  # fmt: skip
    header = [
        "requests", "store", "workers", "p50 ms", "p95 ms", f"p99 ms at {GOAL_RATE} rps", "errors", "fallbacks",
        "server CPU ms / answer", f"goal p99 <= {GOAL_P99 * 1000:g} ms", f"moonshot p99 <= {MOONSHOT_P99 * 1000:g} ms",
        "max sustainable rps", f"moonshot >= {MOONSHOT_RATE} rps (2 workers)",
    ]  # fmt: skip
    return _table(header, rows)


def _runs(load: Load) -> list[Load]:
    """The runs of ``load``: its parts, or itself."""
    return load.parts or [load]


def _every_rate(runs: dict) -> str:
    rows = [
        [f"{name} ({store}, {workers} worker(s)){label}", *_load_row(each)]
        for store, workers, name, loads, search in _served(runs)
        for load in loads + search
        for each, label in _rows_of(load)
    ]
    header = [
        "requests", "offered rps", "achieved rps", "p50 ms", "p95 ms", "p99 ms", "errors", "fallbacks", "server cores",
        "server CPU ms / answer", "client cores", "other work cores", "sustainable",
    ]  # fmt: skip
    return _table(header, rows)


def _rows_of(load: Load) -> Iterator[tuple[Load, str]]:
    """The rows of ``load`` in the table of every rate, with their labels: each run (a stalled one
    before the run that replaced it), then the runs together when it pools several."""
    for number, run in enumerate(_runs(load), 1):
        if run.stalled:
            yield run.stalled, " stalled, run again"
        yield run, f" run {number}" if load.parts else ""
    if load.parts:
        yield load, " runs together"


def _load_row(load: Load) -> list[str]:
    return [
        f"{load.offered:g}", f"{load.achieved:.1f}", _ms(load.p(50)), _ms(load.p(95)), _ms(load.p(99)),
        f"{load.errors}", f"{load.fallbacks:g}", f"{load.server_cores:.2f}", f"{load.cpu_ms:.2f}",
        f"{load.client_cores:.2f}", f"{load.other_cores:.2f}", "yes" if load.sustainable else "no",
    ]  # fmt: skip


def _stages_under_load(runs: dict) -> str:
    rows = []
    for store, workers, name, loads, search in _served(runs):
        path = ENDPOINTS[name]
        for load in loads + search:
            d = load.metrics
            _, request, request99 = _histogram(d, "shoprank_request_seconds", endpoint=path)
            stages = {
                stage: _histogram(d, "shoprank_stage_seconds", endpoint=path, stage=stage)
                for stage in ("retrieve", "features", "score")
            }
            inside = sum(mean for count, mean, _ in stages.values() if count)
            finite = np.isfinite(load.latencies)
            client = float(np.mean(load.latencies[finite])) if finite.any() else math.nan
            rows.append(
                [
                    f"{name} ({store}, {workers})", f"{load.offered:g}",
                    *(f"{_ms(mean)} / {_ms(p99)}" if count else "" for count, mean, p99 in stages.values()),
                    _ms(request - inside), f"{_ms(request)} / {_ms(request99)}",
                    _ms(client - request) if not load.errors else "—",  # timeouts: the app outlives the client
                    _ms(client),
                ]
            )  # fmt: skip
    header = [
        "requests (store, workers)", "rps", "retrieve mean / p99 ms", "features mean / p99 ms", "score mean / p99 ms",
        "rest in app mean ms", "app (middleware) mean / p99 ms", "outside app mean ms", "client mean ms",
    ]  # fmt: skip
    return _table(header, rows)


def _reads_report(runs: dict) -> str:
    rows = []
    for store, run in runs.items():
        for endpoint, reads in run["in_process"].items():
            feast = reads["feast"]
            for name, label in (("warm", "as served (caches kept)"), ("cold", "caches emptied before each read")):
                ours = reads[name]
                rows.append(
                    [
                        f"{endpoint} ({reads['service']}, {reads['features']} features), {store}, ours {label}",
                        f"{_ms(np.median(feast))} / {_ms(np.percentile(feast, 99))}",
                        f"{_ms(np.median(ours))} / {_ms(np.percentile(ours, 99))}",
                        f"**{np.median(feast) / np.median(ours):.1f}x** / "
                        f"{np.percentile(feast, 99) / np.percentile(ours, 99):.1f}x",
                        f"{reads['mismatches']:,} of {reads['cells']:,}",
                    ]
                )
    header = [
        "rows, store, our read",
        "Feast p50 / p99 ms",
        "ours p50 / p99 ms",
        "speed-up p50 / p99",
        "cells differing",
    ]
    return _table(header, rows)


def _stages_report(runs: dict) -> str:
    columns = [(store, endpoint) for store, run in runs.items() for endpoint in run["in_process"]]
    first = runs[columns[0][0]]["in_process"][columns[0][1]]["stages"]
    rows = []
    for step in first:
        cells = []
        for store, endpoint in columns:
            seconds = runs[store]["in_process"][endpoint]["stages"][step]
            cells.append(f"{_ms(np.mean(seconds))} / {_ms(np.percentile(seconds, 99))}")
        rows.append([step, *cells])
    return _table(["step", *(f"{endpoint} ({store})" for store, endpoint in columns)], rows)


def _feast_report(runs: dict) -> str:
    rows = []
    for store, run in runs.items():
        rows += [[f"feast serve ({store})", *_load_row(load)] for load in run["feast"]["loads"]]
        best, above = _max_sustainable(run["feast"]["loads"])
        saturation = max(load.achieved for load in run["feast"]["loads"])
        equal = "yes" if run["feast"]["equal"] else "NO"
        rows.append([f"**feast serve ({store})**", f"max sustainable **{best:g}**", f"saturation {saturation:.1f}",
                     f"values equal to ours: {equal}", *[""] * 9])  # fmt: skip
    header = [
        "server", "offered rps", "achieved rps", "p50 ms", "p95 ms", "p99 ms", "errors", "fallbacks", "server cores",
        "server CPU ms / answer", "client cores", "other work cores", "sustainable",
    ]  # fmt: skip
    return _table(header, rows)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds per rate.")
    parser.add_argument("--stores", nargs="+", choices=list(PROFILES), default=list(PROFILES))
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2], help="shoprank serve --workers to measure.")
    parser.add_argument("--endpoints", nargs="+", choices=RANKING, default=list(RANKING), help="Endpoints loaded.")
    args = parser.parse_args()
    main(args.preset, args.duration, args.stores, args.workers, args.endpoints)
