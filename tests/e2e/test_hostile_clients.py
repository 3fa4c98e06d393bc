"""`shoprank serve` against hostile and broken clients: bodies over the limit however they are sent,
keys checked before bodies, idle and slow connections timed out, inputs that used to be 500s
answered with 422s (or rows rejected with their reasons), unknown item ids never scored."""

from __future__ import annotations

import json
import select
import socket
import time
from pathlib import Path

import polars as pl
import pytest

from serving.http import BODY_TIMEOUT, HEADER_TIMEOUT, KEEP_ALIVE_TIMEOUT, MAX_BODY_BYTES, MAX_HEADER_BYTES
from shoprank.config import Settings
from shoprank.warehouse import read
from tests.e2e.test_serve import KEY, call, start

MARGIN = 10.0  # seconds a timeout may be late on a busy machine


@pytest.fixture(scope="module")
def server(served_shop: Settings):
    yield from start(served_shop)


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def head(path: str, *headers: str) -> bytes:
    """A POST's request line and headers."""
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: shoprank", *headers, "", ""]).encode()


def response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body the server sent before closing the connection."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:  # closed with the rest of a refused body unread
        pass
    lines, _, body = data.partition(b"\r\n\r\n")
    status, *fields = lines.decode("latin-1").split("\r\n")
    headers = dict(field.lower().split(": ", 1) for field in fields)
    return int(status.split()[1]), headers, body


def rss(pid: int) -> int:
    """The process's resident memory, bytes."""
    (line,) = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")]
    return int(line.split()[1]) * 1024


def send_chunked(base: str, path: str, total: int, *headers: str) -> tuple[int, dict[str, str], bytes, int]:
    """POST ``total`` bytes of events as a chunked body, stopping as soon as the server answers;
    the answer and the bytes sent."""
    event = json.dumps({"event_id": "e", "event_time": "2024-01-01", "user_id": "u", "item_id": "i"}).encode()
    piece = b",".join([event] * (65536 // (len(event) + 1)))
    chunk = b"%x\r\n%s,\r\n" % (len(piece) + 1, piece)
    with connect(base) as sock:
        sock.sendall(head(path, "Content-Type: application/json", "Transfer-Encoding: chunked", *headers))
        sock.sendall(b'10\r\n{"events": [    \r\n')
        sent = 0
        while sent < total and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(chunk)
            except OSError:  # the server closed the connection: its answer is waiting
                break
            sent += len(chunk)
        return *response(sock), sent


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives_without_holding_it(server):
    pid = call(f"{server}/health")[1]["worker"]
    key = f"X-API-Key: {KEY}"
    send_chunked(server, "/v1/events", 2 * MAX_BODY_BYTES, key)  # the first refusal's allocations
    before = rss(pid)
    status, headers, body, sent = send_chunked(server, "/v1/events", 40 * 1024 * 1024, key)
    assert status == 413 and headers["connection"] == "close"
    detail = json.loads(body)["detail"]
    assert detail.startswith("the request body is over ") and detail.endswith("; the limit is 4,194,304 bytes")
    assert sent < 20 * 1024 * 1024  # the server stopped reading: the socket buffers filled, then it answered
    assert rss(pid) - before < MAX_BODY_BYTES
    assert call(f"{server}/health")[0] == 200


def test_keyed_endpoints_refuse_a_request_without_the_key_before_its_body_is_sent(server):
    for path, key in [("/v1/events", None), ("/v1/events", "wrong"), ("/v1/admin/reload", None)]:
        with connect(server) as sock:
            given = [f"X-API-Key: {key}"] if key else []
            sock.sendall(head(path, "Content-Type: application/json", "Content-Length: 1000000", *given))
            status, headers, body = response(sock)  # no byte of the body sent
        assert (status, json.loads(body)) == (401, {"detail": "a valid X-API-Key header is required"})
        assert headers["connection"] == "close"


def test_half_sent_requests_are_closed_after_the_header_timeout_while_the_service_answers(server):
    started = time.monotonic()
    idle = [connect(server) for _ in range(300)]
    for sock in idle[:200]:
        sock.sendall(b"POST /v1/search HTTP/1.1\r\nHost: shoprank\r\nContent-Ty")  # the rest never comes
    try:
        waits = []
        while time.monotonic() - started < HEADER_TIMEOUT / 2:
            asked = time.monotonic()
            assert call(f"{server}/health")[0] == 200
            waits.append(time.monotonic() - asked)
        assert max(waits) < 2.0  # generous: a health check takes milliseconds
        open_ = set(idle)
        while open_ and time.monotonic() - started < HEADER_TIMEOUT + MARGIN:
            for sock in select.select(list(open_), [], [], 1)[0]:
                assert sock.recv(1) == b""  # closed, without an answer
                open_.discard(sock)
        assert not open_, f"{len(open_)} of 300 connections still open after {HEADER_TIMEOUT + MARGIN} s"
    finally:
        for sock in idle:
            sock.close()


def test_a_body_that_stops_arriving_is_a_408_and_an_idle_connection_is_closed(server):
    with connect(server) as sock:
        sock.sendall(head("/v1/search", "Content-Type: application/json", "Content-Length: 100") + b'{"query": ')
        started = time.monotonic()
        status, headers, body = response(sock)
        waited = time.monotonic() - started
    assert status == 408 and headers["connection"] == "close"
    assert (
        json.loads(body)["detail"]
        == f"the request body stopped arriving for {BODY_TIMEOUT:g} s; send it without pauses"
    )
    assert BODY_TIMEOUT - 0.5 < waited < BODY_TIMEOUT + MARGIN

    with connect(server) as sock:  # kept alive after an answer, then idle
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: shoprank\r\n\r\n")
        started = time.monotonic()
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        while sock.recv(65536):
            pass
        assert time.monotonic() - started < KEEP_ALIVE_TIMEOUT + MARGIN


def test_headers_over_the_limit_are_a_431(server):
    with connect(server) as sock:
        try:
            sock.sendall(head("/v1/search", *[f"X-Filler-{n}: {'x' * 1000}" for n in range(2000)]))
        except OSError:
            pass  # closed once over the limit: the answer is waiting
        status, _, body = response(sock)
    assert status == 431
    assert json.loads(body)["detail"] == (
        f"the request's headers are over {MAX_HEADER_BYTES:,} bytes; the limit is {MAX_HEADER_BYTES:,}"
    )
    assert call(f"{server}/health")[0] == 200


SURROGATE = "dr\ud800ill"  # json.dumps sends it as the escape "\ud800", as a hostile client would


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/v1/search", {"query": SURROGATE}, ["body", "query"]),
        ("/v1/search", {"query": "drill", "k": float("nan")}, ["body", "k"]),
        ("/v1/search", {"query": "drill", "filters": {"price_min": float("nan")}}, ["body", "filters", "price_min"]),
        ("/v1/search", {"query": "drill", "filters": {"price_max": float("-inf")}}, ["body", "filters", "price_max"]),
        ("/v1/search", {"query": "drill", "filters": {"category": SURROGATE}}, ["body", "filters", "category"]),
        ("/v1/search", {"query": ["drill"]}, ["body", "query"]),
        ("/v1/rerank", {"item_ids": ["i000001", SURROGATE]}, ["body", "item_ids", 1]),
        ("/v1/rerank", {"item_ids": ["i000001"], "user_id": SURROGATE}, ["body", "user_id"]),
        ("/v1/recommend", {"context": {"session_item_ids": [SURROGATE]}}, ["body", "context", "session_item_ids", 0]),
        ("/v1/recommend", {"k": float("inf")}, ["body", "k"]),
        ("/v1/events", {"events": {"event_id": "e1"}}, ["body", "events"]),
    ],
)
def test_inputs_that_were_server_errors_are_422s_naming_the_field(server, path, body, loc):
    status, answer = call(f"{server}{path}", body, KEY)
    assert status == 422 and [error["loc"] for error in answer["detail"]] == [loc]


def test_every_posted_event_is_accepted_or_rejected_with_a_reason_naming_the_field(server, served_shop):
    user_id, item_id = read(served_shop.warehouse, "select user_id, item_id from raw.events limit 1").row(0)
    good = {"event_id": "hostile-e1", "event_time": "2024-01-01T00:00:00", "user_id": user_id, "item_id": item_id}
    good["event_type"] = "view"
    events = [
        good,
        {},
        [good],
        {**good, "event_id": "hostile-e2", "user_id": [1, 2]},
        {**good, "event_id": {"nested": "hostile-e3"}},  # the other rows' ids are text
        {**good, "event_id": 4},  # a number where the others have text: read as text
        {**good, "event_id": "hostile-e5", "price": float("nan")},
        {**good, "event_id": "hostile-e6", "item_id": SURROGATE},
        {**good, "event_id": "hostile-e7", "quantity": float("-inf")},
    ]
    folders = (served_shop.landing / "events", served_shop.workdir / "serving" / "rejected")
    before = {path for folder in folders for path in folder.glob("*.parquet")}
    try:
        status, body = call(f"{server}/v1/events", {"events": events}, KEY)
        assert status == 200 and body["accepted"] + len(body["rejected"]) == len(events)
        reasons = {row["index"]: row["reason"] for row in body["rejected"]}
        assert body["accepted"] == 2 and set(reasons) == {1, 2, 3, 4, 6, 7, 8}
        assert reasons[1].startswith("event_id: not_nullable; event_time: not_nullable")
        assert reasons[2] == "row: not an object but a list"
        assert reasons[3] == "user_id: a nested value (a list); a field holds text, a number or null"
        assert reasons[4] == "event_id: a nested value (an object); a field holds text, a number or null"
        assert reasons[6] == "price: not a finite number (nan)"
        assert reasons[7] == "item_id: text with a lone surrogate"
        assert reasons[8] == "quantity: not a finite number (-inf)"
        (kept,) = {path for path in folders[1].glob("*.parquet")} - before
        rejected = pl.read_parquet(kept)
        assert rejected["_reason"].to_list() == list(reasons.values())
        assert json.loads(rejected["_row"][5]) == {**good, "event_id": "hostile-e6", "item_id": SURROGATE}
        assert rejected["item_id"][5] == "dr\\ud800ill"  # kept as valid text, the surrogate escaped
    finally:  # the folders as the other tests know them
        for path in {path for folder in folders for path in folder.glob("*.parquet")} - before:
            path.unlink()


def test_unknown_item_ids_are_returned_last_unscored_or_refused(server, served_shop):
    ids = read(served_shop.warehouse, "select item_id from marts.dim_items order by item_id limit 3")["item_id"]
    known = ids.to_list()
    asked = [known[0], "nope-1", known[1], "nope-2", known[2]]
    status, alone = call(f"{server}/v1/rerank", {"item_ids": known, "query": "drill"})
    assert status == 200
    status, mixed = call(f"{server}/v1/rerank", {"item_ids": asked, "query": "drill"})
    assert status == 200
    assert mixed["items"][:3] == alone["items"]  # known ids ranked exactly as without the others
    assert all(item["unknown"] is False and item["score"] is not None for item in alone["items"])
    assert mixed["items"][3:] == [
        {
            "item_id": name,
            "score": None,
            "title": None,
            "backfill": False,
            "unknown": True,
            "source": None,
            "contributions": None,
        }
        for name in ("nope-1", "nope-2")
    ]
    status, none_known = call(f"{server}/v1/rerank", {"item_ids": ["nope-2", "nope-1"]})
    assert status == 200 and [(i["item_id"], i["unknown"]) for i in none_known["items"]] == [
        ("nope-2", True),
        ("nope-1", True),
    ]
    body = {"item_ids": asked, "unknown_items": "refuse"}
    status, refused = call(f"{server}/v1/rerank", body)
    assert status == 422 and refused["detail"][0]["loc"] == ["body", "item_ids"]
    assert refused["detail"][0]["msg"].startswith('2 item ids are not in the catalog: "nope-1", "nope-2"; ')

    with connect(server) as sock:  # the field is documented, and the key as a security scheme
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: shoprank\r\nConnection: close\r\n\r\n")
        schema = json.loads(response(sock)[2])
    assert "unknown" in schema["components"]["schemas"]["RankedItem"]["properties"]
    assert schema["paths"]["/v1/events"]["post"]["security"] == [{"APIKeyHeader": []}]


def test_two_workers_time_out_half_sent_requests_too(served_shop):
    base = next(served := start(served_shop, "--workers", "2"))
    try:
        with connect(base) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: sho")
            started = time.monotonic()
            assert sock.recv(1) == b""
            assert time.monotonic() - started < HEADER_TIMEOUT + MARGIN
    finally:
        served.close()
