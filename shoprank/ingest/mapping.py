"""Declarative column mappings: any CSV, Parquet or JSONL file onto a raw table, without code.

A mapping file (YAML) names the raw table, the file format, the source column behind each contract
column, parse hints for timestamps, value translations, constant columns, and whether to derive a
stable ``event_id``::

    table: events
    csv: {delimiter: ";", header: true}
    columns: {user_id: visitor, item_id: sku, event_time: ts}
    event_time: {unit: ms}
    values:
      event_type: {source: action, map: {pv: view, basket: add_to_cart, order: purchase}}
    constants: {surface: search}
    event_id: derive

The building blocks (``Mapping.apply``, ``derive_ids``, ``parse_time``) are shared
with the dataset adapters in ``shoprank.ingest.adapters``. Nothing here drops or repairs a value:
whatever cannot be parsed is passed on as its source text, for the ingest core to quarantine.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from shoprank.contracts import RAW_TABLES
from shoprank.errors import MappingError
from shoprank.ingest.batch import Batch
from shoprank.ingest.readers import FORMATS, chunks, first_row, reading, refuse_nested, scan

MAX_MAPPING_BYTES = 1_000_000  # a mapping is a few kilobytes; value maps of thousands of codes fit
MAX_MAPPING_NODES = 100_000  # values of the document with every alias expanded (a "billion laughs" has 10^9)
UNITS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_ISO = "%Y-%m-%d %H:%M:%S%.f"
_SEPARATOR = "\x1f"
_NULL = "\x00"


@dataclass(frozen=True)
class TimeHint:
    """How to parse a timestamp column: an epoch ``unit`` (s, ms, us) or a strftime ``format``."""

    unit: str | None = None
    format: str | None = None


@dataclass(frozen=True)
class ValueMap:
    """A contract column computed from ``source`` by translating values; unmapped ones pass through."""

    source: str
    map: dict[str, str]


@dataclass(frozen=True)
class Mapping:
    """How the columns of a source file become the contract columns of one raw table.

    Attributes:
        table: Raw table name.
        columns: Contract column -> source column, copied as they are.
        values: Contract column -> value translation of a source column.
        constants: Contract column -> the same value on every row.
        times: Contract column (one of ``columns``) -> how to parse it.
        derive_id: When set, ``event_id`` is derived from the whole source row, prefixed with this.
        format: csv, parquet or jsonl; ``None`` means from the file extension.
        delimiter: CSV field separator.
        header: Whether a CSV file starts with a header row (without one, columns are
            ``column_1``, ``column_2``, ...).
        origin: Where the mapping came from, for messages.
    """

    table: str
    columns: dict[str, str] = field(default_factory=dict)
    values: dict[str, ValueMap] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    times: dict[str, TimeHint] = field(default_factory=dict)
    derive_id: str | None = None
    format: str | None = None
    delimiter: str = ","
    header: bool = True
    origin: str = "built-in mapping"

    def sources(self) -> dict[str, str]:
        """Source column -> the first mapping key that reads it, e.g. ``{"ts": "columns.event_time"}``."""
        keys: dict[str, str] = {}
        for col, src in self.columns.items():
            keys.setdefault(src, f"columns.{col}")
        for col, value_map in self.values.items():
            keys.setdefault(value_map.source, f"values.{col}.source")
        return keys

    def apply(self, chunk: pl.DataFrame) -> pl.DataFrame:
        """Map one chunk of source rows onto the contract columns (one output row per source row)."""
        out: dict[str, pl.Series] = {}
        if self.derive_id:
            out["event_id"] = derive_ids(chunk, self.derive_id)
        for col, src in self.columns.items():
            out[col] = parse_time(chunk[src], self.times[col]) if col in self.times else chunk[src]
        for col, value_map in self.values.items():
            out[col] = chunk[value_map.source].cast(pl.Utf8).replace(value_map.map)
        for col, value in self.constants.items():
            out[col] = pl.repeat(value, chunk.height, eager=True)
        order = [c for c in RAW_TABLES[self.table].columns if c in out]
        return pl.DataFrame([out[c].alias(c) for c in order])


def read_mapped(path: Path, mapping: Mapping) -> Iterator[Batch]:
    """Yield the rows of ``path`` mapped onto ``mapping.table``, in chunks of ``CHUNK_ROWS``.

    Raises:
        MappingError: A source column of the mapping is not in the file.
        InputError: The file cannot be read in its format.
    """
    path = Path(path)
    fmt = mapping.format or _format_of(path, mapping.origin)
    names = None
    if fmt == "csv" and not mapping.header:
        names = [f"column_{i}" for i in range(1, len(first_row(path, mapping.delimiter)) + 1)]
    frame = scan(path, fmt, mapping.delimiter, mapping.header, names)
    with reading(path, fmt):
        schema = frame.collect_schema()
    found = schema.names()
    refuse_nested(path, schema, mapping.sources())
    missing = {src: key for src, key in mapping.sources().items() if src not in found}
    if missing:
        named = ", ".join(f'{key} names "{src}"' for src, key in missing.items())
        raise MappingError(
            f'Mapping "{mapping.origin}": {named}, but "{path}" has no such column (its columns: {", ".join(found)}); '
            "fix the source column names in the mapping, or check csv.delimiter / csv.header"
        )
    for chunk in chunks(frame, path, fmt):
        yield Batch(table=mapping.table, frame=mapping.apply(chunk), source=str(path))


def derive_ids(frame: pl.DataFrame, prefix: str) -> pl.Series:
    """Stable ids ``<prefix>-<16 hex>``: a 64-bit BLAKE2b hash of the prefix and every field of the row.

    Identical across runs, processes, chunkings and Polars versions (Polars' own ``hash`` is only
    stable within one version), so re-ingesting a file is idempotent; identical rows share an id.
    """
    fields = [pl.col(c).cast(pl.Utf8).fill_null(_NULL) for c in frame.columns]
    keys = frame.select(pl.concat_str([pl.lit(prefix), *fields], separator=_SEPARATOR)).to_series()
    ids = [f"{prefix}-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}" for key in keys]
    return pl.Series("event_id", ids, dtype=pl.Utf8)


def parse_time(raw: pl.Series, hint: TimeHint) -> pl.Series:
    """Naive UTC timestamps from epochs (``hint.unit``) or text (``hint.format``, UTC unless it has %z)."""
    text = raw.str.strip_chars() if raw.dtype == pl.Utf8 else raw
    if hint.unit:
        micros = (text.cast(pl.Float64, strict=False) * UNITS[hint.unit]).round(0).cast(pl.Int64, strict=False)
        parsed = micros.cast(pl.Datetime("us"))
    else:
        parsed = text.cast(pl.Utf8).str.to_datetime(hint.format, strict=False, time_unit="us")
        if parsed.dtype.time_zone is not None:
            parsed = parsed.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return typed_or_text(parsed, raw)


def typed_or_text(parsed: pl.Series, raw: pl.Series) -> pl.Series:
    """``parsed`` if every non-null ``raw`` value parsed; else text: ISO where parsed, ``raw`` where not."""
    failed = parsed.is_null() & raw.is_not_null()
    if not failed.any():
        return parsed.alias(raw.name)
    text = pl.select(pl.when(failed).then(raw.cast(pl.Utf8)).otherwise(parsed.dt.to_string(_ISO))).to_series()
    return text.alias(raw.name)


def load_mapping(path: Path) -> Mapping:
    """Read and validate a YAML mapping file.

    Raises:
        MappingError: The file is unreadable or a key is invalid; the message names the key and the fix.

    Example:
        >>> read_mapped(Path("shop.csv"), load_mapping(Path("shop.yaml")))  # doctest: +SKIP
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_MAPPING_BYTES:
            raise MappingError(
                f'Mapping file "{path}" has {size:,} bytes, over the {MAX_MAPPING_BYTES:,} a mapping may have; '
                "point at the mapping (YAML of a few keys), not at data"
            )
        doc = _bounded_yaml(path.read_text(encoding="utf-8"), path)
    except FileNotFoundError:
        raise MappingError(f'Mapping file "{path}" does not exist; check the path') from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).strip().splitlines()[0]
        raise MappingError(f'Mapping file "{path}" is not readable YAML ({reason}); fix the syntax') from None
    return _Parser(path).mapping(doc)


def _bounded_yaml(text: str, path: Path) -> Any:
    """The YAML document of ``text`` (safe types only), refused before it is built when its
    aliases expand it past ``MAX_MAPPING_NODES`` values or make it recursive.

    Raises:
        MappingError: It does.
        yaml.YAMLError: It is not YAML.
    """
    loader = yaml.CSafeLoader(text) if yaml.__with_libyaml__ else yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded = _expanded_size(node)
        if expanded == math.inf:
            raise MappingError(
                f'Mapping file "{path}" holds a value that contains itself through an alias (*name); write it out'
            )
        if expanded > MAX_MAPPING_NODES:
            raise MappingError(
                f'Mapping file "{path}" expands to over {expanded:,} values through its aliases (*name), past the '
                f"{MAX_MAPPING_NODES:,} a mapping may have; write the values out"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> float:
    """How many values ``root`` holds with every alias expanded (each node counted once per
    path to it; inf when a node contains itself), in time linear in the nodes."""
    sizes: dict[int, float] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes and not children_done:
            continue
        children = [] if isinstance(node, yaml.ScalarNode) else [
            child for item in node.value for child in (item if isinstance(item, tuple) else (item,))
        ]  # fmt: skip
        if not children_done:
            sizes[id(node)] = math.inf  # in progress: met again below it, it contains itself
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            if any(sizes.get(id(child)) == math.inf for child in children):
                return math.inf
            continue
        sizes[id(node)] = min(1 + sum(sizes[id(child)] for child in children), math.inf)
        if sizes[id(node)] > MAX_MAPPING_NODES:
            return sizes[id(node)]
    return sizes[id(root)]


def _format_of(path: Path, origin: str) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise MappingError(
            f'Mapping "{origin}": cannot tell the format of "{path}" from its extension; '
            f"set format: to one of {', '.join(sorted(set(FORMATS.values())))}"
        )
    return fmt


class _Parser:
    """Validates a mapping document key by key; every error names the file, the key and the fix."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str, fix: str) -> MappingError:
        return MappingError(f'Mapping "{self.path}": {key} {problem}; {fix}')

    def mapping(self, doc: Any) -> Mapping:
        if not isinstance(doc, dict):
            raise self.error("the file", "is not a YAML mapping of keys", "start with table: and columns:")
        table = self.table(doc.get("table"))
        contract = RAW_TABLES[table].columns
        time_columns = {c for c, dtype in contract.items() if isinstance(dtype, pl.Datetime)}
        allowed = ["table", "format", "csv", "columns", "values", "constants", *sorted(time_columns)]
        allowed += ["event_id"] if table == "events" else []
        for key in doc:
            if key not in allowed:
                raise self.error(str(key), f"is not a mapping key for {table}", f"use {', '.join(allowed)}")
        columns = {c: self.text(s, f"columns.{c}") for c, s in self.section(doc, "columns", contract).items()}
        values = {c: self.value_map(v, f"values.{c}") for c, v in self.section(doc, "values", contract).items()}
        constants = {c: self.scalar(v, f"constants.{c}") for c, v in self.section(doc, "constants", contract).items()}
        times = {c: self.time_hint(doc[c], c, columns) for c in sorted(time_columns) if c in doc}
        derive_id = self.event_id(doc)
        self.check_coverage(table, [*columns, *values, *constants, *(["event_id"] if derive_id else [])])
        csv = self.csv(doc.get("csv", {}))
        return Mapping(
            table=table,
            columns=columns,
            values=values,
            constants=constants,
            times=times,
            derive_id=derive_id,
            format=self.fmt(doc.get("format")),
            delimiter=csv.get("delimiter", ","),
            header=csv.get("header", True),
            origin=str(self.path),
        )

    def table(self, value: Any) -> str:
        if value not in RAW_TABLES:
            problem = "is missing" if value is None else f'"{value}" is not a raw table'
            raise self.error("table", problem, f"use one of {', '.join(RAW_TABLES)}")
        return value

    def section(self, doc: dict, key: str, contract: dict) -> dict:
        section = doc.get(key, {})
        if not isinstance(section, dict):
            raise self.error(key, "must map contract columns to values", f"write it as {key}: {{column: ...}}")
        for column in section:
            if column not in contract:
                raise self.error(f"{key}.{column}", "is not a contract column", f"use one of {', '.join(contract)}")
        return section

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must name a source column, not {value!r}", "quote the column name")
        return value

    def scalar(self, value: Any, key: str) -> Any:
        if isinstance(value, (dict, list)) or value is None:
            raise self.error(key, f"must be a single value, not {value!r}", "give one text, number or timestamp")
        return value

    def value_map(self, spec: Any, key: str) -> ValueMap:
        if not isinstance(spec, dict) or set(spec) != {"source", "map"} or not isinstance(spec["map"], dict):
            raise self.error(key, "must have exactly source: and map:", "write {source: column, map: {from: to}}")
        return ValueMap(self.text(spec["source"], f"{key}.source"), {str(k): str(v) for k, v in spec["map"].items()})

    def time_hint(self, spec: Any, key: str, columns: dict[str, str]) -> TimeHint:
        if key not in columns:
            raise self.error(key, f"gives parse hints, but {key} is not under columns", f"map {key} under columns")
        if not isinstance(spec, dict) or len(spec) != 1 or not set(spec) <= {"unit", "format"}:
            raise self.error(
                key, "must have exactly one of unit: or format:", 'write {unit: ms} or {format: "%d/%m/%Y %H:%M"}'
            )
        if "unit" in spec and spec["unit"] not in UNITS:
            raise self.error(f"{key}.unit", f'"{spec["unit"]}" is not an epoch unit', f"use one of {', '.join(UNITS)}")
        if "format" in spec and not isinstance(spec["format"], str):
            raise self.error(f"{key}.format", "must be a strftime text", 'quote it, e.g. "%Y-%m-%d %H:%M"')
        return TimeHint(unit=spec.get("unit"), format=spec.get("format"))

    def event_id(self, doc: dict) -> str | None:
        if "event_id" not in doc:
            return None
        if doc["event_id"] != "derive":
            raise self.error(
                "event_id", f'must be "derive", not {doc["event_id"]!r}', "map a source id under columns instead"
            )
        return "ev"

    def check_coverage(self, table: str, mapped: list[str]) -> None:
        twice = sorted({c for c in mapped if mapped.count(c) > 1})
        if twice:
            raise self.error(
                twice[0], "is set more than once", "set it in only one of columns, values, constants, event_id"
            )
        schema = RAW_TABLES[table].schema(datetime(2000, 1, 1))
        for column, spec in schema.columns.items():
            if not spec.nullable and column not in mapped:
                hint = " (or set event_id: derive)" if column == "event_id" else ""
                raise self.error(
                    f"columns.{column}", f"is missing: {table} requires it", f"map it to a source column{hint}"
                )

    def csv(self, spec: Any) -> dict:
        if not isinstance(spec, dict) or not set(spec) <= {"delimiter", "header"}:
            raise self.error("csv", "takes only delimiter: and header:", 'write csv: {delimiter: ";", header: true}')
        if "delimiter" in spec and (not isinstance(spec["delimiter"], str) or len(spec["delimiter"]) != 1):
            raise self.error(
                "csv.delimiter", f"must be one character, not {spec['delimiter']!r}", 'quote it, e.g. ";" or "\\t"'
            )
        if "header" in spec and not isinstance(spec["header"], bool):
            raise self.error("csv.header", f"must be true or false, not {spec['header']!r}", "write header: true")
        return spec

    def fmt(self, value: Any) -> str | None:
        if value is not None and value not in FORMATS.values():
            raise self.error("format", f'"{value}" is not a supported format', "use csv, parquet or jsonl")
        return value
