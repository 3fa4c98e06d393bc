"""Training-serving parity: the feature vectors the service logged (``serving.served_log``),
recomputed offline through the path training frames take, value by value.

A sample of served requests is read from ``WORKDIR/serving/features/features-*.jsonl`` (hidden
files are still being written: skipped). Each served item becomes an entity row as training
builds them (``training.dataset.entity_table``): its logged entity row, its ``item_id`` and
``event_timestamp`` = the request time; the rows of each feature service are joined point in
time by ``training.pit.join_chunk`` (or Feast's ``get_historical_features``, ``engine="feast"``)
and every logged feature is compared with its offline value.

Equal means: both missing; or both numbers, equal within ``RELATIVE_TOLERANCE`` when either is a
float; or equal exactly (strings, integers). Stored values reach both paths as the same doubles
(Parquet offline, protobuf doubles online) and on-demand views run the same code, so the tolerance
only absorbs float rounding of request-time arithmetic (``request_context``'s hours and days
between timestamps, naive online and zoned offline): 1e-9 is millions of times a double's last
bit, and a thousand times below a timestamp one second off at 100 hours (3e-6). On the tiny shop
every float is equal bit for bit.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
from feast import FeatureStore
from feast.types import UnixTimestamp

from shoprank.config import Settings
from shoprank.errors import ContractError, InputError
from shoprank.features.store import open_store
from shoprank.summary import table
from training.contracts import GROUP, POLARS_TYPES
from training.dataset import ENTITIES, engine_for, entity_table, feast_join
from training.pit import CHUNK, ROW, connect, join_chunk
from training.plan import ServicePlan, resolve

SAMPLE = 200  # served requests checked by default
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 1e-12  # for values that are zero up to rounding
EXAMPLES = 3  # mismatches kept per feature
SHOWN = 10  # features the command prints
CHUNK_ROWS = 100_000  # entity rows joined at a time
PATTERN = "features-*.jsonl"
_REQUEST_ID = re.compile(r'"request_id":\s*"([^"\\]*)"')


@dataclass(frozen=True)
class Mismatch:
    """One logged value that differs from its offline value."""

    request_id: str
    item_id: str
    served: object
    offline: object


@dataclass(frozen=True)
class FeatureParity:
    """One feature of one feature service over the sample.

    Attributes:
        rows: Served items compared.
        mismatches: Of those, how many differ.
        missing_offline: Of the mismatches, how many were served but have no value offline.
        examples: The first ``EXAMPLES`` mismatches.
    """

    service: str
    feature: str
    rows: int
    mismatches: int
    missing_offline: int
    examples: tuple[Mismatch, ...]


@dataclass(frozen=True)
class ServiceParity:
    """The sample's requests served on one feature service."""

    service: str
    models: tuple[str, ...]  # the model versions that served them
    requests: int
    items: int
    features: tuple[FeatureParity, ...]

    @property
    def values(self) -> int:
        return sum(feature.rows for feature in self.features)

    @property
    def mismatches(self) -> int:
        return sum(feature.mismatches for feature in self.features)


@dataclass(frozen=True)
class ParityReport:
    """Logged feature vectors against the training path's values at the same request times.

    Attributes:
        folder: Where the served log was read.
        engine: ``duckdb`` (``training.pit``) or ``feast`` (``get_historical_features``).
        logged: Served requests in the log; ``services`` hold the sampled ones.
    """

    folder: Path
    engine: str
    logged: int
    services: tuple[ServiceParity, ...]

    @property
    def requests(self) -> int:
        return sum(service.requests for service in self.services)

    @property
    def mismatches(self) -> int:
        return sum(service.mismatches for service in self.services)

    @property
    def failing(self) -> list[FeatureParity]:
        """The features with mismatches."""
        return [feature for service in self.services for feature in service.features if feature.mismatches]


def check_parity(
    settings: Settings, sample: int = SAMPLE, seed: int | None = None, engine: str | None = None
) -> ParityReport:
    """Recompute the features of ``sample`` served requests (chosen at random with ``seed``,
    default the settings' seed; all their items) offline at their request times and compare.

    Raises:
        InputError: No served log in the workdir, or a line of it is not a logged vector.
        ConfigError: An unknown engine.
        FeatureStoreError: A logged feature service is not registered.
        ContractError: Logged rows lack an entity column their feature service reads.
    """
    engine = engine_for(settings, engine, ("duckdb", "feast"))
    folder = settings.workdir / "serving" / "features"
    files = sorted(folder.glob(PATTERN))
    if not files:
        raise InputError(
            f"No served feature log in {folder} (files {PATTERN}); serve some requests with `shoprank serve` "
            "first (its log becomes visible when rotated or when the service stops)"
        )
    logged, rows = _sample(files, sample, settings.seed if seed is None else seed)
    by_service: dict[str, list[dict]] = {}
    for row in rows:
        by_service.setdefault(row["model_version"].split("/", 1)[0], []).append(row)
    store = open_store(settings)
    services = []
    for service, served in sorted(by_service.items()):
        offline = _recompute(settings, store, resolve(store, service), served, engine)
        services.append(_compare(service, served, offline))
    return ParityReport(folder, engine, logged, tuple(services))


def _sample(files: list[Path], sample: int, seed: int) -> tuple[int, list[dict]]:
    """How many requests the log holds, and every served item of ``sample`` of them (``_items``)."""
    ids = sorted({request_id for request_id, _ in _lines(files)})
    chosen = set(ids) if len(ids) <= sample else set(random.Random(seed).sample(ids, sample))
    lists = [json.loads(line) for request_id, line in _lines(files) if request_id in chosen]
    return len(ids), [row for served in lists for row in _items(served)]


def _items(served: dict) -> Iterator[dict]:
    """A logged list's items, each as a row: the list's fields, ``item_id``, ``position`` and its
    ``entities`` and ``features`` values.

    Raises:
        InputError: The line is not a logged list (e.g. one item per line, as logged before).
    """
    missing = sorted({"request_time", "user_id", "model_version", "items", "entities", "features"} - served.keys())
    if missing:
        raise InputError(
            f"Served request {served['request_id']} is logged without {', '.join(missing)}: not a served list as "
            "this version logs them; move its file out of the served log"
        )
    fields = {name: served[name] for name in ("request_id", "request_time", "user_id", "model_version")}
    for position, item in enumerate(served["items"]):
        yield {
            **fields,
            "item_id": item,
            "position": position,
            "entities": {name: _at(values, position) for name, values in served["entities"].items()},
            "features": {name: _at(values, position) for name, values in served["features"].items()},
        }


def _at(values: list, position: int) -> object:
    """A logged column's value at ``position`` (a column of one value holds every item's)."""
    return values[position if len(values) > 1 else 0]


def _lines(files: list[Path]) -> Iterator[tuple[str, str]]:
    """Each logged line with its request id (read without parsing the whole line).

    Raises:
        InputError: A line holds no request id.
    """
    for path in files:
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                found = _REQUEST_ID.search(line)
                if found is None:
                    raise InputError(
                        f"Line {number} of {path} is not a served feature vector (no request_id); "
                        "remove the line or the file"
                    )
                yield found.group(1), line


def _recompute(
    settings: Settings, store: FeatureStore, plan: ServicePlan, served: list[dict], engine: str
) -> dict[tuple[str, int], dict]:
    """The service's offline features of each served item, by ``(request_id, position)``."""
    con = connect(settings.workdir / "serving" / ".parity-spill")
    try:
        con.register("served_rows", _entity_rows(plan, served).to_arrow())
        entity_table(con, "select * from served_rows", CHUNK_ROWS)
        join = join_chunk if engine == "duckdb" else feast_join(store)
        chunks = [chunk for (chunk,) in con.sql(f"select distinct {CHUNK} from {ENTITIES} order by 1").fetchall()]
        frame = pl.concat([pl.from_arrow(join(con, plan, ENTITIES, chunk)) for chunk in chunks], how="vertical")
    finally:
        con.close()
    return {(row[GROUP], row["position"]): row for row in frame.iter_rows(named=True)}


def _entity_rows(plan: ServicePlan, served: list[dict]) -> pl.DataFrame:
    """Training's entity rows for served items: the logged entity row, the item, the request id
    as the group, the position, ``event_timestamp`` = the request time, and a row number.

    Raises:
        ContractError: A logged row lacks an entity column the service reads.
    """
    types = {key: pl.Utf8 for view in plan.views for key in view.join_keys.values()}
    for odfv in plan.on_demand:
        for request in odfv.view.source_request_sources.values():
            types.update({field.name: POLARS_TYPES.get(field.dtype, pl.Utf8) for field in request.schema})
    stamps = {name for name, kind in types.items() if kind == POLARS_TYPES[UnixTimestamp]}
    columns: dict[str, list] = {
        GROUP: [],
        "position": [],
        "event_timestamp": [],
        **{c: [] for c in plan.entity_columns},
    }
    for row in served:
        logged = {**row["entities"], "item_id": row["item_id"]}
        missing = [column for column in plan.entity_columns if column not in logged]
        if missing:
            raise ContractError(
                f"Served request {row['request_id']} ({row['model_version']}) lacks entity column(s) {missing} that "
                f'feature service "{plan.service}" reads now; the service changed since it was served: '
                "check requests served by its current definition"
            )
        columns[GROUP].append(row["request_id"])
        columns["position"].append(row["position"])
        columns["event_timestamp"].append(datetime.fromisoformat(row["request_time"]))
        for column in plan.entity_columns:
            value = logged[column]
            columns[column].append(datetime.fromisoformat(value) if column in stamps and value else value)
    schema = {GROUP: pl.Utf8, "position": pl.Int64, "event_timestamp": pl.Datetime("us")}
    schema.update({column: types.get(column, pl.Utf8) for column in plan.entity_columns})
    return pl.DataFrame(columns, schema=schema).with_row_index(ROW)


def _compare(service: str, served: list[dict], offline: dict[tuple[str, int], dict]) -> ServiceParity:
    """Each logged feature of the service's served items against its offline value."""
    found: dict[str, list[Mismatch]] = {}
    rows: dict[str, int] = {}
    for row in served:
        recomputed = offline[(row["request_id"], row["position"])]
        for feature, value in row["features"].items():
            rows[feature] = rows.get(feature, 0) + 1
            mismatches = found.setdefault(feature, [])
            other = _plain(recomputed.get(feature))
            if not same(value, other):
                mismatches.append(Mismatch(row["request_id"], row["item_id"], value, other))
    features = tuple(
        FeatureParity(
            service,
            feature,
            rows[feature],
            len(mismatches),
            sum(m.served is not None and m.offline is None for m in mismatches),
            tuple(mismatches[:EXAMPLES]),
        )
        for feature, mismatches in found.items()
    )
    models = tuple(sorted({row["model_version"] for row in served}))
    return ServiceParity(service, models, len({row["request_id"] for row in served}), len(served), features)


def same(served: object, offline: object) -> bool:
    """Whether a logged value equals its offline value: both missing, numbers within the
    tolerance when either is a float, anything else exactly."""
    if served is None or offline is None:
        return served is None and offline is None
    numbers = (int, float)
    if isinstance(served, numbers) and isinstance(offline, numbers) and float in (type(served), type(offline)):
        return math.isclose(served, offline, rel_tol=RELATIVE_TOLERANCE, abs_tol=ABSOLUTE_TOLERANCE)
    return served == offline


def _plain(value: object) -> object:
    """An offline value as the served log holds it: NaN missing, times as naive UTC ISO text."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):
        return (value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value).isoformat()
    return value


HINT = (
    "Most mismatches are values served online that the offline store does not hold at the request time "
    "(older than the view's TTL, or not known yet): the service's clock is past the materialized data. "
    "Serve a past shop with `shoprank serve --as-of materialized`, or rematerialize "
    "(`shoprank features materialize`) before serving."
)


def render(report: ParityReport) -> str:
    """The report as the ``shoprank parity`` command prints it: a line per service, then the
    ``SHOWN`` features with most mismatches, each with its first example."""
    head = (
        f"Parity of {report.requests:,} served requests (of {report.logged:,} logged), recomputed by the "
        f"{report.engine} engine at their request times:"
    )
    services = [
        [s.service, ", ".join(s.models), s.requests, s.items, len(s.features), s.values, s.mismatches]
        for s in report.services
    ]
    lines = [head, table(["service", "models", "requests", "items", "features", "values", "mismatches"], services)]
    failing = sorted(report.failing, key=lambda feature: -feature.mismatches)
    if not failing:
        tolerance = f"1e{math.log10(RELATIVE_TOLERANCE):.0f}"
        lines.append(
            f"No mismatch: every served value equals its offline value (floats within a relative {tolerance})."
        )
        return "\n".join(lines)
    shown = failing[:SHOWN]
    more = f" ({len(failing) - SHOWN:,} more features not shown)" if len(failing) > SHOWN else ""
    counts = [[f.service, f.feature, f.mismatches, f.rows] for f in shown]
    examples = [[f.service, f.feature, *_example(f.examples[0])] for f in shown]
    lines += [
        f"{report.mismatches:,} mismatching value(s) in {len(failing):,} feature(s): serving and training disagree.",
        f"Features with most mismatches{more}:",
        table(["service", "feature", "mismatches", "rows"], counts),
        "First mismatch of each:",
        table(["service", "feature", "request_id", "item_id", "served", "offline"], examples),
    ]
    if 2 * sum(f.missing_offline for f in failing) > report.mismatches:
        lines.append(HINT)
    return "\n".join(lines)


def _example(mismatch: Mismatch) -> list[str]:
    """Where a mismatch is and both its values (text quoted, a missing value as ``missing``)."""
    shown = [
        "missing" if v is None else repr(v) if isinstance(v, str) else str(v)
        for v in (mismatch.served, mismatch.offline)
    ]
    return [mismatch.request_id, mismatch.item_id, *shown]
