"""Online materialization: Feast's ``materialize`` beside shoprank's, into SQLite and into Redis.

    python benchmarks/materialize.py [--views VIEW ...] [--profiles embedded production]

On the ``medium`` shop (made with ``shoprank pipeline --preset medium`` when absent), both write the
same views over the same interval, a view's first materialization ``[end - ttl, end]`` with ``end``
the newest event time in the marts, each into a fresh Feast project and in its own process: seconds
are the materialization alone, peak MB the whole process. Then the two projects are compared: every
SQLite row byte for byte, every Redis hash field by field, and ``get_online_features`` on a sample.
Target of the issue: at least 10x Feast. The production profile (Redis) needs Redis and PostgreSQL;
``--profiles embedded`` measures SQLite alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

HERE = Path(__file__).resolve().parent
MEDIUM = HERE / "work" / "medium"
WORK = HERE / "work" / "materialize"
VIEWS = ["user_features", "item_features", "user_category_features"]
STORES = {"embedded": "sqlite", "production": "redis"}
SAMPLE = 1_000  # entities per view read back through get_online_features
TARGET = 10


def main(views: list[str], profiles: list[str]) -> None:
    from feast import FeatureStore

    from shoprank.config import Settings
    from shoprank.features.store import feast, open_store, write_config

    if not (MEDIUM / "marts").is_dir():
        shoprank = str(Path(sys.executable).with_name("shoprank"))
        subprocess.run([shoprank, "--workdir", str(MEDIUM), "pipeline", "--preset", "medium"], check=True)
    WORK.mkdir(parents=True, exist_ok=True)
    for name in ("registry.db", "online_store.db"):
        (WORK / name).unlink(missing_ok=True)
    if not (WORK / "marts").exists():
        (WORK / "marts").symlink_to(MEDIUM / "marts")
    template = Settings(workdir=WORK, project="bench_template")
    feast(template, "apply")
    store = open_store(template)
    definitions = [*store.list_entities(), *store.list_feature_views()]
    end = _newest(store, views)
    print(f"Medium shop, views {', '.join(views)}, interval [end - ttl, {end:%Y-%m-%d %H:%M}] UTC\n")

    lines, notes = [], []
    for profile in profiles:
        runs = {}
        for who in ("feast", "ours"):
            settings = replace(template, profile=profile, project=f"bench_{who}_{uuid4().hex[:6]}")
            FeatureStore(repo_path=str(WORK), fs_yaml_file=write_config(settings)).apply(definitions)
            runs[who] = (settings, _child(who, settings, end, views))
        try:
            counts, identical = _compare(runs["feast"][0], runs["ours"][0], views)
            lines += _rows(STORES[profile], runs, counts, identical, views)
        finally:
            if profile == "production":
                for settings, _ in runs.values():
                    _drop(settings)
        if profile == "embedded":
            floor = _sqlite_floor(runs["feast"][0].project, views)
            feast_seconds = sum(runs["feast"][1][0][view][0] for view in views)
            notes.append(
                f"SQLite alone: {floor:.2f} s to insert the same rows (INSERT ... SELECT from an in-memory copy into "
                f"empty copies of the tables, no Python), so no writer through SQLite's inserts gets past "
                f"{feast_seconds / floor:.1f}x Feast here."
            )
    print(_table(lines))
    print(
        f"\nrows Feast: entity rows read back from Feast's project. identical: every SQLite row byte for byte / "
        f"every Redis hash field by field and as Redis stores it (DUMP), and get_online_features of {SAMPLE:,} "
        "entities per view."
    )
    for note in notes:
        print(note)
    print(
        f"Target: at least {TARGET}x Feast ({', '.join(f'{line[0]} {line[8]}' for line in lines if line[1] == 'total')})."
    )


def _child(who: str, settings, end: datetime, views: list[str]) -> tuple[dict, float]:
    """Materialize in a child process; return per-view seconds (and our row counts) and peak MB."""
    command = [sys.executable, __file__, "--child", who, settings.profile, settings.project, end.isoformat(), *views]
    run = measure(command, {**os.environ, **settings.env()})
    result = next(line for line in run.output.splitlines() if line.startswith("RESULT "))
    return json.loads(result.removeprefix("RESULT ")), run.peak_mb


def child(who: str, profile: str, project: str, end: str, views: list[str]) -> None:
    """In the child process: one materialization, timed per view, printed as a RESULT line."""
    import time

    from shoprank.config import Settings
    from shoprank.features.materialize import materialize
    from shoprank.features.store import open_store

    settings = Settings(workdir=WORK, profile=profile, project=project)
    moment = datetime.fromisoformat(end)
    seconds = {}
    if who == "ours":
        result = materialize(settings, end=moment, views=views)
        seconds = {run.view: [run.seconds, run.rows] for run in result.views}
    else:
        store = open_store(settings)
        for view in views:
            started = time.perf_counter()
            store.materialize(moment - store.get_feature_view(view).ttl, moment, feature_views=[view])
            seconds[view] = [time.perf_counter() - started, None]
    print("RESULT " + json.dumps(seconds))


def _compare(feast_settings, our_settings, views: list[str]) -> tuple[dict[str, int], bool]:
    """Entity rows of each view in Feast's project, and whether both projects hold the same rows."""
    from shoprank.features.store import open_store

    theirs, ours = open_store(feast_settings), open_store(our_settings)
    if feast_settings.profile == "embedded":
        counts, identical = _compare_sqlite(WORK / "online_store.db", theirs.project, ours.project, views)
    else:
        counts, identical = _compare_redis(theirs, ours, views)
    return counts, identical and all(_read_back(theirs, view) == _read_back(ours, view) for view in views)


def _compare_sqlite(path: Path, theirs: str, ours: str, views: list[str]) -> tuple[dict[str, int], bool]:
    counts, identical = {}, True
    with sqlite3.connect(path) as conn:
        for view in views:
            a, b = f"{theirs}_{view}", f"{ours}_{view}"
            [(entities, rows_a, rows_b, only_a, only_b)] = conn.execute(
                f"select (select count(distinct entity_key) from {a}), (select count(*) from {a}), "
                f"(select count(*) from {b}), (select count(*) from (select * from {a} except select * from {b})), "
                f"(select count(*) from (select * from {b} except select * from {a}))"
            ).fetchall()
            counts[view] = entities
            identical &= rows_a == rows_b and only_a == only_b == 0
    return counts, identical


def _sqlite_floor(project: str, views: list[str]) -> float:
    """Seconds SQLite alone takes to insert a project's rows of the views into empty copies of their
    tables (Feast's schema and indexes; key order; a transaction per view), read from memory."""
    import time

    seconds = 0.0
    conn = sqlite3.connect(WORK / "online_store.db", isolation_level=None)
    try:
        conn.execute("ATTACH ':memory:' AS memory")
        for view in views:
            table, copy = f"{project}_{view}", f"floor_{view}"
            conn.execute(f'CREATE TABLE memory.rows AS SELECT * FROM "{table}" ORDER BY entity_key, feature_name')
            for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL", [table]):
                conn.execute(sql.replace(table, copy))
            started = time.perf_counter()
            conn.execute("BEGIN")
            conn.execute(f'INSERT INTO "{copy}" SELECT * FROM memory.rows')  # not SQLite's raw copy: no indexes there
            conn.execute("COMMIT")
            seconds += time.perf_counter() - started
            conn.execute(f'DROP TABLE "{copy}"')
            conn.execute("DROP TABLE memory.rows")
    finally:
        conn.close()
    return seconds


def _compare_redis(theirs, ours, views: list[str]) -> tuple[dict[str, int], bool]:
    client = _redis(ours)
    their_keys = list(client.scan_iter(match=b"*" + theirs.project.encode(), count=10_000))
    our_keys = list(client.scan_iter(match=b"*" + ours.project.encode(), count=10_000))
    counts = dict.fromkeys(views, 0)
    identical = len(their_keys) == len(our_keys)
    for start in range(0, len(their_keys), 10_000):
        batch = their_keys[start : start + 10_000]
        mine = [key[: -len(theirs.project)] + ours.project.encode() for key in batch]
        with client.pipeline(transaction=False) as pipe:
            for key in batch + mine:
                pipe.hgetall(key)
                pipe.dump(key)
            replies = pipe.execute()
        hashes, dumps = replies[::2], replies[1::2]
        identical &= hashes[: len(batch)] == hashes[len(batch) :] and dumps[: len(batch)] == dumps[len(batch) :]
        for fields in hashes[: len(batch)]:
            for view in views:
                counts[view] += f"_ts:{view}".encode() in fields
    return counts, identical


def _read_back(store, view: str) -> list:
    """get_online_features of a sample of the view's entities, NaN-safe for comparing."""
    import duckdb

    from shoprank.features.store import source_file

    fv = store.get_feature_view(view)
    keys, path = [column.name for column in fv.entity_columns], source_file(fv.batch_source, store.config.repo_path)
    frame = duckdb.sql(
        f"select distinct {', '.join(keys)} from read_parquet('{path}') order by hash({', '.join(keys)}) limit {SAMPLE}"
    ).df()
    online = store.get_online_features([f"{view}:{f.name}" for f in fv.features], frame.to_dict("records")).to_dict()
    return [[None if isinstance(v, float) and math.isnan(v) else v for v in online[f.name]] for f in fv.features]


def _rows(kind: str, runs: dict, counts: dict[str, int], identical: bool, views: list[str]) -> list[list]:
    """Table rows of one store: each view, then the total with peak memory and the comparison."""
    (_, (feast, feast_mb)), (_, (ours, our_mb)) = runs["feast"], runs["ours"]
    figures = {view: (counts[view], ours[view][1], feast[view][0], ours[view][0]) for view in views}
    figures["total"] = tuple(sum(column) for column in zip(*figures.values(), strict=True))
    rows = []
    for view, (feast_rows, our_rows, feast_s, our_s) in figures.items():
        rows.append(
            [kind, view, f"{feast_rows:,}", f"{our_rows:,}", f"{feast_s:.1f}", f"{our_s:.2f}"]
            + [f"{feast_rows / feast_s:,.0f}", f"{our_rows / our_s:,.0f}", f"{feast_s / our_s:.1f}x"]
            + ([f"{feast_mb:,.0f}", f"{our_mb:,.0f}", "yes" if identical else "NO"] if view == "total" else [""] * 3)
        )
    return rows


def _table(rows: list[list]) -> str:
    headers = ["store", "view", "rows Feast", "rows ours", "Feast s", "ours s", "Feast rows/s", "ours rows/s"]
    headers += ["speed-up", "Feast MB", "ours MB", "identical"]
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [headers, *rows]
    )


def _newest(store, views: list[str]) -> datetime:
    import duckdb

    from shoprank.features.store import source_file

    paths = [str(source_file(store.get_feature_view(view).batch_source, store.config.repo_path)) for view in views]
    return duckdb.sql(f"select max(event_timestamp) from read_parquet({paths})").fetchall()[0][0]


def _redis(store):
    from redis import Redis

    host, port = store.config.online_store.connection_string.split(":")
    return Redis(host, int(port))


def _drop(settings) -> None:
    """Delete a production project: its Redis keys and its registry entries."""
    from shoprank.features.store import drop_project, open_store

    drop_project(open_store(settings))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6:])
    else:
        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--views", nargs="+", default=VIEWS)
        parser.add_argument("--profiles", nargs="+", default=list(STORES), choices=list(STORES))
        arguments = parser.parse_args()
        main(arguments.views, arguments.profiles)
