"""`shoprank serve`: a real HTTP server on the tiny shop answering search, rerank and
recommendations, with the 422s a client meets, its health and its keyed operations."""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars import read_parquet

from serving.clock import Clock
from serving.guard import StoreGuard
from serving.readiness import Readiness
from serving.search import Searcher
from serving.served_log import ServedLog
from shoprank.cli import cli
from shoprank.config import Settings
from shoprank.features.store import open_store
from shoprank.warehouse import read

KEY = "test-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(settings: Settings, *options: str, env: dict[str, str] | None = None, log: Path | None = None):
    """A running ``shoprank serve`` of the settings' workdir, profile and project on a free port
    (with the events key and ``env``), its output in ``log`` (default: a temporary file; a pipe
    nobody reads would stop a server that logs much); yields its base URL. Its reads have a 1 s
    budget unless ``options`` set one: these tests check what is answered, and a loaded machine
    stalls a read past the default 20 ms (``test_store_faults`` holds the default's fallbacks)."""
    port = free_port()
    if "--store-budget-ms" not in options:
        options = ("--store-budget-ms", "1000", *options)
    script = Path(sys.executable).with_name("shoprank")
    store = ["--workdir", str(settings.workdir), "--profile", settings.profile, "--project", settings.project]
    with log.open("w+") if log else tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(
            [str(script), *store, "serve", "--port", str(port), *options],
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "SHOPRANK_API_KEY": KEY, **(env or {})},
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                if process.poll() is not None:
                    output.seek(0)
                    pytest.fail(f"shoprank serve exited: {output.read()}")
                time.sleep(0.5)
        try:
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(served_shop: Settings):
    yield from start(served_shop)


def call(url: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", **({"x-api-key": key} if key else {})}
    request = urllib.request.Request(url, data, headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_health_names_the_model_its_store_and_how_fresh_it_is(server, served_shop):
    ends = [end for view in open_store(served_shop).list_feature_views() for _, end in view.materialization_intervals]
    status, body = call(f"{server}/health")
    assert status == 200
    now = datetime.fromisoformat(body.pop("now"))  # the wall clock: served as of now by default
    assert abs(now - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=30)
    assert isinstance(body.pop("worker"), int)  # the process id of the one worker
    assert body == {
        "status": "ok",
        "model_version": "search_ranker_v2/v0001",
        "feature_service": "search_ranker_v2",
        "catalog_items": read(served_shop.warehouse, "select count(*) as n from marts.dim_items")["n"][0],
        "refused_version": None,
        "online_store": "reachable",
        "materialized_until": max(ends).astimezone(UTC).replace(tzinfo=None).isoformat(),
    }


def test_search_and_rerank_return_ranked_items_explained_on_request(server, served_shop):
    item_id, title = read(served_shop.warehouse, "select item_id, title from marts.dim_items order by item_id").row(0)
    status, body = call(f"{server}/v1/search", {"query": title, "k": 10})
    assert status == 200 and body["model_version"] == "search_ranker_v2/v0001" and len(body["request_id"]) == 32
    assert len(body["items"]) == 10 and item_id in [item["item_id"] for item in body["items"]]
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    ids = [item["item_id"] for item in body["items"]][::-1]
    assert all(item["contributions"] is None for item in body["items"])
    status, reranked = call(f"{server}/v1/rerank?explain=true", {"item_ids": ids, "query": title, "user_id": "u000001"})
    assert status == 200 and sorted(item["item_id"] for item in reranked["items"]) == sorted(ids)
    explained = reranked["items"][0]["contributions"]
    assert len(explained) == 3 and {"feature", "value"} == set(explained[0]) and "position" not in str(explained)
    values = [abs(c["value"]) for c in explained]
    assert values == sorted(values, reverse=True)
    assert reranked["request_id"] != body["request_id"]


def newest_pairs(settings: Settings) -> pl.DataFrame:
    """The newest snapshot of the item-pair mart: ``item_id``, ``neighbour_item_id``."""
    pairs = read_parquet(settings.marts / "item_pair_features_weekly.parquet")
    return pairs.filter(pl.col("event_timestamp") == pl.col("event_timestamp").max())


def neighbours_of(pairs: pl.DataFrame, items) -> set[str]:
    return set(pairs.filter(pl.col("item_id").is_in(list(items)))["neighbour_item_id"])


def sources(answer: dict) -> dict[str, set[str]]:
    """The returned items by the generator that found them."""
    found: dict[str, set[str]] = {}
    for item in answer["items"]:
        found.setdefault(item["source"], set()).add(item["item_id"])
    return found


def test_recommend_ranks_the_sessions_neighbours_first_and_fills_with_popular_items(server, served_shop):
    newest = newest_pairs(served_shop)
    item = newest.group_by("item_id").len().sort(["len", "item_id"], descending=[True, False])["item_id"][0]
    neighbours = neighbours_of(newest, [item])
    body = {"user_id": "u000001", "k": 50, "context": {"session_item_ids": [item]}}
    status, answer = call(f"{server}/v1/recommend?explain=true", body)
    assert status == 200 and answer["model_version"] == "ranker_v2/v0001" and len(answer["items"]) == 50
    returned = {i["item_id"]: i for i in answer["items"]}
    assert item not in returned  # not the item the shopper is looking at
    assert sources(answer).get("session", set()) == neighbours & set(returned)
    assert neighbours & set(returned)
    assert all(r["backfill"] == (r["source"] in ("category", "popular")) for r in returned.values())
    scores = [i["score"] for i in answer["items"]]
    assert scores == sorted(scores, reverse=True) and all(len(i["contributions"]) == 3 for i in answer["items"])


def test_bad_requests_are_422s_that_name_the_problem(server):
    status, body = call(f"{server}/v1/rerank", {"item_ids": [f"i{n}" for n in range(1001)]})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "item_ids"]
    assert "at most 1000" in body["detail"][0]["msg"]
    status, body = call(f"{server}/v1/search", {"query": "shoe", "k": 0})
    assert status == 422 and body["detail"][0]["loc"] == ["body", "k"]
    status, body = call(f"{server}/v1/search", {"query": "shoe", "filters": {"category": "Nope"}})
    assert status == 422 and body["detail"].startswith('Category "Nope" is not in the catalog index')
    host, port = server.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", "/v1/search")  # a 5 MB body announced: refused before it is read
    connection.putheader("content-type", "application/json")
    connection.putheader("content-length", str(5 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["detail"] == "the request body is 5242880 bytes; the limit is 4,194,304 bytes"
    connection.close()


def test_events_need_the_key_and_land_where_ingest_reads_them(server, served_shop):
    user_id, item_id = read(served_shop.warehouse, "select user_id, item_id from raw.events limit 1").row(0)
    now = datetime.now(UTC).replace(tzinfo=None).isoformat()
    good = {"event_id": "http-e1", "event_time": now, "user_id": user_id, "item_id": item_id, "event_type": "click"}
    events = [good, {**good, "event_id": "http-e2", "event_type": "PURCHASE", "price": 9.5, "quantity": 2}]
    events.append({**good, "event_id": "http-e3", "event_type": "teleport", "item_id": None})
    assert call(f"{server}/v1/events", {"events": events}) == (401, {"detail": "a valid X-API-Key header is required"})
    assert call(f"{server}/v1/events", {"events": events}, "wrong")[0] == 401
    status, body = call(f"{server}/v1/events", {"events": events}, KEY)
    assert status == 200 and body["accepted"] == 2
    reason = (
        "event_type: unknown_event_type (allowed: view, click, add_to_cart, favorite, purchase); item_id: not_nullable"
    )
    assert body["rejected"] == [{"index": 2, "reason": reason}]
    landed = sorted((served_shop.landing / "events").glob("events-*.parquet"))
    rejected = list((served_shop.workdir / "serving" / "rejected").glob("events-*.parquet"))
    assert len(landed) == 1 and len(rejected) == 1 and read_parquet(rejected[0])["_reason"].to_list() == [reason]
    result = CliRunner().invoke(cli, ["--workdir", str(served_shop.workdir), "ingest", str(landed[0])])
    assert result.exit_code == 0, result.output
    rows = read(
        served_shop.warehouse,
        "select event_id, event_type, quantity from raw.events where event_id like 'http-%' order by 1",
    )
    assert rows.rows() == [("http-e1", "click", None), ("http-e2", "PURCHASE", 2)]


RECENT_SQL = """
    select user_id, list(distinct item_id order by item_id) as items,
        coalesce(list(distinct item_id order by item_id) filter (where event_type = 'purchase'), []) as bought
    from intermediate.int_events_sessionized
    group by user_id
    having count(distinct item_id) <= 15  -- all of them recent, with room for two more
    order by user_id
"""


def users_with_history(settings: Settings, pairs: pl.DataFrame) -> list[tuple[str, set[str], set[str]]]:
    """Users the service has not heard from whose items have neighbours, each with the items and
    those bought: first those who bought a neighbour of their items (a candidate but for the
    purchase), then by neighbours."""
    landed = (settings.landing / "events").glob("events-*.parquet")
    posted = {user for path in landed for user in read_parquet(path)["user_id"]}
    rows = [(user, set(items), set(bought)) for user, items, bought in read(settings.warehouse, RECENT_SQL).iter_rows()]
    return sorted(
        (row for row in rows if neighbours_of(pairs, row[1]) and row[0] not in posted),
        key=lambda row: (-len(row[2] & neighbours_of(pairs, row[1])), -len(neighbours_of(pairs, row[1])), row[0]),
    )


def test_recommend_draws_on_the_neighbours_of_the_users_recent_items(server, served_shop):
    pairs = newest_pairs(served_shop)
    user, items, bought = users_with_history(served_shop, pairs)[0]
    expected = neighbours_of(pairs, items) - bought
    assert bought & neighbours_of(pairs, items) and len(expected) < 100  # k=100 returns every history candidate
    status, answer = call(f"{server}/v1/recommend", {"user_id": user, "k": 100})
    assert status == 200 and len(answer["items"]) == 100
    assert sources(answer) == {"history": expected, "popular": sources(answer)["popular"]}
    assert not bought & {i["item_id"] for i in answer["items"]}  # recent purchases are not offered again
    assert all(not i["backfill"] for i in answer["items"] if i["source"] == "history")

    session = min(item for item in items if neighbours_of(pairs, [item]) - bought)  # the session comes first
    body = {"user_id": user, "k": 100, "context": {"session_item_ids": [session]}}
    found = sources(call(f"{server}/v1/recommend", body)[1])
    assert found["session"] == neighbours_of(pairs, [session]) - bought - {session}
    assert found.get("history", set()) == expected - found["session"] - {session}


def test_events_posted_for_a_user_change_the_history_behind_their_recommendations(server, served_shop):
    pairs = newest_pairs(served_shop)
    user, items, bought = users_with_history(served_shop, pairs)[1]  # not the user of the test above
    before = sources(call(f"{server}/v1/recommend", {"user_id": user, "k": 100})[1])["history"]
    clicked = max(  # a new item whose neighbours the user's recommendations lack most
        set(pairs["item_id"]) - items, key=lambda item: (len(neighbours_of(pairs, [item]) - before), item)
    )
    purchased = min(before)  # bought now: no longer offered, its neighbours are
    at = (datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=1)).isoformat()
    click = {"event_id": "history-e1", "event_time": at, "user_id": user, "item_id": clicked, "event_type": "click"}
    bought_now = {"event_id": "history-e2", "item_id": purchased, "event_type": "purchase", "price": 5.0, "quantity": 1}
    events = [click, {**click, **bought_now}]
    landing = set((served_shop.landing / "events").glob("*.parquet"))
    try:
        assert call(f"{server}/v1/events", {"events": events}, KEY)[1]["accepted"] == 2
        after = call(f"{server}/v1/recommend", {"user_id": user, "k": 100})[1]
    finally:  # the landing folder as the other tests know it
        for path in set((served_shop.landing / "events").glob("*.parquet")) - landing:
            path.unlink()
    expected = neighbours_of(pairs, items | {clicked, purchased}) - bought - {purchased}
    assert len(expected) < 100 and neighbours_of(pairs, [clicked]) - before - {purchased}
    assert sources(after)["history"] == expected
    assert purchased not in {i["item_id"] for i in after["items"]}


def test_a_cold_start_gets_popular_items_only(server, served_shop):
    for body in ({"k": 100}, {"user_id": "u-never-seen", "k": 100}):
        status, answer = call(f"{server}/v1/recommend", body)
        assert status == 200 and len(answer["items"]) == 100
        assert {i["source"] for i in answer["items"]} == {"popular"} and all(i["backfill"] for i in answer["items"])
    catalog = read(served_shop.warehouse, "select item_id, category_path from marts.dim_items order by item_id")
    category = catalog["category_path"][0]
    in_category = set(catalog.filter(pl.col("category_path") == category)["item_id"])
    answer = call(f"{server}/v1/recommend", {"k": 100, "context": {"category": category}})[1]
    assert sources(answer)["category"] == in_category and set(sources(answer)) == {"category", "popular"}


def test_metrics_count_requests_and_time_each_stage(server):
    assert call(f"{server}/v1/search", {"query": "shoe", "k": 3})[0] == 200
    with urllib.request.urlopen(f"{server}/metrics", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/plain")
        text = response.read().decode()
    assert 'shoprank_requests_total{endpoint="/v1/search",status="200"}' in text
    assert 'shoprank_request_seconds_count{endpoint="/v1/search"}' in text
    for stage in ("retrieve", "features", "score"):
        assert f'shoprank_stage_seconds_count{{endpoint="/v1/search",stage="{stage}"}}' in text


def _lines(folder: Path, pattern: str, request_id: str, seconds: float = 0.0) -> list[dict]:
    """The logged rows of a request, waiting up to ``seconds`` for them (the log's writer thread
    writes what was served every quarter of a second)."""
    deadline = time.monotonic() + seconds
    while True:
        rows = [json.loads(line) for path in folder.glob(pattern) for line in path.read_text().splitlines()]
        found = [row for row in rows if row["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_personal_data_in_a_query_never_reaches_the_served_logs(server, served_shop):
    query = "cordless drill for jane.roe@example.org call +1 (555) 123-4567"
    status, body = call(f"{server}/v1/search", {"query": query, "k": 3, "user_id": "u000001"})
    assert status == 200 and len(body["items"]) == 3
    served = _lines(served_shop.landing / "requests", ".requests-*.jsonl", body["request_id"], seconds=10)
    assert {row["query"] for row in served} == {"cordless drill for EMAIL call PHONE"}
    (vectors,) = _lines(served_shop.workdir / "serving" / "features", ".features-*.jsonl", body["request_id"], 10)
    logged = json.dumps(vectors)
    assert "jane.roe" not in logged and "123-4567" not in logged
    assert vectors["entities"]["query_norm"] == ["cordless drill for email call phone"]


def test_served_lists_are_logged_with_their_feature_vectors_and_ingest_as_requests(server, served_shop):
    status, body = call(f"{server}/v1/search", {"query": "shoe", "k": 3, "user_id": "u000001"})
    assert status == 200
    served = _lines(served_shop.landing / "requests", ".requests-*.jsonl", body["request_id"], seconds=10)
    assert [(r["position"], r["item_id"]) for r in served] == [(n, i["item_id"]) for n, i in enumerate(body["items"])]
    assert {(r["user_id"], r["surface"], r["query"]) for r in served} == {("u000001", "search", "shoe")}
    (vectors,) = _lines(served_shop.workdir / "serving" / "features", ".features-*.jsonl", body["request_id"], 10)
    card = json.loads((served_shop.models / "search_ranker_v2" / "v0001" / "card.json").read_text())
    assert vectors["items"] == [r["item_id"] for r in served]
    assert list(vectors["features"]) == [f for f in card["features"] if f != "position"]
    columns = {**vectors["features"], **vectors["entities"]}
    assert {len(values) for values in columns.values()} == {1, 3}  # a value the same for every item: once
    shared = [name for name in columns if name.startswith("user_features__") or name in ("user_id", "request_time")]
    assert shared and {len(columns[name]) for name in shared} == {1}
    assert columns["user_id"] == ["u000001"]
    assert vectors["model_version"] == "search_ranker_v2/v0001"

    log = ServedLog(served_shop)  # what the service does when it stops: the files become visible
    vectors = {"item_id": ["i000003", "i000002", "i000001"], "f__x": [0.3, float("nan"), 0.1], "f__u": [0.5] * 3}
    vectors["f__z"] = [0.0, -0.0, 0.0]  # equal, not the same: per item
    now = datetime.now(UTC).replace(tzinfo=None)
    log.record("r-test", now, "u000001", "recommend", None, "m/v1", vectors, [2, 1])
    log.record("r-test-2", now, "u000001", "search", "shoe", "m/v1", vectors, [0])  # one batch: no query, a query
    log.close()
    (searched,) = _lines(served_shop.landing / "requests", "requests-*.jsonl", "r-test-2")
    assert (searched["query"], searched["item_id"], searched["position"]) == ("shoe", "i000003", 0)
    (visible,) = [p for p in (served_shop.landing / "requests").glob("requests-*.jsonl") if "r-test" in p.read_text()]
    (logged,) = _lines(served_shop.workdir / "serving" / "features", "features-*.jsonl", "r-test")
    assert logged["items"] == ["i000001", "i000002"]  # the served ones, in served order
    assert logged["features"] == {"f__x": [0.1, None], "f__u": [0.5], "f__z": [0.0, -0.0]}  # exact, NaN as null
    assert [math.copysign(1, z) for z in logged["features"]["f__z"]] == [1, -1]
    result = CliRunner().invoke(cli, ["--workdir", str(served_shop.workdir), "ingest", str(visible)])
    assert result.exit_code == 0, result.output
    rows = read(
        served_shop.warehouse, "select item_id, position from raw.requests where request_id = 'r-test' order by 2"
    )
    assert rows.rows() == [("i000001", 0), ("i000002", 1)]


def _copy_version(settings: Settings, version: str, **changes) -> None:
    source = settings.models / "search_ranker_v2" / "v0001"
    target = source.with_name(version)
    shutil.copytree(source, target)
    card = json.loads((target / "card.json").read_text())
    (target / "card.json").write_text(json.dumps({**card, "version": version, **changes}))


def _health_after(server: str, predicate, seconds: float = 30) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        body = call(f"{server}/health")[1]
        if predicate(body):
            return body
        time.sleep(0.5)
    raise AssertionError(f"health never changed as expected: {body}")


def _searches_until(server: str, version: str, seconds: float = 30) -> list[str]:
    """The model versions of searches asked back to back until one is answered by ``version``;
    every search must be answered by a model (none dropped, none by the fallback)."""
    versions, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, body = call(f"{server}/v1/search", {"query": "shoe", "k": 2})
        assert status == 200 and body["fallback"] is None and body["items"], body
        versions.append(body["model_version"])
        if versions[-1] == version:
            return versions
    raise AssertionError(f"{version} never answered; answered by {sorted(set(versions))}")


def test_a_promoted_version_takes_over_and_one_that_cannot_load_is_refused(server, served_shop):
    promote = ["--workdir", str(served_shop.workdir), "models", "promote", "search_ranker_v2"]
    try:
        _copy_version(served_shop, "v0002")
        assert CliRunner().invoke(cli, [*promote, "v0002"]).exit_code == 0
        versions = _searches_until(server, "search_ranker_v2/v0002")
        assert len(versions) > 1 and set(versions[:-1]) == {"search_ranker_v2/v0001"}  # the old one, while loading
        assert call(f"{server}/v1/search", {"query": "shoe", "k": 2})[1]["model_version"] == "search_ranker_v2/v0002"

        _copy_version(served_shop, "v0003", features_hash="0" * 16)  # as if its service had changed since
        assert CliRunner().invoke(cli, [*promote, "v0003"]).exit_code == 0
        body = _health_after(server, lambda body: body["refused_version"] is not None)
        assert body["model_version"] == "search_ranker_v2/v0002"  # the old one keeps serving
        assert body["refused_version"].startswith("search_ranker_v2/v0003: ")
    finally:  # the shop as the other tests know it
        assert CliRunner().invoke(cli, [*promote, "v0001"]).exit_code == 0
        for version in ("v0002", "v0003"):
            shutil.rmtree(served_shop.models / "search_ranker_v2" / version, ignore_errors=True)


def test_a_content_check_slower_than_a_requests_read_budget_does_not_hold_the_store(served_shop):
    """The readiness check runs beside busy requests, waiting for the interpreter between their
    steps: a store that answers it late still holds its content (a held guard would send every
    ranking to the fallback until the next check)."""
    searcher = Searcher.open(served_shop, "search_ranker_v2", budget=1e-9)  # no read fits the requests' budget
    readiness = Readiness(StoreGuard(), lambda: [searcher], Clock())
    try:
        assert readiness.checked and readiness.problems() == []
    finally:
        readiness.close()


def test_an_admin_reload_reads_the_production_marker_at_once_and_needs_the_key(server, served_shop):
    assert call(f"{server}/v1/admin/reload", {}) == (401, {"detail": "a valid X-API-Key header is required"})
    assert call(f"{server}/v1/admin/reload", {}, "wrong")[0] == 401
    promote = ["--workdir", str(served_shop.workdir), "models", "promote", "search_ranker_v2"]
    try:
        call(f"{server}/v1/admin/reload", {}, KEY)  # back on v0001 after the promotion test, if not yet
        _health_after(server, lambda body: body["model_version"] == "search_ranker_v2/v0001")
        _copy_version(served_shop, "v0002")
        assert CliRunner().invoke(cli, [*promote, "v0002"]).exit_code == 0
        status, body = call(f"{server}/v1/admin/reload", {}, KEY)
        assert status == 200 and len(body["request_id"]) == 32
        search, recommend = body["services"]
        assert "search_ranker_v2/v0002" in (search["loading"], search["model_version"])  # not 2 s later
        assert recommend == {
            "service": "ranker_v2",
            "model_version": "ranker_v2/v0001",
            "loading": None,
            "refused_version": None,
        }
        _health_after(server, lambda body: body["model_version"] == "search_ranker_v2/v0002")
    finally:  # the shop as the other tests know it
        assert CliRunner().invoke(cli, [*promote, "v0001"]).exit_code == 0
        call(f"{server}/v1/admin/reload", {}, KEY)
        _health_after(server, lambda body: body["model_version"] == "search_ranker_v2/v0001")
        shutil.rmtree(served_shop.models / "search_ranker_v2" / "v0002", ignore_errors=True)


def test_ranking_endpoints_can_be_keyed_too(served_shop):
    base = next(keyed := start(served_shop, "--keyed-ranking"))
    try:
        body = {"query": "shoe", "k": 2}
        assert call(f"{base}/v1/search", body) == (401, {"detail": "a valid X-API-Key header is required"})
        assert call(f"{base}/v1/recommend", {"k": 2})[0] == 401
        assert call(f"{base}/v1/search", body, KEY)[0] == 200
        assert call(f"{base}/health")[0] == 200  # health stays open
    finally:
        keyed.close()
