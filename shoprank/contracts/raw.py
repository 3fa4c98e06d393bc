"""Pandera contracts of the raw tables (DESIGN.md, "Raw data contract").

Each table is declared once, as a Pandera schema; its column order and types are the warehouse
layout of ``raw.<table>``. Timestamps are naive UTC (``Datetime("us")``), the portable form for
DuckDB, Parquet and Spark. Check names double as quarantine reasons, e.g. ``event_type:
unknown_event_type``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

import pandera.polars as pa
import polars as pl

EVENT_TYPES = ("view", "click", "add_to_cart", "favorite", "purchase")
SURFACES = ("search", "recommend", "browse")
EARLIEST = datetime(1990, 1, 1)
CLOCK_TOLERANCE = timedelta(days=1)
TIMESTAMP = pl.Datetime("us")
MAX_ID_CHARS = 256  # an id longer than this is not an id (a pasted document, an attack)
MAX_NUMBER = 1e12  # a price or grade beyond it is a unit or parsing mistake, and its squares overflow marts


def _non_empty() -> pa.Check:
    return pa.Check(lambda d: d.lazyframe.select(pl.col(d.key).str.strip_chars().str.len_chars() > 0), name="empty")


def _short() -> pa.Check:
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key).str.len_chars() <= MAX_ID_CHARS),
        name="too_long",
        error=f"too_long (an id has at most {MAX_ID_CHARS} characters)",
    )


def _printable() -> pa.Check:
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key).str.contains(r"[\x00-\x1f\x7f]").not_()),
        name="control_character",
        error="control_character (an id holds no NUL, tab, newline or other control character)",
    )


def _finite() -> pa.Check:
    """No NaN or infinity (they pass ``ge(0)``: NaN compares above every number in Polars)."""
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key).is_finite()), name="not_finite", error="not_finite (NaN or infinite)"
    )


def _bounded() -> pa.Check:
    """Within ``MAX_NUMBER`` (1e308 is finite, but two of them sum to infinity in a mart)."""
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key).is_finite().not_() | (pl.col(d.key).abs() <= MAX_NUMBER)),
        name="out_of_range",
        error=f"out_of_range (beyond ±{MAX_NUMBER:,.0f}: no price or grade is that large)",
    )


def _number(*checks: pa.Check, nullable: bool = False) -> pa.Column:
    return pa.Column(pl.Float64, [_finite(), _bounded(), *checks], nullable=nullable)


def _sane_time(now: datetime) -> pa.Check:
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key).is_between(EARLIEST, now + CLOCK_TOLERANCE)),
        name="implausible_timestamp",
        error=f"implausible_timestamp (before {EARLIEST:%Y} or more than a day in the future)",
    )


def _one_of(values: tuple[str, ...], name: str) -> pa.Check:
    """Allowed values, ignoring case and surrounding blanks (staging normalizes them)."""
    return pa.Check(
        lambda d: d.lazyframe.select(pl.col(d.key).str.strip_chars().str.to_lowercase().is_in(values)),
        name=name,
        error=f"{name} (allowed: {', '.join(values)})",
    )


def _id(nullable: bool = False) -> pa.Column:
    return pa.Column(pl.Utf8, [_non_empty(), _short(), _printable()], nullable=nullable)


@dataclass(frozen=True)
class RawTable:
    """A raw table: its name, the key that makes a row a duplicate, and its schema.

    ``schema(now)`` builds the Pandera schema with timestamp sanity relative to ``now`` (naive UTC).
    """

    name: str
    key: tuple[str, ...]
    schema: Callable[[datetime], pa.DataFrameSchema]

    @cached_property
    def columns(self) -> dict[str, pl.DataType]:
        """Contract columns in warehouse order with their Polars types (built once: read it only)."""
        return {name: col.dtype.type for name, col in self.schema(datetime(2000, 1, 1)).columns.items()}


def _events(now: datetime) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "event_id": _id(),
            "event_time": pa.Column(TIMESTAMP, _sane_time(now)),
            "user_id": _id(),
            "session_id": _id(nullable=True),
            "event_type": pa.Column(pl.Utf8, _one_of(EVENT_TYPES, "unknown_event_type")),
            "item_id": _id(),
            "request_id": _id(nullable=True),
            "position": pa.Column(pl.Int32, pa.Check.ge(0), nullable=True),
            "price": _number(pa.Check.ge(0), nullable=True),
            "quantity": pa.Column(pl.Int32, pa.Check.ge(1), nullable=True),
        },
        name="events",
    )


def _requests(now: datetime) -> pa.DataFrameSchema:
    search_has_query = pa.Check(
        lambda d: d.lazyframe.select(
            (pl.col("surface").str.strip_chars().str.to_lowercase() != "search")
            | (pl.col("query").str.strip_chars().str.len_chars() > 0).fill_null(False)
        ),
        name="search_without_query",
    )
    return pa.DataFrameSchema(
        {
            "request_id": _id(),
            "request_time": pa.Column(TIMESTAMP, _sane_time(now)),
            "user_id": _id(),
            "session_id": _id(nullable=True),
            "surface": pa.Column(pl.Utf8, _one_of(SURFACES, "unknown_surface")),
            "query": pa.Column(pl.Utf8, nullable=True),
            "item_id": _id(),
            "position": pa.Column(pl.Int32, pa.Check.ge(0)),
        },
        checks=[search_has_query],
        name="requests",
    )


def _items(now: datetime) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "item_id": _id(),
            "title": pa.Column(pl.Utf8, nullable=True),
            "category_path": _id(nullable=True),
            "brand": pa.Column(pl.Utf8, nullable=True),
            "price": _number(pa.Check.ge(0), nullable=True),
            "updated_at": pa.Column(TIMESTAMP, _sane_time(now)),
        },
        name="items",
    )


def _users(now: datetime) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "user_id": _id(),
            "signup_time": pa.Column(TIMESTAMP, _sane_time(now), nullable=True),
            "region": pa.Column(pl.Utf8, nullable=True),
            "email": pa.Column(pl.Utf8, nullable=True),
            "phone": pa.Column(pl.Utf8, nullable=True),
        },
        name="users",
    )


def _judgments(now: datetime) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        {
            "query": _id(),
            "item_id": _id(),
            "grade": _number(pa.Check.ge(0)),
        },
        name="judgments",
    )


def _categories(now: datetime) -> pa.DataFrameSchema:
    not_own_parent = pa.Check(
        lambda d: d.lazyframe.select((pl.col("category_id") != pl.col("parent_id")).fill_null(True)),
        name="own_parent",
    )
    not_in_a_cycle = pa.Check(_outside_cycles, name="parent_cycle")
    return pa.DataFrameSchema(
        {"category_id": _id(), "parent_id": _id(nullable=True), "name": pa.Column(pl.Utf8, nullable=True)},
        checks=[not_own_parent, not_in_a_cycle],
        name="categories",
    )


def _outside_cycles(data) -> pl.LazyFrame:
    """Per row, whether its category is outside every cycle of parents (1 -> 2 -> 1) the rows make."""
    rows = data.lazyframe.select("category_id", "parent_id").collect()
    cycling = in_parent_cycles(dict(zip(rows["category_id"].to_list(), rows["parent_id"].to_list(), strict=True)))
    return pl.LazyFrame({"parent_id": [category not in cycling for category in rows["category_id"].to_list()]})


def in_parent_cycles(parents: dict[str, str | None]) -> set[str]:
    """The categories on a cycle of parents (1 -> 2 -> 1), given each category's parent."""
    cycling: set[str] = set()
    done: set[str] = set()
    for start in parents:
        path: dict[str, None] = {}
        node = start
        while node is not None and node not in done and node not in path:
            path[node] = None
            node = parents.get(node)
        if node in path:  # the walk came back to itself: from there on, a cycle
            cycling.update(list(path)[list(path).index(node) :])
        done.update(path)
    return cycling


RAW_TABLES: dict[str, RawTable] = {
    t.name: t
    for t in (
        RawTable("events", ("event_id",), _events),
        RawTable("requests", ("request_id", "position"), _requests),
        RawTable("items", ("item_id", "updated_at"), _items),
        RawTable("users", ("user_id", "signup_time", "region", "email", "phone"), _users),
        RawTable("judgments", ("query", "item_id", "grade"), _judgments),
        RawTable("categories", ("category_id",), _categories),
    )
}
