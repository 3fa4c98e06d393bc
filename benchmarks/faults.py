"""Faults under load: ``shoprank serve`` answering ``/v1/rerank`` (100 candidates, the default
``search_ranker_v2``) at a steady open-loop rate while one of its stores fails in the middle of the
run, beside the same load without a fault (the anchor). ``--endpoint search`` loads ``/v1/search``
instead (``openloop.shop_requests``: queries as often as the shop's users searched them, ``k`` 20).

    python benchmarks/faults.py [--preset small] [--endpoint rerank] [--rate 100] [--duration 30] [--faults redis-hung ...]

Faults: ``redis-hung`` (SIGSTOP, then SIGCONT), ``redis-refused`` (shut down, then started again
on its saved data), ``redis-emptied`` (FLUSHALL, then ``shoprank features materialize --rebuild``),
``sqlite-dropped`` (the ``user_features`` table dropped, then the same rebuild of that view),
``postgres-down`` (the registry's PostgreSQL stopped, then started), ``worker-killed`` (one of two
workers killed with SIGKILL; uvicorn's supervisor starts another). Redis and PostgreSQL are servers
of the benchmark's own (ports ``PORTS``), so a fault touches nothing else on the machine; the
Redis and PostgreSQL faults run the production profile, the others the embedded one (SQLite).

Each run: ``shoprank serve`` (its defaults: one worker, the 20 ms read budget; two workers for
``worker-killed``), the load for ``duration`` s, the fault from a third of it on, the store back at
two thirds (a rebuild, ``shoprank features materialize --rebuild``, starts a second after the fault,
and the store counts as back when it ends), ``/ready`` polled every 50 ms meanwhile. Reported per
fault: the share of requests answered 200; latency p99 of the requests due while the store was down
(goal: the read budget + 5 ms); the share of those answered from the fallback; how long ``/ready``
took to say so (503, or a warning for the registry, which does not stop ranking); how long after the
store came back the service ranked with its model again (``/ready`` 200 and no fallback answer
after; goal: 2 s); and the served lists lost: lists acknowledged with a 200 whose request rows are
missing from ``landing/requests`` once the server stopped (goal: 0).
Figures and findings: ``benchmarks/README.md``, "Faults under load".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the serving package, not serving.py here
from openloop import ENDPOINTS, open_loop, post, remove_served_logs, server, shop_requests  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "faults"
PG_DATA = Path("/tmp/shoprank-faults-postgres")  # the postgres user must own it
PORTS = {"shoprank": 18741, "redis": 18742, "postgres": 18743}
FAULTS = ("redis-hung", "redis-refused", "redis-emptied", "sqlite-dropped", "postgres-down", "worker-killed")
BUDGET_MS = 20.0  # shoprank serve's default read budget
BODIES = 2_000
POLL_SECONDS = 0.05
REBUILT = ("redis-emptied", "sqlite-dropped")  # faults mended by a rebuild
REBUILD_AFTER = 1.0  # seconds from such a fault to the rebuild's start (it takes seconds: it must end in the run)


@dataclass
class Stores:
    """The workdirs and the servers of the benchmark's own."""

    embedded: object  # Settings
    production: object  # Settings
    env: dict[str, str]  # what points shoprank at the benchmark's Redis and PostgreSQL


def main(preset: str, endpoint: str, rate: float, duration: float, faults: list[str]) -> None:
    stores = _stores(preset)
    print(f"Load: /v1/{endpoint} at {rate:g} rps for {duration:g} s; fault from {duration / 3:.0f} s, back at "
          f"{2 * duration / 3:.0f} s (a rebuild starts a second after the fault)", flush=True)  # fmt: skip
    rows = [_run("none (anchor)", stores.embedded, {}, endpoint, rate, duration)]
    rows += [_run("none (anchor)", stores.production, stores.env, endpoint, rate, duration)]
    for fault in faults:
        settings = stores.embedded if fault in ("sqlite-dropped", "worker-killed") else stores.production
        env = stores.env if settings is stores.production else {}
        rows.append(_run(fault, settings, env, endpoint, rate, duration))
    print(_report(rows, endpoint, rate, duration))


# --- stores ----------------------------------------------------------------------------------


def _stores(preset: str) -> Stores:
    """The shop (``shoprank pipeline``, embedded), and a copy of it on the production profile with
    the benchmark's own Redis and PostgreSQL, both started here."""
    from shoprank.config import Settings

    embedded = Settings(workdir=WORK / preset / "sqlite")
    if not (embedded.models / "search_ranker_v2").is_dir():
        subprocess.run([*_shoprank(embedded), "pipeline", "--preset", preset], check=True)
    _redis(start=True)
    _postgres(start=True)
    env = {
        "SHOPRANK_REDIS": f"127.0.0.1:{PORTS['redis']}",
        "SHOPRANK_REGISTRY_URL": f"postgresql+psycopg://postgres@127.0.0.1:{PORTS['postgres']}/postgres",
    }
    production = Settings(workdir=WORK / preset / "redis", profile="production")
    if not production.workdir.is_dir():
        shutil.copytree(embedded.workdir, production.workdir, ignore=shutil.ignore_patterns("*.db", "workdir.*"))
    production = replace(production, project=f"faults_{preset}")
    _run_shoprank(production, env, "features", "apply")
    _run_shoprank(production, env, "features", "materialize", "--rebuild")
    return Stores(embedded, production, env)


def _redis(start: bool = False, stop: bool = False) -> int:
    """Start (on its saved data) or shut down (saving it) the benchmark's Redis; its pid."""
    port = str(PORTS["redis"])
    if stop:
        subprocess.run(["redis-cli", "-p", port, "shutdown", "save"], capture_output=True)
        return 0
    if start and subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True).returncode != 0:
        (WORK / "redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["redis-server", "--port", port, "--bind", "127.0.0.1", "--daemonize", "yes", "--dir", str(WORK / "redis")],
            check=True,
            capture_output=True,
        )
        _until(lambda: subprocess.run(["redis-cli", "-p", port, "ping"], capture_output=True).returncode == 0, 10)
    info = subprocess.run(["redis-cli", "-p", port, "info", "server"], capture_output=True, text=True).stdout
    return int(next(line.split(":")[1] for line in info.splitlines() if line.startswith("process_id:")))


def _postgres(start: bool = False, stop: bool = False) -> None:
    """Start (initialized once) or stop the benchmark's PostgreSQL (as the postgres user)."""
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]

    def as_postgres(*command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "postgres", "--", *command], capture_output=True, text=True)

    if stop:
        as_postgres(str(binaries / "pg_ctl"), "-D", str(PG_DATA), "-m", "fast", "-w", "stop")
        return
    if not (PG_DATA / "PG_VERSION").is_file():
        PG_DATA.mkdir(exist_ok=True)
        shutil.chown(PG_DATA, "postgres", "postgres")
        as_postgres(str(binaries / "initdb"), "-D", str(PG_DATA), "-A", "trust", "-U", "postgres")
    options = f"-p {PORTS['postgres']} -k /tmp -c listen_addresses=127.0.0.1"
    done = as_postgres(
        str(binaries / "pg_ctl"), "-D", str(PG_DATA), "-o", options, "-l", str(PG_DATA / "log"), "-w", "start"
    )
    if done.returncode != 0 and "another server might be running" not in done.stderr:
        raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}")


def _shoprank(settings) -> list[str]:
    command = [str(Path(sys.executable).with_name("shoprank")), "--workdir", str(settings.workdir)]
    return [*command, "--profile", settings.profile, "--project", settings.project]


def _run_shoprank(settings, env: dict[str, str], *args: str) -> None:
    subprocess.run([*_shoprank(settings), *args], check=True, env={**os.environ, **env}, capture_output=True)


# --- one run ---------------------------------------------------------------------------------


@dataclass
class Row:
    """One run's figures."""

    fault: str
    profile: str
    offered: int
    answered: float  # share answered 200
    p99_down_ms: float  # of the requests due while the store was down (all requests: no fault)
    fallback_down: float  # share of those answered from the fallback
    detected_s: float | None  # /ready saying so, after the fault
    recovered_s: float | None  # ranking with the model again, after the store came back
    lost: int  # acknowledged lists missing from landing/requests
    acknowledged: int


def _run(fault: str, settings, env: dict[str, str], endpoint: str, rate: float, duration: float) -> Row:
    workers = 2 if fault == "worker-killed" else 1
    command = [*_shoprank(settings), "serve", "--port", str(PORTS["shoprank"]), "--workers", str(workers)]
    remove_served_logs(settings)
    bodies = [post(ENDPOINTS[endpoint], body) for body in shop_requests(settings, endpoint, BODIES, seed=5)]
    print(f"\n{fault} ({settings.profile}):", flush=True)
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with server(command, {**os.environ, **env}, PORTS["shoprank"], logs / f"{fault}.log") as group:
        polls: list[tuple[float, int, dict]] = []
        stop = threading.Event()
        poller = threading.Thread(target=_poll, args=(polls, stop), daemon=True)
        poller.start()
        moments: dict[str, float] = {}
        injector = threading.Thread(target=_inject, args=(fault, settings, env, group, duration, moments), daemon=True)
        answers: list = []
        loop = asyncio.new_event_loop()
        injector.start()
        latencies, outcomes, _, lag, start = loop.run_until_complete(
            open_loop(PORTS["shoprank"], bodies, rate, duration, answers)
        )
        loop.close()
        injector.join()
        stop.set()
        poller.join()
    print(f"  outcomes {dict(outcomes)}, send lag p99 {lag * 1000:.1f} ms, moments {moments}", flush=True)
    return _figures(fault, settings, latencies, answers, start, rate, polls, moments)


def _poll(polls: list, stop: threading.Event) -> None:
    """``/ready`` every ``POLL_SECONDS``: (monotonic time, status, body)."""
    while not stop.wait(POLL_SECONDS):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['shoprank']}/ready", timeout=2) as response:
                polls.append((time.monotonic(), response.status, json.loads(response.read())))
        except urllib.error.HTTPError as error:
            polls.append((time.monotonic(), error.code, json.loads(error.read())))
        except OSError:
            polls.append((time.monotonic(), 0, {}))


def _inject(fault: str, settings, env: dict, group: int, duration: float, moments: dict) -> None:
    """Break the store a third into the load and mend it at two thirds (a rebuild: starts half way,
    the store is back when it ends); note when (monotonic). The anchors mark the same third."""
    begun = time.monotonic()
    time.sleep(duration / 3)
    moments["down"] = time.monotonic()
    if fault == "redis-hung":
        pid = _redis()
        os.kill(pid, signal.SIGSTOP)
    elif fault == "redis-refused":
        _redis(stop=True)
    elif fault == "redis-emptied":
        subprocess.run(["redis-cli", "-p", str(PORTS["redis"]), "flushall"], check=True, capture_output=True)
    elif fault == "sqlite-dropped":
        with sqlite3.connect(settings.workdir / "online_store.db") as conn:
            conn.execute(f'drop table "{settings.project}_user_features"')
    elif fault == "postgres-down":
        _postgres(stop=True)
    elif fault == "worker-killed":
        workers = _spawned(group)
        os.kill(min(workers), signal.SIGKILL)
        moments["back"] = _until(lambda: bool(_workers(2) - workers), 60)  # its replacement answers
        return
    mended = begun + (duration / 3 + REBUILD_AFTER if fault in REBUILT else 2 * duration / 3)
    time.sleep(max(0.0, mended - time.monotonic()))
    if fault == "redis-hung":
        os.kill(pid, signal.SIGCONT)
    elif fault == "redis-refused":
        _redis(start=True)
    elif fault == "postgres-down":
        _postgres(start=True)
    elif fault in REBUILT:
        view = ["--view", "user_features"] if fault == "sqlite-dropped" else []
        _run_shoprank(settings, env, "features", "materialize", "--rebuild", *view)
    moments["back"] = time.monotonic()


def _spawned(parent: int) -> set[int]:
    """The worker processes uvicorn's supervisor (``parent``) started (multiprocessing spawns them)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return {int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def _workers(count: int) -> set[int]:
    """Workers that answer ``/health`` now: asked until ``count`` of them answered (50 times at most)."""
    found = set()
    for _ in range(50):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['shoprank']}/health", timeout=2) as response:
                found.add(json.loads(response.read())["worker"])
        except OSError:
            pass
        if len(found) >= count:
            break
    return found


def _figures(fault, settings, latencies, answers, start, rate, polls, moments) -> Row:
    count = len(latencies)
    due = start + np.arange(count) / rate
    parsed = [json.loads(body) if body else None for body in answers]
    fallback = np.array([bool(answer and answer.get("fallback")) for answer in parsed])
    down, back = moments.get("down", start), moments.get("back", due[-1] + 1)
    during = (due >= down) & (due < back)
    p99 = float(np.percentile(latencies[during], 99, method="inverted_cdf")) * 1000 if during.any() else float("nan")
    slowest = np.argsort(-np.where(during, latencies, 0))[:5]
    print(
        "  slowest while down: "
        + ", ".join(f"{latencies[i] * 1000:.0f} ms due {due[i] - down:+.2f} s" for i in slowest)
    )
    detected = recovered = None
    if not fault.startswith("none"):
        flagged = [at for at, status, body in polls if at >= down and (status != 200 or body.get("warnings"))]
        detected = flagged[0] - down if flagged else None
        fine = [at for at, status, body in polls if at >= back and status == 200 and not body.get("warnings")]
        late = due[(due >= back) & fallback]
        recovered = max(fine[0] if fine else float("inf"), late.max() if late.size else back) - back
    acknowledged = {answer["request_id"] for answer in parsed if answer and "request_id" in answer}
    logged = _logged(settings)
    return Row(
        fault, settings.profile, count, float(np.isfinite(latencies).mean()), p99,
        float(fallback[during].mean()) if during.any() else 0.0, detected, recovered,
        len(acknowledged - logged), len(acknowledged),
    )  # fmt: skip


def _logged(settings) -> set[str]:
    """The request ids of the served lists in the landing folder (visible files)."""
    ids = set()
    for path in (settings.landing / "requests").glob("requests-*.jsonl"):
        with path.open() as lines:
            ids.update(json.loads(line)["request_id"] for line in lines if line.strip())
    return ids


def _until(check: Callable[[], bool], seconds: float) -> float:
    """Poll ``check`` until it holds (at most ``seconds``); the monotonic time it did."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {seconds} s")
        time.sleep(0.02)
    return time.monotonic()


# --- report ----------------------------------------------------------------------------------


def _report(rows: list[Row], endpoint: str, rate: float, duration: float) -> str:
    def seconds(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    header = [
        "fault", "profile", "answered", "p99 while down, ms", "fallback while down", "detected in /ready, s",
        "ranking again after the store is back, s", "lists lost / acknowledged",
    ]  # fmt: skip
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [
            row.fault, row.profile, f"{row.answered:.2%}", f"{row.p99_down_ms:.1f}", f"{row.fallback_down:.0%}",
            seconds(row.detected_s), seconds(row.recovered_s), f"{row.lost} / {row.acknowledged:,}",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    goals = (
        f"Goals: 100% answered; p99 while down <= {BUDGET_MS + 5:g} ms (the read budget + 5); ranking again "
        "<= 2 s after the store is back; 0 lists lost. Anchors: the same load without a fault "
        "(p99 over the same middle third)."
    )
    return (
        f"\nFaults under load: /v1/{endpoint} at {rate:g} rps, {duration:g} s per run\n"
        + "\n".join(lines)
        + "\n"
        + goals
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="Simulator preset of the shop.")
    parser.add_argument("--endpoint", choices=["rerank", "search"], default="rerank", help="The endpoint loaded.")
    parser.add_argument("--rate", type=float, default=100.0, help="Requests per second offered.")
    parser.add_argument("--duration", type=float, default=30.0, help="Seconds of load per run.")
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS), help="Faults to run.")
    arguments = parser.parse_args()
    main(arguments.preset, arguments.endpoint, arguments.rate, arguments.duration, arguments.faults)
