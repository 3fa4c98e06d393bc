"""What p99 this machine gives a FastAPI service that spends a fixed CPU time per request: the
``/v1/rerank`` body validated by the service's own model, ``BURN_MS`` of CPU burnt, then a
ranking-shaped answer of every candidate (``benchmarks/serving.py``, ``_cpu_budget``). Started by
uvicorn as a factory: ``uvicorn _cpu_budget_app:app --factory``."""

from __future__ import annotations

import os
import time

from fastapi import FastAPI, Response
from pydantic_core import to_json

from serving.app import RerankRequest

BURN_MS = "BURN_MS"  # the environment variable holding the CPU milliseconds burnt per request


def app() -> FastAPI:
    burn = float(os.environ.get(BURN_MS, "0")) / 1000
    calibrated = FastAPI()

    @calibrated.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @calibrated.post("/v1/rerank")
    async def rerank(request: RerankRequest) -> Response:
        until = time.thread_time() + burn
        while time.thread_time() < until:
            pass
        items = [
            {"item_id": item, "score": 0.5, "title": None, "backfill": False, "source": None, "contributions": None}
            for item in request.item_ids
        ]
        ranking = {"request_id": "0" * 32, "model_version": "calibrated", "items": items, "fallback": None}
        return Response(to_json(ranking), media_type="application/json")

    return calibrated
