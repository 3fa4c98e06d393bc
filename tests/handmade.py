"""A hand-made workdir: a warehouse and marts holding only the rows a test writes, in the columns
that the label sources and baselines read (``training.signals``, ``training.baselines``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from shoprank.config import Settings

MEASURES = ("views_7d", "clicks_7d", "carts_7d", "favorites_7d", "purchases_7d")


def hand_shop(
    workdir: Path,
    events: list[tuple[str, str, datetime, str]],
    item_days: list[dict] | None = None,
    pairs: list[tuple[str, str, datetime, float]] | None = None,
    titles: dict[str, str] | None = None,
) -> Settings:
    """Write a workdir and return its settings.

    Args:
        workdir: An empty folder.
        events: ``(user_id, item_id, event_time, event_type)``.
        item_days: ``item_features_daily`` rows: ``item_id``, ``event_timestamp``,
            ``category_path``, ``popularity_rank_in_category`` and any of ``MEASURES`` (default 0).
        pairs: ``item_pair_features_weekly`` rows ``(item_id, neighbour_item_id, event_timestamp, cosine_28d)``.
        titles: ``item_id -> title`` of ``marts.dim_items``.
    """
    settings = Settings(workdir=workdir)
    settings.marts.mkdir(parents=True)
    frames = {
        "events": pl.DataFrame(
            events,
            schema={"user_id": pl.Utf8, "item_id": pl.Utf8, "event_time": pl.Datetime("us"), "event_type": pl.Utf8},
            orient="row",
        ),
        "items": pl.DataFrame(
            list((titles or {}).items()), schema={"item_id": pl.Utf8, "title": pl.Utf8}, orient="row"
        ),
    }
    with duckdb.connect(str(settings.warehouse)) as con:
        con.execute("create schema intermediate; create schema marts")
        con.register("events", frames["events"])
        con.register("items", frames["items"])
        con.execute("create table intermediate.int_events_sessionized as select * from events")
        con.execute("create table marts.dim_items as select * from items")
    days = pl.DataFrame(
        [{**dict.fromkeys(MEASURES, 0), **row} for row in item_days or []],
        schema={
            "item_id": pl.Utf8,
            "event_timestamp": pl.Datetime("us"),
            "category_path": pl.Utf8,
            "popularity_rank_in_category": pl.Int64,
            **dict.fromkeys(MEASURES, pl.Int64),
        },
    )
    days.write_parquet(settings.marts / "item_features_daily.parquet")
    pl.DataFrame(
        pairs or [],
        schema={
            "item_id": pl.Utf8,
            "neighbour_item_id": pl.Utf8,
            "event_timestamp": pl.Datetime("us"),
            "cosine_28d": pl.Float64,
        },
        orient="row",
    ).write_parquet(settings.marts / "item_pair_features_weekly.parquet")
    return settings
