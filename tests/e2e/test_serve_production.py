"""`shoprank serve` on the production profile: features from Redis, the registry in PostgreSQL,
real HTTP requests; and a Redis of its own that stops, stalls and comes back, which the service
rides out on its fallback and recovers from by itself."""

from __future__ import annotations

import re
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from shoprank.warehouse import read
from tests.e2e.test_serve import call, start


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
