"""The HTTP ranking service (FastAPI): search and rerank on the online store's features, every
served list logged with its feature vectors (``serving.served_log``), and feedback events landed
for the next ingest.

``create_app(settings)`` loads the search model, the catalog's indexes and the online store once
(``serving.search.Searcher``); every response carries a ``request_id`` and the ``model_version``
that ranked. Bodies are validated by pydantic before anything touches a store: a bad request is a
422 naming the field and the limit. OpenAPI at ``/docs``.

The ranking endpoints are coroutines: a ranking is CPU-bound Python, so they run one at a time on
the event loop; in a thread pool, dozens of them contend for the GIL (and the libraries' own
thread pools), and an overloaded service spent 20 times the CPU per answer (``benchmarks/serving.py``).
Events (file writes with fsync) and health checks run in the pool.
"""

from __future__ import annotations

import os
import time
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal
from uuid import uuid4

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_json
from starlette.background import BackgroundTask

from serving.clock import Clock
from serving.events import Landed, land_events
from serving.features import ANONYMOUS
from serving.guard import StoreGuard
from serving.http import KEY_HEADER, RequestGate, Text, invalid_request
from serving.online import BUDGET_SECONDS
from serving.readiness import Readiness
from serving.recommend import Recommender
from serving.reload import LiveSearcher
from serving.search import SERVICE, SearchResult
from serving.served_log import ServedLog
from shoprank.config import Settings
from shoprank.errors import ConfigError, ShoprankError

MAX_K = 100
MAX_RERANK = 1_000
MAX_EVENTS = 10_000
UNKNOWN_SHOWN = 5  # unknown item ids a refusal names
RECOMMEND_SERVICE = "ranker_v2"
# seconds; fine from 5 to 25 ms, around the 10 ms goal, where an interpolated p99 would otherwise be a guess
BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
API_KEY = "SHOPRANK_API_KEY"  # the environment variable holding the key of /v1/events
METRICS_FOLDER = "PROMETHEUS_MULTIPROC_DIR"  # where workers keep their samples (prometheus_client's name)


class Body(BaseModel):
    """A request body: its numbers finite (NaN and infinities are 422s), its text ``Text``."""

    model_config = ConfigDict(allow_inf_nan=False)


class Filters(Body):
    """Candidate filters of a search."""

    category: Text | None = Field(None, description='A category path or its beginning, e.g. "Tools"')
    price_min: float | None = Field(None, ge=0)
    price_max: float | None = Field(None, ge=0)


class SearchRequest(Body):
    query: Text = Field(min_length=1, max_length=500)
    user_id: Text | None = Field(None, max_length=200)
    k: int = Field(10, ge=1, le=MAX_K)
    filters: Filters = Field(default_factory=Filters)


class RecommendContext(Body):
    session_item_ids: list[Text] = Field(default_factory=list, max_length=MAX_RERANK)
    category: Text | None = Field(None, max_length=500)


class RecommendRequest(Body):
    user_id: Text | None = Field(None, max_length=200)
    k: int = Field(10, ge=1, le=MAX_K)
    context: RecommendContext = Field(default_factory=RecommendContext)


class RerankRequest(Body):
    user_id: Text | None = Field(None, max_length=200)
    surface: Literal["search", "recommend", "browse"] | None = Field(None, description="Default: search with a query")
    item_ids: list[Text] = Field(min_length=1, max_length=MAX_RERANK)
    query: Text | None = Field(None, max_length=500)
    unknown_items: Literal["last", "refuse"] = Field(
        "last", description="Ids not in the catalog: returned after the others, unscored (last), or a 422 (refuse)"
    )


class Contribution(BaseModel):
    feature: str
    value: float


class RankedItem(BaseModel):
    item_id: str
    score: float | None = Field(description="None for an unknown item")
    title: str | None
    backfill: bool
    unknown: bool = Field(False, description="Rerank: an id not in the catalog, not scored, after the known ones")
    source: Literal["session", "history", "category", "popular"] | None = Field(
        None, description="Recommendations: the candidate generator that found the item (category, popular: backfill)"
    )
    contributions: list[Contribution] | None = Field(None, description="The largest, with ?explain=true")


class Ranking(BaseModel):
    request_id: str
    model_version: str
    items: list[RankedItem]
    fallback: str | None = Field(None, description="Set when the online store failed and a fallback ranked")


class EventsRequest(Body):
    events: list[Any] = Field(
        min_length=1,
        max_length=MAX_EVENTS,
        description="Rows of the raw events contract, JSON objects; a row that is not, or breaks it, is rejected",
    )


class EventsResponse(BaseModel):
    request_id: str
    accepted: int
    rejected: list[dict[str, Any]]


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(
        description="degraded: the online store failed (rankings come from the fallback meanwhile); still HTTP 200"
    )
    model_version: str
    feature_service: str
    catalog_items: int
    refused_version: str | None = Field(None, description="A promoted version that could not load, and why")
    online_store: str = Field(description='"reachable", or why reading features from it failed')
    materialized_until: datetime | None = Field(
        description="The newest end of the feature views' materialized intervals (UTC; the registry as cached)"
    )
    now: datetime = Field(description="The service clock's now (UTC): the time of requests and request-time features")
    worker: int = Field(description="The process id of the worker that answered (``shoprank serve --workers``)")


class Ready(BaseModel):
    ready: bool = Field(description="Whether the service ranks with its models on the online store's features")
    problems: list[str] = Field(description="What keeps it from being ready (HTTP 503 when any)")
    warnings: list[str] = Field(description="What is wrong without keeping it from ranking (e.g. the registry)")


class ServedVersion(BaseModel):
    service: str
    model_version: str = Field(description="The version answering now")
    loading: str | None = Field(description="The promoted version loading in the background; it answers once loaded")
    refused_version: str | None = Field(description="A promoted version that could not load, and why")


class Reloaded(BaseModel):
    request_id: str
    services: list[ServedVersion]


REQUESTS = Counter("shoprank_requests", "Requests answered", ["endpoint", "status"])
LATENCY = Histogram("shoprank_request_seconds", "Whole-request latency", ["endpoint"], buckets=BUCKETS)
FALLBACKS = Counter("shoprank_fallbacks", "Rankings answered by a fallback", ["endpoint"])
STAGES = Histogram("shoprank_stage_seconds", "Latency of each ranking stage", ["endpoint", "stage"], buckets=BUCKETS)


def create_app(
    settings: Settings,
    service: str = SERVICE,
    version: str | None = None,
    api_key: str | None = None,
    keyed_ranking: bool = False,
    clock: Clock | None = None,
    budget: float = BUDGET_SECONDS,
) -> FastAPI:
    """The service over ``settings``' workdir, ranking with ``service``'s model (``version``, else
    the production version, followed when another is promoted); ``/v1/events`` (and the ranking
    endpoints when ``keyed_ranking``) ask for ``api_key`` (default: the ``SHOPRANK_API_KEY``
    environment variable) in ``X-API-Key``; request times come from ``clock`` (default: the wall
    clock); a ranking's online read gets ``budget`` seconds, connect included.

    Raises:
        ShoprankError: No model of ``service``, no index, feature store or warehouse.
    """
    live = LiveSearcher(settings, service, version, budget)
    try:
        recommending = LiveSearcher(settings, RECOMMEND_SERVICE, budget=budget)
        recommender = Recommender.open(settings, recommending.current().catalog)
        no_recommender = None
    except ShoprankError as exc:  # a shop may serve search alone
        recommending = recommender = None
        no_recommender = f"recommendations are off: {exc}"
    clock = clock or Clock()
    key = api_key if api_key is not None else os.environ.get(API_KEY)
    served = ServedLog(settings)
    followed = [live, *([recommending] if recommending else [])]
    guard = StoreGuard()
    readiness = Readiness(guard, lambda: [each.current() for each in followed], clock)  # promotions noticed too

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        try:
            readiness.close()
        finally:
            served.close()  # whatever else fails, the served lists go to their files

    app = FastAPI(title="shoprank", summary="Search and rerank on Feast online features", lifespan=lifespan)

    def answer(
        endpoint: str,
        result: SearchResult,
        at: datetime,
        user_id: str | None,
        surface: str,
        query: str | None,
        explain: bool,
        sources: dict[str, str] | None = None,
    ):
        request_id, ranking = _ranking(endpoint, result, explain, sources)
        if result.items:  # every list shown is logged; with its feature vectors when the model ranked it
            shown = [item["item_id"] for item in result.items]
            ranked = result.candidates and not result.fallback  # else no feature vectors: the model did not rank
            logged = (result.model, result.vectors if ranked else None, result.order, result.entities)

            async def log() -> None:  # on the event loop, once the response is sent: not a thread's
                served.record(request_id, at, user_id or ANONYMOUS, surface, query, *logged, shown=shown)

            ranking.background = BackgroundTask(log)
        return ranking

    keyed = KEY_HEADER  # declared for OpenAPI; RequestGate checks the key before the body is read

    ranking_guard = [Depends(keyed)] if keyed_ranking else []

    app.add_middleware(RequestGate, api=app, key=key, key_variable=API_KEY)
    app.add_middleware(_Measured)
    app.add_exception_handler(RequestValidationError, invalid_request)

    @app.get("/metrics")
    def metrics() -> Response:
        registry = REGISTRY
        if os.environ.get(METRICS_FOLDER):  # several workers: each keeps its samples in that folder
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(ConfigError)
    def bad_request(_: Request, exc: ConfigError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})  # e.g. an unknown category

    @app.get("/health")
    async def health() -> Health:
        """Liveness: HTTP 200 while the process answers, whatever its stores do (it ranks from
        the fallback meanwhile); the body names the model, the online store's state as last
        watched (never waited on) and how fresh its values are."""
        searcher = live.current()
        skipped = guard.admit()
        return Health(
            status="degraded" if skipped else "ok",
            model_version=searcher.model.name,
            feature_service=searcher.plan.service,
            catalog_items=searcher.catalog.height,
            refused_version=live.refused,
            online_store=skipped or "reachable",
            materialized_until=readiness.materialized_until,
            now=clock.now(),
            worker=os.getpid(),
        )

    @app.get("/ready", response_model=Ready, responses={503: {"model": Ready, "description": "Not ready"}})
    async def ready() -> Response:
        """Readiness: HTTP 200 when the service ranks with its models on the online store's
        features; 503 with the reasons while it does not (the store unreachable, tables missing,
        the store holding far fewer rows than the registry says were materialized, a promoted
        model refused). Answered from memory: the store is watched in the background."""
        problems = readiness.problems() + [each.refused for each in followed if each.refused]
        warnings = [readiness.registry] if readiness.registry else []
        body = Ready(ready=not problems, problems=problems, warnings=warnings)
        return Response(body.model_dump_json(), status_code=503 if problems else 200, media_type="application/json")

    @app.post("/v1/admin/reload")
    def reload(_: None = Depends(keyed)) -> Reloaded:
        """Read the production markers now (instead of within 2 s), retrying a refused version."""
        for each in followed:
            each.check(retry_refused=True)
        return Reloaded(request_id=uuid4().hex, services=[_served_version(each) for each in followed])

    @app.post("/v1/search", dependencies=ranking_guard, response_model=Ranking)
    async def search(request: SearchRequest, explain: bool = False) -> Response:
        filters = request.filters.model_dump(exclude_none=True)
        at = clock.now()
        result = await live.current().search(request.query, request.user_id, request.k, explain, at, guard, **filters)
        return answer("/v1/search", result, at, request.user_id, "search", request.query, explain)

    @app.post("/v1/events")
    def events(request: EventsRequest, _: None = Depends(keyed)) -> EventsResponse:
        landed = land_events(settings, request.events)
        if recommender is not None:
            _remember(recommender, landed)
        return EventsResponse(request_id=uuid4().hex, accepted=landed.accepted, rejected=landed.rejected)

    @app.post("/v1/recommend", dependencies=ranking_guard, response_model=Ranking)
    async def recommend(request: RecommendRequest, explain: bool = False) -> Response:
        if recommender is None:
            raise HTTPException(status_code=503, detail=no_recommender)
        context = request.context
        found = recommender.candidates(context.session_item_ids, context.category, request.user_id)
        at = clock.now()
        result = await recommending.current().rank(
            found.ids, request.user_id, None, request.k, found.backfill, explain, at, guard
        )
        return answer("/v1/recommend", result, at, request.user_id, "recommend", None, explain, found.source_of())

    @app.post("/v1/rerank", dependencies=ranking_guard, response_model=Ranking)
    async def rerank(request: RerankRequest, explain: bool = False) -> Response:
        at, searcher = clock.now(), live.current()
        request, unknown = _known_items(request, searcher.item_titles)
        result = await searcher.rank(
            request.item_ids, request.user_id, request.query, explain=explain, at=at, guard=guard
        )
        surface = request.surface or ("search" if request.query else "recommend")
        return answer(
            "/v1/rerank", _with_unknown(result, unknown), at, request.user_id, surface, request.query, explain
        )

    return app


def _ranking(
    endpoint: str, result: SearchResult, explain: bool, sources: dict[str, str] | None = None
) -> tuple[str, Response]:
    """The request id and the JSON response (a ``Ranking``) of a ranking, its stages timed; each
    item's largest contributions only when asked to explain, its candidate generator when
    ``sources`` name them. Written straight to JSON: the results are ours, already valid, and
    pydantic's models cost a millisecond per 100 items."""
    for stage, seconds in result.stages.items():
        STAGES.labels(endpoint, stage).observe(seconds)
    sources = sources or {}
    items = [
        {
            "item_id": item["item_id"],
            "score": item["score"],
            "title": item["title"],
            "backfill": item["backfill"],
            "unknown": item.get("unknown", False),
            "source": sources.get(item["item_id"]),
            "contributions": item["contributions"] if explain else None,
        }
        for item in result.items
    ]
    if result.fallback:
        FALLBACKS.labels(endpoint).inc()
    request_id = uuid4().hex
    ranking = {"request_id": request_id, "model_version": result.model, "items": items, "fallback": result.fallback}
    return request_id, Response(to_json(ranking), media_type="application/json")


class _Measured:
    """ASGI middleware: every request is counted and timed by endpoint, until its answer is sent
    (``unmatched``: refused by ``serving.http.RequestGate`` before the routing, or no route). (Plain
    ASGI: Starlette's ``BaseHTTPMiddleware`` costs half a millisecond per request and layer.)"""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status, answered = time.perf_counter(), [500], []

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                answered.append(time.perf_counter())  # the answer is out; background work may follow

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            endpoint = route.path if route else "unmatched"
            REQUESTS.labels(endpoint, str(status[0])).inc()
            LATENCY.labels(endpoint).observe((answered[0] if answered else time.perf_counter()) - started)


def _known_items(request: RerankRequest, catalog: dict[str, Any]) -> tuple[RerankRequest, list[str]]:
    """The request with only the items of ``catalog`` (ranked as if alone), and the others in the
    request's order.

    Raises:
        RequestValidationError: Some items are unknown and the request refuses them (a 422).
    """
    unknown = [item for item in request.item_ids if item not in catalog]
    if not unknown:
        return request, []
    if request.unknown_items == "refuse":
        more = ", ..." if len(unknown) > UNKNOWN_SHOWN else ""
        shown = ", ".join(f'"{item}"' for item in unknown[:UNKNOWN_SHOWN]) + more
        message = f'{len(unknown)} item ids are not in the catalog: {shown}; drop them, or ask for unknown_items "last"'
        error = {"type": "unknown_items", "loc": ("body", "item_ids"), "msg": message, "input": unknown[:UNKNOWN_SHOWN]}
        raise RequestValidationError([error])
    known = [item for item in request.item_ids if item in catalog]
    return request.model_copy(update={"item_ids": known}), unknown


def _with_unknown(result: SearchResult, unknown: list[str]) -> SearchResult:
    """The ranked items, then ``unknown`` marked, unscored (no feature vectors: the model did not rank them)."""
    if not unknown:
        return result
    marked = [
        {"item_id": item, "score": None, "title": None, "backfill": False, "contributions": None, "unknown": True}
        for item in unknown
    ]
    return replace(result, items=[*result.items, *marked])


def _remember(recommender: Recommender, landed: Landed) -> None:
    """Add the accepted events to their users' recent items."""
    if landed.accepted:
        recommender.recent.record(landed.rows.select("user_id", "item_id", "event_type", "event_time"), landed.path)


def _served_version(live: LiveSearcher) -> ServedVersion:
    """What ``live`` answers with and loads."""
    loading = f"{live.service}/{live.loading}" if live.loading else None
    return ServedVersion(
        service=live.service,
        model_version=live.searcher.model.name,
        loading=loading,
        refused_version=live.refused,
    )
