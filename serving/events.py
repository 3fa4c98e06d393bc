"""Feedback events posted to the service: checked by the raw events contract, the accepted ones
landed durably where ``shoprank ingest`` picks them up, the rejected ones kept with their reasons.

Accepted rows go to ``WORKDIR/landing/events/events-<time>-<id>.parquet``: written to a hidden
file, flushed to disk, then renamed, so an ingest never reads half a file. Rejected rows go, with
a ``_reason`` column, to ``WORKDIR/serving/rejected/events-<time>-<id>.parquet`` and back to the
client: nothing is lost.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import polars as pl

from shoprank.config import Settings
from shoprank.ingest.batch import Batch
from shoprank.ingest.load import rejection_reasons

SOURCE = "http:/v1/events"


@dataclass(frozen=True)
class Landed:
    """What became of posted events.

    Attributes:
        rows: The rows that met the contract, typed as they landed.
        rejected: ``{"index": position in the post, "reason": the failed checks}`` per bad row.
        path: The landing file of ``rows`` (None when none met the contract).
    """

    rows: pl.DataFrame
    rejected: list[dict[str, Any]]
    path: Path | None = None

    @property
    def accepted(self) -> int:
        return self.rows.height


def land_events(settings: Settings, events: list[dict[str, Any]]) -> Landed:
    """Check ``events`` (raw contract fields; text, numbers or ISO timestamps) and land them."""
    now = datetime.now(UTC).replace(tzinfo=None)
    frame = pl.DataFrame(events, infer_schema_length=None).select(pl.all().cast(pl.Utf8))
    typed, reasons = rejection_reasons(Batch("events", frame, SOURCE), now)
    good = reasons.is_null()
    name = f"events-{now:%Y%m%dT%H%M%S}-{uuid4().hex[:12]}.parquet"
    accepted = typed.filter(good)
    path = None if accepted.is_empty() else settings.landing / "events" / name
    if path is not None:
        _write(accepted, path)
    if not good.all():
        bad = frame.with_columns(reasons.alias("_reason")).filter(~good)
        _write(bad, settings.workdir / "serving" / "rejected" / name)
    rejected = [
        {"index": int(index), "reason": reason}
        for index, reason in zip(good.not_().arg_true(), reasons.filter(~good), strict=True)
    ]
    return Landed(accepted, rejected, path)


def _write(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically and durably (hidden file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hidden = path.with_name(f".{path.name}")
    frame.write_parquet(hidden)
    with hidden.open("rb") as file:
        os.fsync(file.fileno())
    hidden.rename(path)
