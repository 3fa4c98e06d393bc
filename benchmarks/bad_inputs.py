"""Bad-input census: every kind of bad input an attacker or a careless user gives `shoprank ingest`,
fed to the real CLI on a scratch workdir, and what became of it.

    python benchmarks/bad_inputs.py [--only NAME ...]

Each kind runs ``shoprank --workdir W ingest ...`` in a fresh ``W`` (after the runs it needs first,
e.g. a good file the bad one conflicts with) and is classified:

- ``refused``: exit 1 and one line ``Error: ...`` naming the input (or click's usage error, exit 2),
  and the warehouse unchanged;
- ``quarantined``: exit 0 and the bad rows in ``quarantine.<table>`` with the reason the kind expects
  (the good rows beside them accepted);
- ``silent``: exit 0 and nothing quarantined (the bad input was accepted, or dropped without a word);
- ``crash``: a traceback, another exit code, a refusal in several lines or one that wrote rows, a
  quarantine with another reason, or a run past ``TIMEOUT`` s.

Goal: every kind ``refused`` or ``quarantined``, 0 ``silent``, 0 ``crash``. The table also gives each
run's wall time and peak memory (hostile mapping files must be refused in under a second, in bounded
memory). The posted-event side (``/v1/events``) goes through the same raw contracts; its hostile bodies
are tests (``tests/e2e/test_hostile_clients.py``). Figures: ``benchmarks/README.md``, "Bad-input census".
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

SHOPRANK = str(Path(sys.executable).with_name("shoprank"))
TIMEOUT = 60.0
GOOD = {
    "events": {
        "event_id": "e1", "event_time": "2025-06-01 10:00:00", "user_id": "u1", "session_id": "s1",
        "event_type": "view", "item_id": "i1", "request_id": "r1", "position": "0", "price": "9.5", "quantity": "1",
    },
    "requests": {
        "request_id": "r1", "request_time": "2025-06-01 10:00:00", "user_id": "u1", "session_id": "s1",
        "surface": "search", "query": "red shoes", "item_id": "i1", "position": "3",
    },
    "items": {"item_id": "i1", "title": "Red Shoes", "category_path": "A > B", "brand": "Acme", "price": "10", "updated_at": "2025-01-01"},
    "users": {"user_id": "u1", "signup_time": "2024-01-01", "region": "EU", "email": "a@b.c", "phone": "555 0100"},
    "judgments": {"query": "angle bracket", "item_id": "i1", "grade": "2.67"},
    "categories": {"category_id": "12", "parent_id": "1", "name": "Shoes"},
}  # fmt: skip


def rows(table: str, n: int = 3, **changes: object) -> list[dict]:
    """``n`` valid rows of ``table`` with distinct keys; ``changes`` set on the first."""
    out = []
    for i in range(n):
        row = dict(GOOD[table])
        key = next(iter(row))
        row[key] = f"{row[key]}{i}"
        out.append(row)
    out[0].update(changes)
    return out


def csv(folder: Path, name: str, records: list[dict], **options: object) -> str:
    path = folder / name
    pl.DataFrame(records, schema={k: pl.Utf8 for k in records[0]}).write_csv(path, **options)
    return str(path)


def parquet(folder: Path, name: str, frame: pl.DataFrame) -> str:
    path = folder / name
    frame.write_parquet(path)
    return str(path)


def text(folder: Path, name: str, content: str | bytes) -> str:
    path = folder / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def typed_events(**columns: list) -> pl.DataFrame:
    """Three valid events as typed Parquet columns, ``columns`` replaced."""
    frame = pl.DataFrame(rows("events"), schema={k: pl.Utf8 for k in GOOD["events"]}).with_columns(
        pl.col("price").cast(pl.Float64), pl.col("position").cast(pl.Int64), pl.col("quantity").cast(pl.Int64)
    )
    return frame.with_columns(pl.Series(name, values) for name, values in columns.items())


def laughs(levels: int) -> str:
    names = [f"l{level}" for level in range(levels + 1)]
    lines = [f'{names[0]}: &{names[0]} ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{name}: &{name} [{', '.join([f'*{before}'] * 9)}]" for before, name in itertools.pairwise(names)]
    return "table: events\n" + "\n".join(lines) + "\n"


MAPPING = (
    "table: events\ncolumns: {user_id: visitor, item_id: sku, event_time: ts, event_type: action}\nevent_id: derive\n"
)
MAPPED_CSV = "visitor,sku,ts,action\nv1,s1,2025-06-01 10:00:00,view\n"


def mapped(folder: Path, mapping: str) -> list[str]:
    return [text(folder, "log.csv", MAPPED_CSV), "--mapping", text(folder, "m.yaml", mapping)]


@dataclass(frozen=True)
class Kind:
    """A bad input: ``build`` writes it under a folder and gives the ``ingest`` arguments of each run
    (runs before the last prepare the workdir); a quarantine must give ``reason``."""

    build: Callable[[Path], list[list[str]]]
    reason: str = ""
    as_nobody: bool = False  # root reads every folder: the run is made as nobody (``setpriv``)


def field(table: str, reason: str, **change: object) -> Kind:
    """One CSV of ``table`` whose first row carries ``change``."""
    return Kind(lambda d: [[csv(d, f"{table}.csv", rows(table, **change))]], reason)


def one(build: Callable[[Path], list[str]], reason: str = "") -> Kind:
    return Kind(lambda d: [build(d)], reason)


def conflict_with_stored(d: Path) -> list[list[str]]:
    (d / "later").mkdir()
    return [[csv(d, "events.csv", rows("events"))], [csv(d / "later", "events.csv", rows("events", user_id="u9"))]]


def cycle_across_files(d: Path) -> list[list[str]]:
    (d / "a").mkdir()
    (d / "b").mkdir()
    return [
        [csv(d / "a", "categories.csv", [{"category_id": "1", "parent_id": "2", "name": "a"}])],
        [csv(d / "b", "categories.csv", [{"category_id": "2", "parent_id": "1", "name": "b"}])],
    ]


def unreadable_folder(d: Path) -> list[list[str]]:
    folder = d / "landing"
    folder.mkdir()
    csv(folder, "events.csv", rows("events"))
    folder.chmod(0)
    return [[str(folder)]]


def symlink_loop(d: Path) -> list[list[str]]:
    (d / "loop.csv").symlink_to(d / "loop.csv")
    return [[str(d / "loop.csv"), "--format", "taobao"]]


KINDS: dict[str, Kind] = {
    # files the readers cannot take as they are
    "semicolon CSV": one(lambda d: [csv(d, "events.csv", rows("events"), separator=";")]),
    "UTF-16 CSV": one(lambda d: [text(d, "events.csv", pl.DataFrame(rows("events")).write_csv().encode("utf-16"))]),
    "Latin-1 CSV": one(lambda d: [text(d, "items.csv", "item_id,title,category_path,brand,price,updated_at\ni1,Caf\xe9 cr\xe8me,A,B,1,2025-01-01\n".encode("latin-1"))]),
    "repeated CSV header": one(lambda d: [text(d, "events.csv", "event_id,event_time,user_id,session_id,event_type,item_id,session_id\ne1,2025-06-01 12:00:00,u1,s1,view,i1,s2\n")]),
    "CSV missing a required column": one(lambda d: [text(d, "events.csv", "event_id,event_time,user_id,event_type\ne1,2025-06-01 12:00:00,u1,view\n")], "item_id: not_nullable"),
    "CSV with a ragged row": one(lambda d: [text(d, "events.csv", "event_id,event_time,user_id,session_id,event_type,item_id\ne1,2025-06-01 12:00:00,u1,s1,view,i1,extra,more\n")]),
    "CSV with an unclosed quote": one(lambda d: [text(d, "events.csv", 'event_id,event_time,user_id,session_id,event_type,item_id\ne1,2025-06-01 12:00:00,"u1,s1,view,i1\n')]),
    "zero-byte CSV": one(lambda d: [text(d, "events.csv", "")]),
    "binary garbage as CSV": one(lambda d: [text(d, "events.csv", bytes(range(256)) * 40)]),
    "NUL byte in an id": one(lambda d: [text(d, "events.csv", ",".join(GOOD["events"]) + "\ne1\x00,2025-06-01 10:00:00,u1,s1,view,i1,r1,0,1,1\n")], "control_character"),
    "newline in an id": field("users", "control_character", user_id="u\n1"),
    "truncated Parquet": one(lambda d: [text(d, "events.parquet", Path(parquet(d, "whole.parquet", typed_events())).read_bytes()[:300])]),
    "CSV named .parquet": one(lambda d: [text(d, "events.parquet", pl.DataFrame(rows("events")).write_csv())]),
    "Parquet given as --format taobao": one(lambda d: [parquet(d, "UserBehavior.csv", typed_events()), "--format", "taobao"]),
    "Parquet list column": one(lambda d: [parquet(d, "events.parquet", typed_events(user_id=[["u1", "u2"]] * 3))]),
    "Parquet struct column": one(lambda d: [parquet(d, "events.parquet", typed_events(user_id=[{"a": "u1", "b": "i1"}] * 3))]),
    "JSONL with a broken line": one(lambda d: [text(d, "events.jsonl", json.dumps(rows("events")[0]) + "\n{\"event_id\": \n")]),
    "JSONL nested object": one(lambda d: [text(d, "events.jsonl", json.dumps({**rows("events")[0], "user_id": {"id": "u1"}}) + "\n")]),
    "CSV of 100,000 columns": one(lambda d: [text(d, "events.csv", ",".join(f"c{i}" for i in range(100_000)) + "\n" + ",".join("1" * 100_000) + "\n")]),
    "gzip file named .csv": one(lambda d: [text(d, "events.csv", gzip.compress(pl.DataFrame(rows("events")).write_csv().encode()))]),
    "JSON array as JSONL": one(lambda d: [text(d, "events.jsonl", json.dumps(rows("events")))]),
    "JSONL mixing types in a column": one(lambda d: [text(d, "events.jsonl", "\n".join(json.dumps({**r, "price": p}) for r, p in zip(rows("events"), [1.5, "abc", True], strict=True)))], "price: not a number"),
    "/etc/passwd linked as events.csv": Kind(lambda d: [[str((d / "events.csv").symlink_to("/etc/passwd") or d / "events.csv")]]),
    "contract CSV as --format taobao": one(lambda d: [csv(d, "UserBehavior.csv", rows("events")), "--format", "taobao"]),
    "contract CSV as --format diginetica": one(lambda d: [csv(d, "train-item-views.csv", rows("events")), "--format", "diginetica"]),
    "spreadsheet file": one(lambda d: [text(d, "events.xlsx", b"PK\x03\x04" + bytes(200))]),
    "unknown file name": one(lambda d: [csv(d, "export.csv", rows("events"))]),
    "unknown --format": one(lambda d: [csv(d, "events.csv", rows("events")), "--format", "amazon"]),
    "missing path": one(lambda d: [str(d / "nowhere.csv")]),
    "empty folder": one(lambda d: [str(d)]),
    "device /dev/zero": one(lambda d: ["/dev/zero"]),
    "symlink loop": Kind(symlink_loop),
    "unreadable folder": Kind(unreadable_folder, as_nobody=True),
    # values the contracts refuse
    "NaN price": field("events", "not_finite", price="NaN"),
    "+inf price": field("events", "not_finite", price="inf"),
    "-inf price": field("events", "not_finite", price="-inf"),
    "NaN price (Parquet float)": one(lambda d: [parquet(d, "events.parquet", typed_events(price=[float("nan"), 1.0, 2.0]))], "not_finite"),
    "inf item price": field("items", "not_finite", price="inf"),
    "inf judgment grade": field("judgments", "not_finite", grade="inf"),
    "negative judgment grade": field("judgments", "greater_than_or_equal_to", grade="-1"),
    "boolean price (Parquet)": one(lambda d: [parquet(d, "events.parquet", typed_events(price=[True, False, None]))], "not a number"),
    "price as text": field("items", "not a number", price="free"),
    "price 1e308 (two sum to infinity)": field("items", "out_of_range", price="1e308"),
    "position past int64": field("events", "not an integer", position="99999999999999999999"),
    "negative price": field("events", "greater_than_or_equal_to", price="-3"),
    "negative position": field("events", "greater_than_or_equal_to", position="-1"),
    "quantity 0": field("events", "greater_than_or_equal_to", quantity="0"),
    "fractional quantity": field("events", "not an integer", quantity="1.5"),
    "unknown event_type": field("events", "unknown_event_type", event_type="pageview"),
    "null item_id": field("events", "not_nullable", item_id=None),
    "blank user_id": field("events", "empty", user_id="   "),
    "257-character id": field("events", "too_long", item_id="i" * 257),
    "10 MB id": field("requests", "too_long", request_id="r" * 10_000_000),
    "event in 2099": field("events", "implausible_timestamp", event_time="2099-01-01"),
    "event in 1970": field("events", "implausible_timestamp", event_time="1970-01-01"),
    "timestamp 'yesterday'": field("events", "not a timestamp", event_time="yesterday"),
    "signup in 2999": field("users", "implausible_timestamp", signup_time="2999-01-01"),
    "unknown surface": field("requests", "unknown_surface", surface="email"),
    "search without query": field("requests", "search_without_query", query=None),
    "item without updated_at": field("items", "not_nullable", updated_at=None),
    "category its own parent": one(lambda d: [csv(d, "categories.csv", [{"category_id": "1", "parent_id": "1", "name": "a"}])], "own_parent"),
    "category cycle 1>2>1": one(lambda d: [csv(d, "categories.csv", [{"category_id": "1", "parent_id": "2", "name": "a"}, {"category_id": "2", "parent_id": "1", "name": "b"}])], "parent_cycle"),
    "category cycle across two files": Kind(cycle_across_files, "parent_cycle"),
    "same event_id, other content (one file)": one(lambda d: [csv(d, "events.csv", [*rows("events"), {**rows("events")[0], "user_id": "u9"}])], "conflict"),
    "same event_id, other content (stored)": Kind(conflict_with_stored, "conflict"),
    # mapping files
    "billion-laughs mapping": one(lambda d: mapped(d, laughs(9))),
    "self-referencing mapping": one(lambda d: mapped(d, "table: events\ncolumns: &c {user_id: *c}\n")),
    "5 MB mapping": one(lambda d: mapped(d, MAPPING + "#" * 5_000_000 + "\n")),
    "mapping that is not YAML": one(lambda d: mapped(d, "table: [events\n")),
    "mapping naming a missing column": one(lambda d: mapped(d, MAPPING.replace("sku", "product"))),
    "mapping to a non-contract column": one(lambda d: mapped(d, MAPPING.replace("item_id", "sku_id"))),
    "mapping with an unknown table": one(lambda d: mapped(d, MAPPING.replace("table: events", "table: orders"))),
    "epoch milliseconds read as seconds": one(lambda d: [text(d, "log.csv", "visitor,sku,ts,action\nv1,s1,1748772000000,view\n"), "--mapping", text(d, "m.yaml", MAPPING + "event_time: {unit: s}\n")], "implausible_timestamp"),
    "mapping file missing": one(lambda d: [text(d, "log.csv", MAPPED_CSV), "--mapping", str(d / "nowhere.yaml")]),
}  # fmt: skip


@dataclass
class Outcome:
    kind: str
    verdict: str
    detail: str
    seconds: float
    peak_mb: float


def counts(warehouse: Path) -> dict[str, int]:
    if not warehouse.exists():
        return {}
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_schema in ('raw', 'quarantine') and table_name not like 'ingest%'"
        ).fetchall()
        return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for (t,) in tables}


def reasons(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = con.execute(
            "select table_name from information_schema.tables where table_schema = 'quarantine'"
        ).fetchall()
        found = []
        for (table,) in tables:
            found += [r for (r,) in con.execute(f"select distinct _reason from quarantine.{table}").fetchall()]
        return found


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def run(workdir: Path, args: list[str], as_nobody: bool = False) -> tuple[int | None, str, float, float]:
    """``shoprank ingest args``: exit code (None past the timeout), stderr, seconds, peak MB."""
    err = workdir.parent / ".stderr"
    command = [SHOPRANK, "--workdir", str(workdir), "ingest", *args]
    if as_nobody and os.geteuid() == 0:
        workdir.mkdir(exist_ok=True)
        workdir.chmod(0o777)
        command = NOBODY + command
    start = time.perf_counter()
    with open(err, "w") as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = start + TIMEOUT
        while (status := os.wait4(child.pid, os.WNOHANG))[0] == 0:
            if time.perf_counter() > deadline:
                child.kill()
                status = os.wait4(child.pid, 0)
                return None, err.read_text(), TIMEOUT, status[2].ru_maxrss / 1024
            time.sleep(0.01)
    _, code, usage = status
    return (
        os.waitstatus_to_exitcode(code),
        err.read_text(errors="replace"),
        time.perf_counter() - start,
        usage.ru_maxrss / 1024,
    )


def census(name: str, kind: Kind) -> Outcome:
    scratch = Path(tempfile.mkdtemp(prefix="shoprank-census-", dir="/tmp"))
    scratch.chmod(0o755)
    try:
        inputs = scratch / "in"
        inputs.mkdir()
        workdir = scratch / "w"
        *first, probe = kind.build(inputs)
        for args in first:
            code, stderr, *_ = run(workdir, args)
            assert code == 0, f"{name}: a preparing run failed: {stderr}"
        warehouse = workdir / "warehouse.duckdb"
        before = counts(warehouse)
        code, stderr, seconds, peak = run(workdir, probe, kind.as_nobody)
        after = counts(warehouse)
        lines = [line for line in stderr.splitlines() if line.strip()]
        grew = {t: after[t] - before.get(t, 0) for t in after if after[t] != before.get(t, 0)}
        if code is None:
            verdict, detail = "crash", f"still running after {TIMEOUT:.0f} s"
        elif "Traceback" in stderr or code not in (0, 1, 2):
            verdict, detail = "crash", (lines or [f"exit {code}"])[-1]
        elif code:  # 1: shoprank's refusal, one line; 2: click's usage error, the usage then one line
            clean = (len(lines) == 1 or code == 2) and lines[-1].startswith("Error: ") and not grew
            verdict, detail = ("refused" if clean else "crash"), " / ".join(lines[-1:] if code == 2 else lines)
        elif any(t.startswith("quarantine.") for t in grew):
            found = "; ".join(sorted(set(reasons(warehouse))))
            verdict, detail = ("quarantined" if kind.reason in found else "crash"), found
        else:
            verdict, detail = "silent", f"exit 0, rows added: {grew or 'none'}"
        return Outcome(name, verdict, detail, seconds, peak)
    finally:
        for path in scratch.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(scratch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="kinds to run (names as listed)")
    args = parser.parse_args()
    chosen = {k: v for k, v in KINDS.items() if not args.only or k in args.only}
    outcomes = []
    for name, kind in chosen.items():
        outcome = census(name, kind)
        outcomes.append(outcome)
        detail = outcome.detail if len(outcome.detail) <= 150 else outcome.detail[:147] + "..."
        print(f"{outcome.verdict:<12} {outcome.seconds:5.2f} s {outcome.peak_mb:6.0f} MB  {name}: {detail}", flush=True)
    tally = Counter(o.verdict for o in outcomes)
    handled = tally["refused"] + tally["quarantined"]
    print(
        f"\n{len(outcomes)} kinds tried: {handled} handled cleanly ({tally['refused']} refused, "
        f"{tally['quarantined']} quarantined), {tally['silent']} accepted silently, {tally['crash']} crashed"
    )


if __name__ == "__main__":
    main()
