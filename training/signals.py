"""Point-in-time behavior signals, shared by the candidate generators and the baselines.

Each function returns DuckDB SQL over an in-memory connection that holds ``events`` (the
warehouse's cleaned events of human users, copied by ``register_events``) and reads the marts'
Parquet files. A relation of *anchors* has ``user_id`` and ``ts`` (a naive UTC timestamp); a
signal "as of" ``ts`` uses only events strictly before ``ts`` and mart rows dated at or before
it (a mart row dated t summarizes activity strictly before t).
"""

from __future__ import annotations

from datetime import timedelta

import duckdb
import polars as pl

from shoprank import warehouse
from shoprank.config import Settings
from shoprank.features.bm25 import TitleIndex
from shoprank.warehouse import literal, mart

EVENTS = "events"
HISTORY = timedelta(days=7)
# Labels of interactions: a "view" (an item page; most of Taobao's events) counts as a click.
GRADE = "case event_type when 'purchase' then 3 when 'add_to_cart' then 2 else 1 end"


def register_events(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Copy ``user_id, item_id, event_time, event_type`` of the warehouse's cleaned, sessionized
    events (bots excluded) into the temp table ``events``."""
    events = warehouse.read(
        settings.warehouse, "select user_id, item_id, event_time, event_type from intermediate.int_events_sessionized"
    )
    con.register("__events", events)
    con.execute(f"create or replace temp table {EVENTS} as select * from __events")
    con.unregister("__events")


def catalog_index(settings: Settings) -> TitleIndex:
    """The BM25 index of the current catalog titles (``marts.dim_items``)."""
    items = warehouse.read(settings.warehouse, "select item_id, title from marts.dim_items")
    return TitleIndex.build(items["item_id"].to_list(), items["title"].to_list())


def popularity(settings: Settings) -> str:
    """Each item per day boundary (``item_features_daily``): ``item_id, event_timestamp,
    category_path``, ``popularity`` (views, clicks, carts, favorites and purchases in the 7 days
    before) and ``category_rank`` (its rank within its category by 7-day views)."""
    interactions = " + ".join(f"{m}_7d" for m in ("views", "clicks", "carts", "favorites", "purchases"))
    return (
        f"select item_id, event_timestamp, category_path, {interactions} as popularity, "
        f"popularity_rank_in_category as category_rank from read_parquet({literal(mart(settings, 'item_features_daily'))})"
    )


def as_of(anchors: str, source: str) -> str:
    """``anchors`` with ``snapshot``: the latest ``event_timestamp`` of ``source`` at or before
    ``ts`` (null before the first). Snapshot marts hold every active key at each date, so a key
    missing from the anchor's snapshot had no recent activity."""
    return (
        f"select a.*, s.event_timestamp as snapshot from ({anchors}) a "
        f"asof left join (select distinct event_timestamp from ({source})) s on a.ts >= s.event_timestamp"
    )


def recent_items(anchors: str, history: timedelta = HISTORY) -> str:
    """Items each anchor's user touched in ``history`` before ``ts``: ``user_id, ts, item_id,
    interactions, last_seen``."""
    return (
        f"select a.user_id, a.ts, e.item_id, count(*) as interactions, max(e.event_time) as last_seen "
        f"from (select distinct user_id, ts from ({anchors})) a inner join {EVENTS} e on e.user_id = a.user_id "
        f"and e.event_time < a.ts and e.event_time >= a.ts - {interval(history)} group by all"
    )


def neighbours(recent: str, settings: Settings) -> str:
    """Item-CF neighbours of the anchors' recent items in the ``item_pair_features_weekly``
    snapshot as of ``ts``: ``user_id, ts, item_id, similarity`` (cosine similarities summed over
    the recent items)."""
    path = mart(settings, "item_pair_features_weekly")
    pairs = f"read_parquet({literal(path)})"
    cosine = next(name for name in pl.scan_parquet(path).collect_schema().names() if name.startswith("cosine_"))
    return (
        f"select r.user_id, r.ts, p.neighbour_item_id as item_id, sum(p.{cosine}) as similarity "
        f"from ({as_of(recent, f'select event_timestamp from {pairs}')}) r "
        f"inner join {pairs} p on p.item_id = r.item_id and p.event_timestamp = r.snapshot group by all"
    )


def interval(span: timedelta) -> str:
    """A DuckDB interval literal of ``span``."""
    return f"to_microseconds({span // timedelta(microseconds=1)})"
