"""The load generator and server runner the serving benchmarks share (``serving.py``, ``faults.py``),
and the clean-up of the served lists a load leaves.

The generator is open loop: request i is due at ``start + i / rate`` whether or not earlier ones
were answered, and its latency runs from that due time (no coordinated omission); HTTP/1.1
keep-alive over up to ``CONNECTIONS`` connections; a request not answered 200 within ``TIMEOUT``
s counts as failed, with infinite latency.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

CONNECTIONS = 256  # most connections the load generator opens
K = 20  # results asked of a search or a recommendation
CANDIDATES = 100  # items of a rerank
SESSION_ITEMS = 2  # items of a recommendation's session
ENDPOINTS = {  # the requests ``shop_requests`` draws, by name: each endpoint as clients call it
    "search": "/v1/search",  # a query as often as the shop's users searched it
    "search (long tail)": "/v1/search",  # each distinct query as often as any other
    "recommend": "/v1/recommend",
    "rerank": "/v1/rerank",
}
TIMEOUT = 5.0  # seconds a request may take before it counts as failed
IDLE_SECONDS = 2.0  # a connection idle longer is not reused (uvicorn closes idle ones after 5 s)


@contextmanager
def server(command: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[int]:
    """Run a server (its own process group) until it answers GET /health; yield its group id."""
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{' '.join(command)} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


async def exchange(conn, payload: bytes) -> tuple[int, bytes, bool]:
    """Send one request on a keep-alive connection; its status, body and whether to keep it."""
    reader, writer = conn[:2]
    writer.write(payload)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    headers = head.lower()
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", headers)
    if match is None:
        raise ValueError("response without content-length")
    body = await reader.readexactly(int(match.group(1)))
    return status, body, b"\r\nconnection: close" not in headers


async def open_loop(
    port: int, payloads: list[bytes], rate: float, seconds: float, bodies: list | None = None
) -> tuple[np.ndarray, Counter, float, float, float]:
    """Offer ``payloads`` (cycled) at ``rate`` per second for ``seconds``.

    Returns:
        Each request's latency (inf: failed), the outcomes (statuses, error kinds), the 200
        answers per second achieved, the generator's send lag p99 and the loop time of the first
        due time; ``bodies``, when given, receives each request's answer body (None: none).
    """
    loop = asyncio.get_running_loop()
    pool: asyncio.LifoQueue = asyncio.LifoQueue()  # idle connections on top of free slots (None)
    for _ in range(CONNECTIONS):
        pool.put_nowait(None)
    count = max(1, round(rate * seconds))
    latencies, answered, lags = np.full(count, np.inf), np.zeros(count), np.zeros(count)
    outcomes: Counter = Counter()
    if bodies is not None:
        bodies[:] = [None] * count

    async def one(index: int, due: float) -> None:
        conn = await pool.get()  # (reader, writer, when it was last used) or None
        keep = False
        try:
            if conn is not None and loop.time() - conn[2] > IDLE_SECONDS:  # the server may be closing it
                conn[1].close()
                conn = None
            lags[index] = loop.time() - due
            for attempt in (1, 2):
                reused = conn is not None
                if conn is None:
                    conn = (*await asyncio.open_connection("127.0.0.1", port), 0.0)
                try:
                    status, body, keep = await exchange(conn, payloads[index % len(payloads)])
                    break
                except (asyncio.IncompleteReadError, ConnectionError):
                    conn[1].close()
                    conn = None
                    if not reused or attempt == 2:  # a kept-alive connection closed under us: retry once
                        raise
            outcomes[status] += 1
            if bodies is not None:
                bodies[index] = body
            if status == 200:
                answered[index] = loop.time()
                latencies[index] = answered[index] - due
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            outcomes[type(exc).__name__] += 1
        finally:
            if not keep and conn is not None:
                conn[1].close()
            pool.put_nowait((conn[0], conn[1], loop.time()) if keep else None)

    async def guarded(index: int, due: float) -> None:
        try:
            await asyncio.wait_for(one(index, due), TIMEOUT)
        except TimeoutError:
            outcomes["timeout"] += 1

    start = loop.time() + 0.05
    tasks = []
    for index in range(count):
        due = start + index / rate
        if (delay := due - loop.time()) > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(guarded(index, due)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        if (conn := pool.get_nowait()) is not None:
            conn[1].close()
    ok = answered > 0
    achieved = ok.sum() / max(answered[ok].max() - start, seconds) if ok.any() else 0.0
    return latencies, outcomes, achieved, float(np.percentile(lags, 99)), start


def post(path: str, body: dict) -> bytes:
    """An HTTP/1.1 POST of ``body`` as JSON."""
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    return head.encode() + data


def send_one(port: int, payload: bytes) -> tuple[int, bytes]:
    """One request on a connection of its own: its status and body."""

    async def once():
        conn = await asyncio.open_connection("127.0.0.1", port)
        try:
            status, body, _ = await exchange(conn, payload)
        finally:
            conn[1].close()
        return status, body

    return asyncio.run(once())


def remove_served_logs(settings) -> None:
    """The served lists a load left in the workdir (the served log's files, written or hidden)."""
    for folder in (settings.landing / "requests", settings.workdir / "serving" / "features"):
        for path in folder.glob("*.jsonl"):  # pathlib's * matches hidden names too
            path.unlink()


def shop_requests(settings, name: str, count: int, seed: int) -> list[dict]:
    """``count`` bodies of the requests ``name`` (``ENDPOINTS``) drawn from the shop of
    ``settings``: each by a random known user; a search asks for ``K`` results of a query the
    shop's users searched (one per logged search: a frequent query as often as it came; the long
    tail, each distinct query alike), a recommendation for ``K`` with ``SESSION_ITEMS`` random
    catalog items as the session, a rerank of ``CANDIDATES`` random catalog items."""
    from shoprank.warehouse import read

    rng = random.Random(seed)
    users = read(settings.warehouse, "select user_id from marts.dim_users order by user_id")["user_id"].to_list()
    items = read(settings.warehouse, "select item_id from marts.dim_items order by item_id")["item_id"].to_list()
    if name.startswith("search"):
        searched = "select any_value(query) as query from raw.requests where query is not null group by request_id"
        queries = sorted(read(settings.warehouse, searched)["query"].to_list())
        queries = sorted(set(queries)) if name == "search (long tail)" else queries
        return [{"query": rng.choice(queries), "user_id": rng.choice(users), "k": K} for _ in range(count)]
    if name == "recommend":
        session = [{"session_item_ids": rng.sample(items, SESSION_ITEMS)} for _ in range(count)]
        return [{"user_id": rng.choice(users), "k": K, "context": context} for context in session]
    return [{"user_id": rng.choice(users), "item_ids": rng.sample(items, CANDIDATES)} for _ in range(count)]
