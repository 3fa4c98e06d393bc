"""`shoprank serve` on the production profile: features from Redis, the registry in PostgreSQL,
real HTTP requests; and a Redis of its own that stops, stalls and comes back, which the service
rides out on its fallback and recovers from by itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from redis import Redis

from shoprank.features.store import open_store, redis_client
from shoprank.warehouse import read
from tests.e2e.test_serve import call, free_port, start


@pytest.fixture(scope="module")
def server(production_shop):
    yield from start(production_shop, "--as-of", "materialized", "--workers", "2")


def test_two_workers_answer_on_one_port_with_one_clock_and_one_set_of_metrics(server, production_shop):
    def health(_) -> tuple[int, timedelta]:
        """The answering worker, and how far its clock is from the wall clock."""
        body = call(f"{server}/health")[1]
        return body["worker"], datetime.fromisoformat(body["now"]) - datetime.now(UTC).replace(tzinfo=None)

    offsets: dict[int, list[timedelta]] = {}
    deadline = time.monotonic() + 120  # the second worker may still be loading when the first answers
    with ThreadPoolExecutor(8) as pool:
        while len(offsets) < 2 and time.monotonic() < deadline:  # calls at once: a busy worker leaves some
            for worker, offset in pool.map(health, range(16)):  # to the other
                offsets.setdefault(worker, []).append(offset)
    assert len(offsets) == 2
    # --as-of materialized: one start for all, so the workers' clocks agree (to the second)
    first, second = offsets.values()
    assert abs(first[-1] - second[-1]) <= timedelta(seconds=2)
    items = read(production_shop.warehouse, "select item_id from marts.dim_items order by 1 limit 20")["item_id"]
    for _ in range(30):
        assert call(f"{server}/v1/rerank", {"user_id": "u000001", "item_ids": items.to_list()})[0] == 200
    counts = set()
    for _ in range(6):  # whichever worker answers adds up the samples of both
        with urllib.request.urlopen(f"{server}/metrics", timeout=30) as response:
            text = response.read().decode()
        counts.add(re.search(r'shoprank_requests_total\{endpoint="/v1/rerank",status="200"\} (\S+)', text).group(1))
    assert counts == {"30.0"}


def test_search_ranks_on_redis_features_with_the_registry_in_postgresql(server, production_shop):
    item_id, title = read(production_shop.warehouse, "select item_id, title from marts.dim_items order by 1").row(0)
    status, health = call(f"{server}/health")
    assert status == 200 and health["model_version"] == "search_ranker_v2/v0001"
    status, body = call(f"{server}/v1/search?explain=true", {"query": title, "k": 10, "user_id": "u000001"})
    assert status == 200 and body["fallback"] is None
    assert item_id in [item["item_id"] for item in body["items"]]
    explained = [c["feature"] for item in body["items"] for c in item["contributions"]]
    assert len(explained) == 30  # the model's contributions: its features were read


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


def test_a_stopped_or_stalled_redis_is_answered_by_the_fallback_until_it_returns(production_shop, own_redis):
    port, launch = own_redis
    with contextmanager(start)(production_shop, env={"SHOPRANK_REDIS": f"127.0.0.1:{port}"}) as base:
        title = read(production_shop.warehouse, "select title from marts.dim_items order by item_id")["title"][0]
        search = {"query": title, "k": 5}
        assert call(f"{base}/v1/search", search)[1]["fallback"] is None
        Redis("127.0.0.1", port).shutdown(save=True)
        status, body = call(f"{base}/v1/search", search)
        assert status == 200 and body["fallback"].startswith(
            f"online features unavailable (FeatureStoreError: Redis at 127.0.0.1:{port} failed"
        )
        assert body["fallback"].endswith("ranked by BM25") and len(body["items"]) == 5
        redis = launch()  # back, with the values saved at shutdown
        assert call(f"{base}/v1/search", search)[1]["fallback"] is None
        redis.execute_command("CLIENT", "PAUSE", "2000", "ALL")  # stalls past the read budget
        started = time.monotonic()
        status, body = call(f"{base}/v1/search", search)
        assert status == 200 and "timed out" in body["fallback"] and time.monotonic() - started < 1.5
        time.sleep(2.1)
        assert call(f"{base}/v1/search", search)[1]["fallback"] is None
