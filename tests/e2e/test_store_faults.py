"""`shoprank serve` on a bad day of its stores, against real processes: a Redis of its own that
hangs (SIGSTOP), refuses (shut down) and restarts empty; a SQLite table dropped under a running
service; a registry, store or model missing at start. The service keeps answering, from its
fallback, at once; says so in /ready (not in /health: it is alive); and recovers by itself when
the store is back or refilled."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from redis import Redis

from serving.online import BUDGET_SECONDS
from shoprank.config import Settings
from shoprank.features.store import open_store, redis_client
from shoprank.warehouse import read
from tests.e2e.test_serve import call, free_port, start

SLOW = 1.0  # seconds: an answer slower than this waited on a store (the read budget is 20 ms)
BUDGET = ("--store-budget-ms", str(BUDGET_SECONDS * 1000))  # the default, which start() raises for other tests


def timed(url: str, body: dict | None = None) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, answer = call(url, body)
    return status, answer, time.monotonic() - started


def until(check, seconds: float = 5.0):
    """The first truthy result of ``check()`` within ``seconds`` (polled), else fail."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    pytest.fail(f"not within {seconds} s: {check.__doc__ or check}")


def rerank_fallbacks(base: str) -> float:
    """The service's count of rerank fallbacks (/metrics; 0 before the first)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        text = response.read().decode()
    found = re.search(r'^shoprank_fallbacks_total\{endpoint="/v1/rerank"\} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def ready(base: str) -> tuple[int, dict]:
    return call(f"{base}/ready")


@pytest.fixture
def own_redis(production_shop, tmp_path):
    """A Redis of its own on a free port holding a copy of the shop's online values (saved to
    ``tmp_path`` on shutdown, so a restart brings them back); yields (port, restart)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the outage test starts a Redis of its own")
    port = free_port()

    def launch() -> Redis:
        subprocess.run(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "yes", "--dir", str(tmp_path)],
            check=True,
            capture_output=True,
        )
        client = Redis("127.0.0.1", port)
        for _ in range(100):
            try:
                client.ping()
                return client
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"redis-server on port {port} did not start")

    target = launch()
    source, project = redis_client(open_store(production_shop)), production_shop.project.encode()
    for key in source.scan_iter(match=b"*" + project, count=10_000):
        target.restore(key, 0, source.dump(key))
    yield port, launch
    try:
        Redis("127.0.0.1", port).shutdown(nosave=True)
    except OSError:
        pass


def test_redis_hung_refused_and_emptied_costs_fallback_answers_at_once_and_the_service_recovers(
    production_shop, own_redis, tmp_path
):
    port, launch = own_redis
    redis_env = {"SHOPRANK_REDIS": f"127.0.0.1:{port}"}
    title = read(production_shop.warehouse, "select title from marts.dim_items order by item_id")["title"][0]
    search = {"query": title, "k": 5}
    with contextmanager(start)(production_shop, *BUDGET, env=redis_env) as base:
        assert ready(base) == (200, {"ready": True, "problems": [], "warnings": []})
        assert call(f"{base}/v1/search", search)[1]["fallback"] is None

        redis = Redis("127.0.0.1", port)
        pid = redis.info()["process_id"]
        os.kill(pid, signal.SIGSTOP)  # hung: connections accepted, nothing answered
        try:
            # each by a user not seen yet: a request whose values are all in memory (60 s) needs no store
            answers = [timed(f"{base}/v1/search", {**search, "user_id": f"hung-{n}"}) for n in range(8)]
            assert all(status == 200 and body["fallback"] and len(body["items"]) == 5 for status, body, _ in answers)
            assert "did not answer within the read's budget" in answers[0][1]["fallback"]
            assert max(seconds for _, _, seconds in answers) < SLOW
            for path in ("/health", "/metrics"):  # never wait on a store
                started = time.monotonic()
                with urllib.request.urlopen(f"{base}{path}", timeout=5) as response:
                    assert response.status == 200 and time.monotonic() - started < SLOW
            assert call(f"{base}/health")[1]["status"] == "degraded"
            status, body = ready(base)
            assert status == 503 and "Redis" in body["problems"][0]
        finally:
            os.kill(pid, signal.SIGCONT)

        def model_ranks() -> bool:
            """searches ranked by the model again, and the service ready"""
            return call(f"{base}/v1/search", search)[1]["fallback"] is None and ready(base)[0] == 200

        until(model_ranks)  # the guard's probe closes it

        redis.shutdown(save=True)  # refused
        answers = [timed(f"{base}/v1/search", {**search, "user_id": f"refused-{n}"}) for n in range(5)]
        assert all(status == 200 and body["fallback"] for status, body, _ in answers)
        assert max(seconds for _, _, seconds in answers) < SLOW
        assert until(lambda: ready(base)[0] == 503)
        redis = launch()  # back with the values saved at shutdown
        until(model_ranks)

        redis.flushall()  # restarted empty
        status, body = until(lambda: (answer := ready(base))[0] == 503 and answer)
        assert "newest entities of view" in body["problems"][0] and "materialize --rebuild" in body["problems"][0]
        assert "newest entities of view" in call(f"{base}/v1/search", search)[1]["fallback"]
        rebuild = subprocess.run(
            [Path(sys.executable).with_name("shoprank"), "--workdir", str(production_shop.workdir), "--profile",
             "production", "--project", production_shop.project, "features", "materialize", "--rebuild"],
            env={**os.environ, **redis_env}, capture_output=True, text=True,
        )  # fmt: skip
        assert rebuild.returncode == 0, rebuild.stderr
        until(model_ranks)  # no restart


def test_a_sqlite_table_dropped_under_a_running_service_is_found_and_refilled(served_shop, tmp_path):
    workdir = tmp_path / "shop"
    shutil.copytree(served_shop.workdir, workdir)
    settings = Settings(workdir=workdir, seed=served_shop.seed, simulate=served_shop.simulate)
    item_ids = read(workdir / "warehouse.duckdb", "select item_id from marts.dim_items order by 1 limit 20")["item_id"]
    rerank = {"user_id": "u000001", "item_ids": item_ids.to_list()}
    with contextmanager(start)(settings) as base:
        assert call(f"{base}/v1/rerank", rerank)[1]["fallback"] is None
        fallbacks = rerank_fallbacks(base)
        with sqlite3.connect(workdir / "online_store.db") as conn:
            conn.execute("drop table shoprank_user_features")
        status, body = until(lambda: (answer := ready(base))[0] == 503 and answer)
        fix = '"shoprank features materialize --rebuild --view user_features"'
        [problem] = body["problems"]
        assert problem.startswith('Online table "shoprank_user_features" of view "user_features" is missing in ')
        assert problem.endswith(f"online_store.db; refill it with {fix}")
        status, answer = call(f"{base}/v1/rerank", rerank)
        assert status == 200 and fix in answer["fallback"] and len(answer["items"]) == 20
        fallen_back = answer
        assert call(f"{base}/health")[1]["status"] == "degraded"  # alive (200), its store skipped
        assert rerank_fallbacks(base) == fallbacks + 1
        status = subprocess.run(
            [Path(sys.executable).with_name("shoprank"), "--workdir", str(workdir), "features", "status"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert (
            status.returncode == 1
            and f"user_features: its online table is missing; refill it with {fix}" in status.stdout
        )
        rebuilt = subprocess.run(
            [Path(sys.executable).with_name("shoprank"), "--workdir", str(workdir), "features", "materialize",
             "--rebuild", "--view", "user_features"],
            capture_output=True, text=True,
        )  # fmt: skip
        assert rebuilt.returncode == 0, rebuilt.stderr
        until(lambda: ready(base)[0] == 200 and call(f"{base}/v1/rerank", rerank)[1]["fallback"] is None)
    logged = [
        json.loads(line)
        for path in (workdir / "landing" / "requests").glob("requests-*.jsonl")
        for line in path.read_text().splitlines()
    ]  # the service stopped: its served lists are visible; the fallback's was shown, so it is logged too
    shown = [row["item_id"] for row in logged if row["request_id"] == fallen_back["request_id"]]
    assert shown == [item["item_id"] for item in fallen_back["items"]]


def serve_exits(settings: Settings, *options: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``shoprank serve`` expecting it not to start: its exit status and its output."""
    store = ["--workdir", str(settings.workdir), "--profile", settings.profile, "--project", settings.project]
    done = subprocess.run(
        [Path(sys.executable).with_name("shoprank"), *store, "serve", "--port", str(free_port()), *options],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stdout + done.stderr


def test_a_registry_store_or_model_missing_at_start_is_one_line_and_a_non_zero_exit(production_shop, served_shop):
    closed = free_port()
    status, output = serve_exits(
        production_shop, env={"SHOPRANK_REGISTRY_URL": f"postgresql+psycopg://postgres@127.0.0.1:{closed}/test"}
    )
    assert status == 1 and output.count("\n") == 1 and output.startswith("Error: The feature registry (")
    assert "start its server or point registry_url / SHOPRANK_REGISTRY_URL at it" in output
    status, output = serve_exits(production_shop, env={"SHOPRANK_REDIS": f"127.0.0.1:{closed}"})
    assert status == 1 and output.count("\n") == 1
    assert output.startswith(f"Error: The online store, Redis at 127.0.0.1:{closed}, does not answer: ")
    status, output = serve_exits(served_shop, "--version", "v0099")
    assert status == 1 and output.count("\n") == 1 and output.startswith("Error: ") and "v0099" in output
