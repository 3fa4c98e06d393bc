"""`shoprank serve`: a real HTTP server on the tiny shop answering search and rerank, with the
422s a client meets."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shoprank.config import Settings
from shoprank.warehouse import read


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(served_shop: Settings):
    port = free_port()
    script = Path(sys.executable).with_name("shoprank")
    process = subprocess.Popen(
        [str(script), "--workdir", str(served_shop.workdir), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{base}/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"shoprank serve exited: {process.stdout.read()}")
            time.sleep(0.5)
    yield base
    process.terminate()
    process.wait(timeout=30)


def call(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_names_the_model_and_its_feature_service(server, served_shop):
    status, body = call(f"{server}/health")
    assert status == 200
    assert body == {
        "status": "ok",
        "model_version": "search_ranker_v2/v0001",
        "feature_service": "search_ranker_v2",
        "catalog_items": read(served_shop.warehouse, "select count(*) as n from marts.dim_items")["n"][0],
    }


def test_search_and_rerank_return_ranked_items_with_ids_and_reasons(server, served_shop):
    item_id, title = read(served_shop.warehouse, "select item_id, title from marts.dim_items order by item_id").row(0)
    status, body = call(f"{server}/v1/search", {"query": title, "k": 10})
    assert status == 200 and body["model_version"] == "search_ranker_v2/v0001" and len(body["request_id"]) == 32
    assert len(body["items"]) == 10 and item_id in [item["item_id"] for item in body["items"]]
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    ids = [item["item_id"] for item in body["items"]][::-1]
    status, reranked = call(f"{server}/v1/rerank", {"item_ids": ids, "query": title, "user_id": "u000001"})
    assert status == 200 and sorted(item["item_id"] for item in reranked["items"]) == sorted(ids)
    assert reranked["request_id"] != body["request_id"]


def test_bad_requests_are_422s_that_name_the_problem(server):
    status, body = call(f"{server}/v1/rerank", {"item_ids": [f"i{n}" for n in range(1001)]})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "item_ids"]
    assert "at most 1000" in body["detail"][0]["msg"]
    status, body = call(f"{server}/v1/search", {"query": "shoe", "k": 0})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "k"]
    status, body = call(f"{server}/v1/search", {"query": "shoe", "filters": {"category": "Nope"}})
    assert status == 422 and body["detail"].startswith('Category "Nope" is not in the catalog index')
