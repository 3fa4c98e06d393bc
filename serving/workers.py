"""Running the service: one process, or ``workers`` processes answering on one port.

A ranking is CPU-bound Python, so one process answers on one core. With more workers, uvicorn's
supervisor starts fresh processes that each build the app (``app``) and share the listening
socket; the kernel spreads connections over them. What they must agree on is fixed once, here,
and handed to them in the environment (``SHOPRANK_SERVE``): the settings, the model, and the
clock (its start on the machine's monotonic clock, the same in every process, so every worker
gives the same now). Prometheus samples go to files in a folder of the run
(``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's multiprocess mode) that ``/metrics`` adds up.
Each worker writes its own served log, and reads the events landed by the others
(``serving.recommend.RecentItems.follow``).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI

from serving.app import METRICS_FOLDER, create_app
from serving.clock import Clock
from serving.http import SERVER_OPTIONS
from serving.online import BUDGET_SECONDS
from shoprank.config import Settings

OPTIONS = "SHOPRANK_SERVE"  # the environment variable that hands the options to the workers


@dataclass(frozen=True)
class ServeOptions:
    """What every worker serves."""

    settings: Settings
    service: str
    version: str | None
    keyed_ranking: bool
    clock: Clock
    budget: float = BUDGET_SECONDS  # seconds per online read

    def to_json(self) -> str:
        clock = self.clock
        return json.dumps(
            {
                "settings": {**dataclasses.asdict(self.settings), "workdir": str(self.settings.workdir)},
                "service": self.service,
                "version": self.version,
                "keyed_ranking": self.keyed_ranking,
                "clock": [clock.start.isoformat() if clock.start else None, clock.speed, clock.started],
                "budget": self.budget,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ServeOptions:
        given = json.loads(text)
        settings = Settings(**{**given["settings"], "workdir": Path(given["settings"]["workdir"])})
        start, speed, started = given["clock"]
        clock = Clock(datetime.fromisoformat(start) if start else None, speed, started)
        return cls(settings, given["service"], given["version"], given["keyed_ranking"], clock, given["budget"])


def run(options: ServeOptions, host: str, port: int, workers: int = 1) -> None:
    """Serve until interrupted."""
    import uvicorn

    quiet = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers == 1:
        uvicorn.run(_build(options), **quiet, **SERVER_OPTIONS)
        return
    with tempfile.TemporaryDirectory(prefix="shoprank-metrics-") as metrics:
        os.environ[OPTIONS], os.environ[METRICS_FOLDER] = options.to_json(), metrics
        try:
            uvicorn.run(f"{__name__}:app", factory=True, workers=workers, **quiet, **SERVER_OPTIONS)
        finally:
            del os.environ[OPTIONS], os.environ[METRICS_FOLDER]


def app() -> FastAPI:
    """A worker's app, from the options in the environment."""
    return _build(ServeOptions.from_json(os.environ[OPTIONS]))


def _build(options: ServeOptions) -> FastAPI:
    built = create_app(
        options.settings,
        options.service,
        options.version,
        keyed_ranking=options.keyed_ranking,
        clock=options.clock,
        budget=options.budget,
    )
    gc.collect()
    gc.freeze()  # the loaded model, indexes and catalog: full collections no longer walk them (250 ms stalls)
    return built
