"""``shoprank features status``: what each online view holds, checked against what the registry
says was materialized.

The registry's intervals say how far a view was materialized; the view's mart says which entities
that covers and how many rows are still pending. That alone trusts the registry: a Redis restarted
empty, a dropped SQLite table or a store refilled elsewhere read "materialized" all the same. So
the store itself is asked too: what it holds for the view (SQLite: the entities in the view's
table, or that the table is missing; Redis: the hashes of the view's entity key, shared by the
views of that entity) and whether a sample of the newest materialized entities is there. A view
holding fewer entities than the registry says, or missing sampled ones, is flagged with the fix.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import duckdb
from feast import FeatureStore, FeatureView
from feast.infra.online_stores.helpers import compute_table_id

from shoprank.config import Settings
from shoprank.features import online_rows
from shoprank.features.materialize import (
    EPOCH,
    Source,
    duckdb_connection,
    merged,
    naive,
    online_views,
    view_source,
)
from shoprank.features.store import online_store_kind, open_store, redis_client

SAMPLE = 50  # newest materialized entities looked up in the store, per view


@dataclass(frozen=True)
class ViewStatus:
    """What a view holds online.

    Attributes:
        view: Feature view name.
        materialized_until: End of the last materialized interval (None: never materialized).
        newest_value_at: Event time of the newest value materialized (None: nothing online).
        entities: Entity keys the registry's intervals cover (of the view's mart).
        pending_rows: Mart rows newer than ``materialized_until``, which the next run considers.
        stored: What the store holds: SQLite, the view's entities; Redis, the hashes of its
            entity key (None: its table is missing).
        sampled: Newest materialized entities looked up in the store.
        present: How many of those it holds.
    """

    view: str
    materialized_until: datetime | None
    newest_value_at: datetime | None
    entities: int
    pending_rows: int
    stored: int | None
    sampled: int
    present: int

    @property
    def problem(self) -> str | None:
        """How the store disagrees with the registry, and the fix; None when it agrees."""
        fix = f'refill it with "shoprank features materialize --rebuild --view {self.view}"'
        if self.stored is None:
            return f"its online table is missing; {fix}"
        if self.stored < self.entities:
            return f"the store holds {self.stored:,} of the {self.entities:,} entities materialized; {fix}"
        if self.present < self.sampled:
            return f"{self.sampled - self.present} of {self.sampled} newest materialized entities are missing; {fix}"
        return None


def online_status(settings: Settings, sample: int = SAMPLE) -> list[ViewStatus]:
    """What each online view holds, per the registry and its mart, and per the store itself.

    Raises:
        FeatureStoreError: A view's mart is missing or mistyped, or the store is unreachable.
    """
    store = open_store(settings)
    held, statuses = _held_in(store), []
    with duckdb_connection() as con:
        for view in online_views(store, None):
            source = view_source(store, view)
            source.columns(con)  # checks the mart's columns and types
            ts = source.event_time
            online, bounds = _covered(view, ts)
            until = max((stop for _, stop in merged(view.materialization_intervals)), default=None)
            [(newest, entities, pending)] = con.execute(
                f"SELECT max({ts}) FILTER ({online}), count(DISTINCT ({source.partition})) FILTER ({online}), "
                f"count(*) FILTER ({ts} > ?) FROM {source.relation}",
                [*bounds, *bounds, naive(until or EPOCH)],
            ).fetchall()
            keys = newest_keys(con, view, source, sample)
            stored, present = held(view, keys)
            newest = newest and newest.replace(tzinfo=UTC)
            statuses.append(ViewStatus(view.name, until, newest, entities, pending, stored, len(keys), present))
    return statuses


def newest_keys(con: duckdb.DuckDBPyConnection, view: FeatureView, source: Source, n: int) -> list[bytes]:
    """The serialized entity keys (as Feast stores them) of the ``n`` newest entities the view's
    materialized intervals cover: each was written online by the run of its interval."""
    ts = source.event_time
    online, bounds = _covered(view, ts)
    data = con.sql(
        f"SELECT {source.partition} FROM {source.relation} WHERE {online} "
        f"GROUP BY ALL ORDER BY max({ts}) DESC, {source.partition} LIMIT {int(n)}",
        params=bounds,
    ).to_arrow_table()
    columns = [(name, kind, data.column(name).combine_chunks()) for name, kind in source.keys]
    return online_rows.entity_keys(columns).to_pylist() if data.num_rows else []


def _covered(view: FeatureView, ts: str) -> tuple[str, list[datetime]]:
    """A SQL condition on ``ts`` that holds in the view's materialized intervals, and its parameters."""
    intervals = merged(view.materialization_intervals)
    condition = " OR ".join(f"{ts} BETWEEN ? AND ?" for _ in intervals) or "false"
    return f"({condition})", [naive(moment) for interval in intervals for moment in interval]


def _held_in(store: FeatureStore) -> Callable[[FeatureView, list[bytes]], tuple[int | None, int]]:
    """What tells, per view, what the store holds for it (None: its SQLite table is missing) and
    how many of some serialized entity keys it holds."""
    if online_store_kind(store) == "sqlite":
        return partial(_held_sqlite, store)
    client, project = redis_client(store), store.project.encode()
    hashes = list(client.scan_iter(match=b"*" + project, count=10_000))  # once: every view counts from it
    return partial(_held_redis, client, project, hashes)


def _held_sqlite(store: FeatureStore, view: FeatureView, keys: list[bytes]) -> tuple[int | None, int]:
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    config = store.config
    table = compute_table_id(config.project, view, config.registry.enable_online_feature_view_versioning)
    with sqlite3.connect(f"file:{SqliteOnlineStore._get_db_path(config)}?mode=ro", uri=True) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", [table]).fetchone():
            return None, 0
        [(stored,)] = conn.execute(f'SELECT count(DISTINCT entity_key) FROM "{table}"').fetchall()
        marks = ",".join("?" * len(keys))
        [(present,)] = conn.execute(
            f'SELECT count(DISTINCT entity_key) FROM "{table}" WHERE entity_key IN ({marks})', keys
        ).fetchall()
    return stored, present


def _held_redis(client, project: bytes, hashes: list[bytes], view: FeatureView, keys: list[bytes]) -> tuple[int, int]:
    header = online_rows.entity_key_header(sorted(column.name for column in view.entity_columns))
    # a key is its entity key (the key count and names first: a header no other key set shares) + the project
    stored = sum(key.startswith(header) for key in hashes)
    pipeline = client.pipeline(transaction=False)
    for key in keys:
        pipeline.hexists(key + project, f"_ts:{view.name}")
    return stored, sum(pipeline.execute())
