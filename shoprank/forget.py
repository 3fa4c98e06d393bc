"""``shoprank forget``: erase users from everything a workdir keeps (the right to erasure).

1. The warehouse: every table with a ``user_id`` column (raw, quarantine, dbt's tables), in one
   transaction, with a tombstone per user in ``raw.forgotten`` (the user id pseudonymized with the
   workdir's salt): ingest skips the rows of a forgotten user, so an old file cannot bring them back.
   On the distributed profile the raw lake is then published again from the warehouse.
2. The marts: ``dbt build --full-refresh``, so that no aggregate counts the users any more.
3. Files: every Parquet, JSON lines and CSV file of the workdir whose rows carry a ``user_id``
   (landing, served logs, rejected events, training frames, evaluations, the simulator's truth) is rewritten
   without the users' rows (to a new file, then renamed over the old one).
4. The online store: every key whose join keys include one of the users (SQLite rows, Redis hashes).

A model trained before the erasure learned from the users' behaviour; it keeps no row of theirs,
but its trees were shaped by them: retrain (``shoprank train``) to have models that never saw them.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from shoprank import warehouse
from shoprank.build import dbt_build
from shoprank.config import Settings
from shoprank.errors import ConfigError
from shoprank.features.online_rows import entity_key_header, key_part
from shoprank.ingest.lake import publish
from shoprank.ingest.tombstones import USER, bury
from shoprank.salt import pii_salt

FILES = (".parquet", ".jsonl", ".csv")
SKIPPED = ("dbt", "search_index")  # dbt's own target and logs; the catalog's text index (no user in it)


@dataclass
class Erasure:
    """What ``forget`` removed, per place (a table, a file, an online table): rows, lines or keys."""

    users: list[str]
    removed: dict[str, int] = field(default_factory=dict)


def forget(settings: Settings, user_ids: Iterable[str], progress: Callable[[str], None] | None = None) -> Erasure:
    """Erase ``user_ids`` from the workdir of ``settings`` (warehouse, marts, files, online store).

    Raises:
        ConfigError: No user id given.
        ShoprankError: The warehouse is held or missing, the build or the online store failed.
    """
    users = sorted({user.strip() for user in user_ids if user.strip()})
    if not users:
        raise ConfigError("Name the users to forget: shoprank forget USER_ID [USER_ID ...]")
    erasure = Erasure(users)
    salt = pii_salt(settings)
    step = progress or (lambda _: None)
    step("warehouse")
    with warehouse.writing(settings.warehouse, "forget"):
        erasure.removed.update(_warehouse(settings.warehouse, users, salt, settings.raw_lake))
    step("marts")
    dbt_build(settings, full_refresh=True)
    step("files")
    erasure.removed.update(_files(settings.workdir, set(users)))
    step("online store")
    erasure.removed.update(erase_online(settings, users))
    return erasure


def _warehouse(path: Path, users: list[str], salt: str, lake: Path | None) -> dict[str, int]:
    """Delete the users' rows from every table with a ``user_id``; record their tombstones; publish
    the raw lake again without them (the distributed profile's build reads it)."""
    removed = {}
    con = warehouse.connect(path)
    try:
        con.begin()
        tables = con.execute(
            "select c.table_schema, c.table_name from information_schema.columns c join information_schema.tables t "
            "using (table_catalog, table_schema, table_name) where c.column_name = ? and t.table_type = 'BASE TABLE' "
            "order by 1, 2",
            [USER],
        ).fetchall()
        for schema, table in tables:
            (count,) = con.execute(
                f'delete from "{schema}"."{table}" where "{USER}" in (select unnest(?))', [users]
            ).fetchone()
            if count:
                removed[f"warehouse {schema}.{table}"] = count
        bury(con, users, salt, datetime.now(UTC).replace(tzinfo=None))
        con.commit()
    except BaseException:
        con.rollback()
        raise
    else:
        if lake is not None:
            publish(con, lake, again=True)
    finally:
        con.close()
    return removed


def _files(workdir: Path, users: set[str]) -> dict[str, int]:
    """Rewrite every file of the workdir holding rows of ``users`` without them."""
    removed = {}
    for path in sorted(workdir.rglob("*")):
        parts = path.relative_to(workdir).parts
        if not path.is_file() or path.suffix not in FILES or parts[0] in SKIPPED or path.name.startswith("warehouse"):
            continue
        count = _rewrite_jsonl(path, users) if path.suffix == ".jsonl" else _rewrite_table(path, users)
        if count:
            removed[f"file {path.relative_to(workdir)}"] = count
    return removed


def _rewrite_table(path: Path, users: set[str]) -> int:
    """Drop the rows of ``users`` from a Parquet or CSV file with a ``user_id`` column."""
    read = pl.read_parquet if path.suffix == ".parquet" else lambda p: pl.read_csv(p, infer_schema=False)
    frame = read(path)
    if USER not in frame.columns:
        return 0
    kept = frame.filter(~pl.col(USER).cast(pl.Utf8).str.strip_chars().is_in(list(users)).fill_null(False))
    if kept.height == frame.height:
        return 0
    temporary = path.with_name(f".{path.name}.forget")
    kept.write_parquet(temporary) if path.suffix == ".parquet" else kept.write_csv(temporary)
    os.replace(temporary, path)
    return frame.height - kept.height


def _rewrite_jsonl(path: Path, users: set[str]) -> int:
    """Drop the lines of ``users`` (their ``user_id`` field) from a JSON lines file."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not _of(line, users)]
    if len(kept) == len(lines):
        return 0
    temporary = path.with_name(f".{path.name}.forget")
    temporary.write_text("".join(kept), encoding="utf-8")
    os.replace(temporary, path)
    return len(lines) - len(kept)


def _of(line: str, users: set[str]) -> bool:
    try:
        row = json.loads(line)
    except ValueError:
        return False
    return isinstance(row, dict) and str(row.get(USER, "")).strip() in users


def erase_online(settings: Settings, users: list[str]) -> dict[str, int]:
    """Delete every online key whose join keys include one of ``users``."""
    from shoprank.features.store import online_store_kind, open_store, redis_client

    store = open_store(settings)
    views = [view for view in store.list_feature_views() if USER in view.join_keys]
    # join keys are serialized in sorted order; ``user_id`` sorts after the others of every view
    parts = [key_part(user) for user in users]
    removed = {}
    if online_store_kind(store) == "redis":
        client = redis_client(store)
        project = store.project.encode()
        for view in views:
            header = entity_key_header(sorted(view.join_keys))
            for part in parts:
                pattern = b"*" + _glob_escaped(part + project) if len(view.join_keys) > 1 else None
                keys = list(client.scan_iter(match=pattern, count=10_000)) if pattern else [header + part + project]
                keys = [key for key in keys if key.startswith(header)]
                if keys and (count := client.unlink(*keys)):
                    removed[f"online {view.name}"] = removed.get(f"online {view.name}", 0) + count
        return removed
    from feast.infra.online_stores.helpers import compute_table_id
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    config = store.config
    versioned = config.registry.enable_online_feature_view_versioning
    with sqlite3.connect(SqliteOnlineStore._get_db_path(config)) as conn:
        for view in views:
            table = compute_table_id(config.project, view, versioned)
            header = entity_key_header(sorted(view.join_keys))
            count = 0
            for part in parts:
                match = "substr(entity_key, 1, ?) = ? and substr(entity_key, -?) = ?"
                arguments = [len(header), header, len(part), part]
                (keys,) = conn.execute(
                    f'select count(distinct entity_key) from "{table}" where {match}', arguments
                ).fetchone()
                conn.execute(f'delete from "{table}" where {match}', arguments)
                count += keys
            if count:
                removed[f"online {view.name}"] = count
    return removed


def _glob_escaped(data: bytes) -> bytes:
    """``data`` matched literally by a Redis glob pattern."""
    return b"".join(b"\\" + bytes([byte]) if byte in b"*?[]\\" else bytes([byte]) for byte in data)
