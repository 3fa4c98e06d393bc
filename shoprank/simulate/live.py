"""The simulator's users, live: on the days after the simulated period they ask a running ranking
service for their lists and react to what it serves with the simulator's own behavior model.

A day's sessions and lists (surface, time, intent leaf, query) are drawn exactly as ``simulate``
would draw them (``behavior.draw_sessions`` and ``draw_lists`` on the day's ``chunk_rng``); only
the items differ: the service chooses them instead of the logging policy. Each list is asked for
when the service's clock reaches its time:

* search: ``POST /v1/search`` with the query's text;
* recommend: ``POST /v1/recommend`` with the items clicked earlier in the session;
* browse: ``POST /v1/recommend`` with the intent leaf's category path as the context: the
  recommendation model (``ranker_v2``) is the one trained on browse lists, and the service has no
  category page of its own (``/v1/rerank`` ranks with the search model).

Users then click with position bias on the true relevance (``behavior.draw_clicks``) and view,
favorite, cart and buy (``behavior.draw_conversions``); the events, rows of the raw ``events``
contract with the list's ``request_id`` and position, go to ``POST /v1/events`` in batches.
Revisits and bots are left out: they do not depend on what is served.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import numpy as np
import polars as pl

from shoprank.contracts import SURFACES
from shoprank.errors import ShoprankError
from shoprank.simulate import chunk_rng, user_blocks, writer
from shoprank.simulate.arrays import US_PER_DAY, ids, us
from shoprank.simulate.behavior import World, draw_clicks, draw_conversions, draw_lists, draw_sessions
from shoprank.simulate.policy import BROWSE, SEARCH, Lists

EVENT_BATCH = 500  # events per POST /v1/events
EPOCH = datetime(1970, 1, 1)
LATE_SECONDS = 1800  # the label window (dbt's label_window_minutes): a list asked later lost its timing
TIMEOUT_SECONDS = 60.0


class ServiceError(ShoprankError):
    """The ranking service could not be started, reached or stopped."""


@dataclass(frozen=True)
class ShopClient:
    """A plain HTTP client of a running ``shoprank serve`` (``key``: its ``SHOPRANK_API_KEY``)."""

    base: str
    key: str

    def health(self) -> dict[str, Any]:
        return self.call("GET", "/health")[1]

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict[str, Any]]:
        """Status and JSON body of a request (HTTP errors are answers too).

        Raises:
            ServiceError: The service cannot be reached.
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json", "x-api-key": self.key}
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")
        except (OSError, ValueError) as exc:
            raise ServiceError(f"The ranking service at {self.base} did not answer {method} {path}: {exc}") from None


@dataclass(frozen=True)
class ServiceClock:
    """The service's clock as seen from here: its ``now`` read at our monotonic ``read_at`` (taken
    before asking, so the estimate is never behind the service's clock), ``speed`` times the wall
    clock."""

    read: datetime
    read_at: float
    speed: float

    @classmethod
    def of(cls, client: ShopClient, speed: float) -> ServiceClock:
        """Read the clock of the service behind ``client`` (its ``/health`` reports ``now``)."""
        asked = time.monotonic()
        now = client.health().get("now")
        if now is None:
            raise ServiceError(f"The service at {client.base} reports no clock in /health; update shoprank")
        return cls(datetime.fromisoformat(now), asked, speed)

    def now_us(self) -> int:
        return us(self.read) + round((time.monotonic() - self.read_at) * self.speed * 1e6)

    def wait_until(self, moment_us: int) -> None:
        """Sleep until the service's clock reaches ``moment_us``."""
        ahead = (moment_us - self.now_us()) / 1e6 / self.speed
        if ahead > 0:
            time.sleep(ahead)


@dataclass
class LiveReport:
    """What the live users did: lists, impressions and clicks per (simulator) surface, events by
    type, and what the service answered."""

    start: datetime | None = None
    end: datetime | None = None
    speed: float = 1.0  # simulated seconds per wall second
    last_request: datetime | None = None  # the service's time at the last answer
    lists: Counter[str] = field(default_factory=Counter)
    impressions: Counter[str] = field(default_factory=Counter)
    clicks: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)  # "endpoint status: detail" -> requests
    empty: int = 0  # answers without items
    past_end: int = 0  # lists not asked: the service's clock had passed the live days' end
    delay_seconds: float = 0.0  # simulated seconds from the lists' times to their requests, summed
    max_delay_seconds: float = 0.0
    fallbacks: int = 0
    models: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    rejected: int = 0

    def delayed(self, seconds: float) -> None:
        """Count a list asked ``seconds`` after its time (the previous answers took that long)."""
        self.delay_seconds += max(seconds, 0.0)
        self.max_delay_seconds = max(self.max_delay_seconds, seconds)

    @property
    def too_late(self) -> bool:
        """Whether some list was asked more than ``LATE_SECONDS`` after its time."""
        return self.max_delay_seconds > LATE_SECONDS

    def asked(self) -> int:
        """Lists asked for, whatever the answer."""
        return self.lists.total() + self.empty + self.failed.total()

    def totals(self, surface: str | None = None) -> tuple[int, int, int]:
        """Lists, impressions and clicks of one surface, or of all."""
        counters = (self.lists, self.impressions, self.clicks)
        return tuple(counter[surface] if surface else counter.total() for counter in counters)

    def ctr(self, surface: str | None = None) -> float:
        """Clicks per impression of the served lists (of one surface, or all)."""
        _, shown, clicked = self.totals(surface)
        return clicked / shown if shown else float("nan")


@dataclass(frozen=True)
class DayLists:
    """The lists a live day's users ask for, in time order, and the random source of each."""

    day: int
    lists: Lists
    rngs: list[np.random.Generator]
    rng_of: np.ndarray  # index into rngs per list
    sessions: int


def live_days(world: World, seed: int, days: range) -> list[DayLists]:
    """The lists of ``days`` (counted from the simulated period's start), drawn from the random
    sources ``simulate`` would use for those days; sessions numbered across the days."""
    drawn, first_session = [], 0
    for day in days:
        drawn.append(day_lists(world, seed, day, first_session))
        first_session += drawn[-1].sessions
    return drawn


def day_lists(world: World, seed: int, day: int, first_session: int) -> DayLists:
    """The sessions and lists of ``day``, sessions numbered from ``first_session``."""
    parts, rngs, sessions = [], [], 0
    for block, users in enumerate(user_blocks(world.spec)):
        rng = chunk_rng(seed, day, block)
        session_user, session_start = draw_sessions(world, day, users, rng)
        parts.append(draw_lists(world, session_user, session_start, (first_session + sessions, 0), rng))
        rngs.append(rng)
        sessions += len(session_user)
    merged = {name: np.concatenate([_arrays(part)[name] for part in parts]) for name in _arrays(parts[0])}
    order = np.argsort(merged["time_us"], kind="stable")
    rng_of = np.repeat(np.arange(len(parts)), [len(part.user) for part in parts])[order]
    lists = Lists(first=0, **{name: values[order] for name, values in merged.items()})
    return DayLists(day, lists, rngs, rng_of, sessions)


class LiveUsers:
    """The users of a simulated shop, asking ``client``'s service for lists and posting events."""

    def __init__(self, world: World, client: ShopClient, clock: ServiceClock) -> None:
        self.world, self.client, self.clock = world, client, clock
        self.user_ids = world.population.ids()
        self.item_ids = world.catalog.ids()
        self.item_number = {item_id: n for n, item_id in enumerate(self.item_ids)}
        self.run = uuid4().hex[:8]  # makes this run's event and session ids unique
        self.report = LiveReport()
        self._events = 0
        self._pending: list[dict[str, Any]] = []

    def live(self, traffic: list[DayLists], advance: Callable[..., None]) -> LiveReport:
        """Ask for every list of ``traffic`` at its time and react, then post the events still pending."""
        start = self.world.spec.start
        self.report.start = start + timedelta(days=traffic[0].day)
        self.report.end = start + timedelta(days=traffic[-1].day + 1)
        self.report.speed = self.clock.speed
        total = sum(len(day.lists.user) for day in traffic)
        for number, day in enumerate(traffic, 1):
            queries = self.world.catalog.vocab.join(day.lists.query)
            clicked: dict[int, list[str]] = {}
            for row in range(len(day.lists.user)):
                one = _one_list(day.lists, row)
                session_clicks = clicked.setdefault(int(one.session[0]), [])
                self._serve(one, queries[row], session_clicks, day.rngs[day.rng_of[row]])
                advance(1, what=f"day {number}/{len(traffic)}", total=total)
        self._post()
        return self.report

    def _serve(self, one: Lists, query: str, clicked: list[str], rng: np.random.Generator) -> None:
        """Ask for one list at its time, let its user react, and queue the events."""
        self.clock.wait_until(int(one.time_us[0]))
        if EPOCH + timedelta(microseconds=self.clock.now_us()) >= self.report.end:
            self.report.past_end += 1  # its request would fall after the last day with events: no label
            return
        self.report.delayed((self.clock.now_us() - int(one.time_us[0])) / 1e6)
        surface = SURFACES[one.surface[0]]
        endpoint, body = self._request(one, query, clicked)
        status, answer = self.client.call("POST", endpoint, body)
        if status != 200:
            self.report.failed[f"{endpoint} {status}: {answer.get('detail', answer)}"] += 1
            return
        if not answer["items"]:
            self.report.empty += 1
            return
        served_at = max(int(one.time_us[0]), self.clock.now_us())  # never before the request's time
        answered = EPOCH + timedelta(microseconds=served_at)
        self.report.last_request = max(self.report.last_request or answered, answered)
        items = self._numbers([item["item_id"] for item in answer["items"]])
        self.report.lists[surface] += 1
        self.report.impressions[surface] += len(items)
        self.report.models[answer["model_version"]] += 1
        self.report.fallbacks += answer.get("fallback") is not None
        shown = (np.zeros(len(items), np.int64), np.arange(len(items)), items)
        clicks, views = draw_clicks(self.world, replace(one, time_us=np.array([served_at])), shown, rng)
        events = [clicks, views, *draw_conversions(self.world, views, 0.0, rng)]
        self.report.clicks[surface] += len(clicks["time"])
        clicked.extend(self.item_ids.gather(clicks["item"]).to_list())
        self._queue(events, answer["request_id"])

    def _numbers(self, item_ids: list[str]) -> np.ndarray:
        """The simulator's numbers of served items.

        Raises:
            ServiceError: The service served an item the simulator's catalog lacks.
        """
        unknown = [item_id for item_id in item_ids if item_id not in self.item_number]
        if unknown:
            raise ServiceError(
                f'The service served item "{unknown[0]}", which the simulated catalog lacks; the loop serves '
                "a simulated shop alone (no other items ingested)"
            )
        return np.array([self.item_number[item_id] for item_id in item_ids], dtype=np.int64)

    def _request(self, one: Lists, query: str, clicked: list[str]) -> tuple[str, dict[str, Any]]:
        """The endpoint and body of a list's request."""
        body: dict[str, Any] = {"user_id": self.user_ids[int(one.user[0])], "k": self.world.spec.list_size}
        if one.surface[0] == SEARCH:
            return "/v1/search", {**body, "query": query}
        if one.surface[0] == BROWSE:
            return "/v1/recommend", {**body, "context": {"category": self.world.catalog.leaves[one.leaf[0]].path}}
        return "/v1/recommend", {**body, "context": {"session_item_ids": list(clicked)}}

    def _queue(self, parts: list[dict[str, np.ndarray]], request_id: str) -> None:
        """Queue a list's events as raw contract rows; post them once a batch is full."""
        events = {column: np.concatenate([part[column] for part in parts]) for column in parts[0]}
        n = len(events["time"])
        if not n:
            return
        numbers = np.arange(self._events, self._events + n)
        self._events += n
        frame = writer.events_frame({**events, "number": numbers}, self.user_ids, self.item_ids).with_columns(
            ids(f"e{self.run}-", numbers, 7, "event_id"),
            ids(f"s{self.run}-", events["session"], 6, "session_id"),
            pl.lit(request_id).alias("request_id"),
        )
        self.report.events.update(frame["event_type"].to_list())
        self._pending += frame.with_columns(pl.col("event_time").dt.to_string("%Y-%m-%dT%H:%M:%S%.6f")).to_dicts()
        if len(self._pending) >= EVENT_BATCH:
            self._post()

    def _post(self) -> None:
        """Post the pending events to ``/v1/events``."""
        if not self._pending:
            return
        status, answer = self.client.call("POST", "/v1/events", {"events": self._pending})
        if status != 200:
            raise ServiceError(f"POST /v1/events answered {status}: {answer.get('detail', answer)}")
        self.report.accepted += answer["accepted"]
        self.report.rejected += len(answer["rejected"])
        self._pending = []


def first_live_day(world: World, moment: datetime) -> int:
    """The first whole day of the shop (counted from its start) at or after ``moment``."""
    return -(-(us(moment) - us(world.spec.start)) // US_PER_DAY)


def _one_list(lists: Lists, row: int) -> Lists:
    """List ``row`` of ``lists`` alone (as list 0)."""
    return Lists(first=0, **{name: values[row : row + 1] for name, values in _arrays(lists).items()})


def _arrays(lists: Lists) -> dict[str, np.ndarray]:
    """The per-list arrays of ``lists`` by field name."""
    return {f.name: getattr(lists, f.name) for f in fields(Lists) if f.name != "first"}
