"""Feedback events posted to the service: checked by the raw events contract, the accepted ones
landed durably where ``shoprank ingest`` picks them up, the rejected ones kept with their reasons.

Each row is judged alone. One the contract cannot read is rejected for that, naming the field:
not a JSON object, a nested value (list or object), a number that is not finite, text with a lone
surrogate. The others' values are read as text (a number where other rows have text included)
and checked by the contract (``shoprank.ingest.load.rejection_reasons``); fields it does not know
are not kept. Every posted row is accepted or rejected: ``accepted + len(rejected) == len(events)``.

Accepted rows go to ``WORKDIR/landing/events/events-<time>-<id>.parquet``: written to a hidden
file, flushed to disk, then renamed, so an ingest never reads half a file. Rejected rows go back
to the client and, with a ``_reason`` column, to ``WORKDIR/serving/rejected/events-<time>-<id>.parquet``:
the contract's fields as text, and ``_row``, the row as posted (JSON): nothing is lost.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import polars as pl

from serving.http import escaped
from shoprank.config import Settings
from shoprank.contracts import RAW_TABLES
from shoprank.ingest.batch import Batch
from shoprank.ingest.load import rejection_reasons

SOURCE = "http:/v1/events"
FIELDS = tuple(RAW_TABLES["events"].columns)


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


def land_events(settings: Settings, events: list[Any]) -> Landed:
    """Check ``events`` (rows of raw contract fields: text, numbers or ISO timestamps) and land them."""
    now = datetime.now(UTC).replace(tzinfo=None)
    texts, unreadable = zip(*map(_as_text, events), strict=True)
    frame = pl.DataFrame(list(texts), schema=dict.fromkeys(FIELDS, pl.Utf8))
    typed, reasons = rejection_reasons(Batch("events", frame, SOURCE), now)
    reasons = pl.select(pl.coalesce(pl.Series(unreadable, dtype=pl.Utf8), reasons)).to_series()
    good = reasons.is_null()
    name = f"events-{now:%Y%m%dT%H%M%S}-{uuid4().hex[:12]}.parquet"
    accepted = typed.filter(good)
    path = None if accepted.is_empty() else settings.landing / "events" / name
    if path is not None:
        _write(accepted, path)
    if not good.all():
        posted = pl.Series("_row", [json.dumps(row) for row in events], dtype=pl.Utf8)  # ASCII: surrogates escaped
        bad = frame.with_columns(posted, reasons.alias("_reason")).filter(~good)
        _write(bad, settings.workdir / "serving" / "rejected" / name)
    rejected = [
        {"index": int(index), "reason": reason}
        for index, reason in zip(good.not_().arg_true(), reasons.filter(~good), strict=True)
    ]
    return Landed(accepted, rejected, path)


def _as_text(row: Any) -> tuple[dict[str, str | None], str | None]:
    """The contract's fields of a posted row as text, and why the contract cannot read the row
    (None when it can). Fields the contract does not know are checked alike, then dropped."""
    if not isinstance(row, dict):
        return {}, f"row: not an object but {_json_type(row)}"
    texts, problems = {}, []
    for field, value in row.items():
        text, problem = _text(value)
        if field != escaped(field):
            problem = "a field name with a lone surrogate"
        if problem:
            problems.append(f"{escaped(field)}: {problem}")
        if field in FIELDS:
            texts[field] = text
    return texts, "; ".join(problems) or None


def _text(value: Any) -> tuple[str | None, str | None]:
    """A JSON value as text (booleans as polars writes them), and why it is not a field's value."""
    if value is None or isinstance(value, str):
        text = value if value is None else escaped(value)
        return text, None if text == value else "text with a lone surrogate"
    if isinstance(value, bool):
        return str(value).lower(), None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value), f"not a finite number ({value})"
    if isinstance(value, int | float):
        return str(value), None
    return None, f"a nested value ({_json_type(value)}); a field holds text, a number or null"


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _write(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` atomically and durably (hidden file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hidden = path.with_name(f".{path.name}")
    frame.write_parquet(hidden)
    with hidden.open("rb") as file:
        os.fsync(file.fileno())
    hidden.rename(path)
