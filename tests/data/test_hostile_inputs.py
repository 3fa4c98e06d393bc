"""Inputs an attacker or a careless user gives ingest: each is refused in one line naming the file,
the column and the fix, or quarantined with its reason; none is accepted silently, none crashes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import duckdb
import polars as pl
import pytest
from test_ingest import _events as events_frame

from shoprank.build import dbt_build
from shoprank.contracts.raw import MAX_ID_CHARS
from shoprank.errors import BuildError, InputError
from shoprank.ingest.readers import files_under
from shoprank.ingest.run import ingest


def _events(**columns: list) -> pl.DataFrame:
    """Three valid events, ``columns`` replaced or added."""
    return events_frame(3).with_columns(pl.Series(name, values) for name, values in columns.items())


def _refused(tmp_path, path, fmt: str = "contract") -> str:
    with pytest.raises(InputError) as error:
        ingest(tmp_path / "w.duckdb", [path], fmt)
    message = str(error.value)
    assert "\n" not in message
    return message


def _quarantined(tmp_path, frame: pl.DataFrame, name: str = "events.parquet") -> dict[str, int]:
    """Ingest ``frame``; the reasons of its quarantined rows, counted (and no row accepted among them)."""
    path = tmp_path / name
    frame.write_parquet(path)
    report = ingest(tmp_path / "w.duckdb", [path])
    return dict(report.tables[name.split(".")[0]].reasons)


def test_a_semicolon_separated_csv_is_refused_naming_the_delimiter_fix(tmp_path):
    path = tmp_path / "events.csv"
    _events().write_csv(path, separator=";")
    message = _refused(tmp_path, path)
    assert message.startswith(f'File "{path}" has none of the events contract columns (event_id, event_time, ')
    assert message.endswith('re-encode it or read it with a mapping (csv: {delimiter: ";"})')


def test_a_utf16_csv_is_refused_naming_the_encoding(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(_events().write_csv(), encoding="utf-16")
    assert _refused(tmp_path, path).endswith("re-encode it as UTF-8")


def test_a_repeated_csv_header_is_refused(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("event_id,event_time,user_id,session_id,event_type,item_id,session_id\n"
                    "e1,2025-06-01 12:00:00,u1,s1,view,i1,s2\n")  # fmt: skip
    assert _refused(tmp_path, path) == (
        f"File \"{path}\" repeats the column(s) 'session_id' in its header; keep one column of each name"
    )


@pytest.mark.parametrize(
    ("values", "kind"),
    [([["u1", "u2"]] * 3, "List(String)"), ([{"a": "u1", "b": "i1"}] * 3, "Struct({'a': String, 'b': String})")],
    ids=["list", "struct"],
)
def test_a_parquet_column_of_lists_or_structs_is_refused(tmp_path, values, kind):
    path = tmp_path / "events.parquet"
    _events().with_columns(pl.Series("user_id", values)).write_parquet(path)
    assert _refused(tmp_path, path) == (
        f'File "{path}": column "user_id" holds {kind} values, not one value per row; '
        "write one user_id per row (or flatten it)"
    )


def test_a_parquet_file_given_as_a_csv_format_is_named_parquet(tmp_path):
    path = tmp_path / "UserBehavior.csv"
    _events().write_parquet(path)
    assert _refused(tmp_path, path, "taobao").startswith(f'File "{path}" is Parquet, not delimited text; ')


def test_a_device_is_not_read_as_an_empty_file(tmp_path):
    assert _refused(tmp_path, Path("/dev/zero")) == (
        'Input "/dev/zero" is not a regular file (a device, pipe or socket); pass a data file'
    )


@pytest.mark.parametrize(
    ("price", "reason"),
    [(float("nan"), "price: not_finite (NaN or infinite)"), (float("inf"), "price: not_finite (NaN or infinite)")],
    ids=["nan", "inf"],
)
def test_non_finite_prices_are_quarantined(tmp_path, price, reason):
    assert _quarantined(tmp_path, _events(price=[price, 1.0, 2.0])) == {reason: 1}


def test_a_boolean_price_is_not_a_number(tmp_path):
    assert _quarantined(tmp_path, _events(price=[True, False, None])) == {"price: not a number": 2}


def test_a_timestamp_past_year_9999_is_checked_not_let_through(tmp_path):
    """Epoch milliseconds read as seconds land in year 57386: a year Python's datetime cannot hold,
    so the contract's check could not look at it and the row passed unchecked."""
    seconds = [1_748_772_000_000, 1_748_772_000, 1_748_772_001]
    times = (pl.Series(seconds) * 10**6).cast(pl.Datetime("us"))
    reason = "event_time: implausible_timestamp (before 1990 or more than a day in the future)"
    assert _quarantined(tmp_path, _events(event_time=times)) == {reason: 1}


def test_an_overlong_id_is_quarantined(tmp_path):
    ids = ["u" * (MAX_ID_CHARS + 1), "u" * MAX_ID_CHARS, "u1"]
    assert _quarantined(tmp_path, _events(user_id=ids)) == {"user_id: too_long (an id has at most 256 characters)": 1}


def test_a_category_cycle_is_quarantined(tmp_path):
    categories = pl.DataFrame(
        {"category_id": ["1", "2", "3", "4"], "parent_id": ["2", "1", "1", None], "name": ["a", "b", "c", "d"]}
    )
    assert _quarantined(tmp_path, categories, "categories.parquet") == {"categories: parent_cycle": 2}  # 3 hangs off it


def test_a_file_moved_elsewhere_is_not_quarantined_twice(tmp_path):
    first = tmp_path / "a" / "events.parquet"
    first.parent.mkdir()
    _events(event_type=["share", "view", "view"]).write_parquet(first)
    warehouse = tmp_path / "w.duckdb"
    assert ingest(warehouse, [first]).tables["events"].quarantined == 1
    moved = tmp_path / "b" / "events.parquet"
    moved.parent.mkdir()
    shutil.move(first, moved)
    again = ingest(warehouse, [moved]).tables["events"]
    assert (again.quarantined, again.duplicates) == (0, 3)
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select count(*) from quarantine.events").fetchone() == (1,)


CONFLICT = "event_id: conflict (a row with this key and other values was accepted first)"


def test_the_same_key_with_other_values_is_a_conflict_kept_in_quarantine(tmp_path):
    events = _events()
    changed = events.head(1).with_columns(pl.lit("u2").alias("user_id"))  # e0 again, another user
    assert _quarantined(tmp_path, pl.concat([events, events.head(1), changed])) == {CONFLICT: 1}  # in one file
    warehouse = tmp_path / "w.duckdb"
    later = tmp_path / "later" / "events.parquet"
    later.parent.mkdir()
    pl.concat(
        [events.head(1).with_columns(pl.lit("purchase").alias("event_type"), pl.lit("u3").alias("user_id"))]
    ).write_parquet(later)
    counts = ingest(warehouse, [later]).tables["events"]  # against the stored e0
    assert (counts.accepted, counts.quarantined, counts.duplicates, dict(counts.reasons)) == (0, 1, 0, {CONFLICT: 1})
    again = ingest(warehouse, [later]).tables["events"]
    assert (again.quarantined, again.duplicates) == (0, 1)  # re-ingested: nothing new
    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("select user_id from raw.events where event_id = 'e0'").fetchall() == [("u1",)]  # the first
    assert con.execute("select user_id from quarantine.events order by user_id").fetchall() == [("u2",), ("u3",)]


def test_a_category_cycle_made_by_two_ingests_is_quarantined_and_one_written_past_ingest_fails_the_build(
    tiny_shop, tmp_path
):
    settings = replace(tiny_shop, workdir=tmp_path / "shop")
    shutil.copytree(tiny_shop.workdir, settings.workdir)
    counts = []
    for run, (category, parent) in enumerate([("c-1", "c-2"), ("c-2", "c-1")]):  # each file alone is a tree
        path = tmp_path / f"run{run}" / "categories.parquet"
        path.parent.mkdir()
        pl.DataFrame({"category_id": [category], "parent_id": [parent], "name": [category]}).write_parquet(path)
        report = ingest(settings.warehouse, [path]).tables["categories"]
        counts.append((report.accepted, dict(report.reasons)))
    assert counts == [(1, {}), (0, {"categories: parent_cycle": 1})]  # the second closes the cycle
    with duckdb.connect(str(settings.warehouse)) as con:  # a cycle written past ingest, in its committed run
        con.execute(
            "insert into raw.categories select 'c-2', 'c-1', name, _source, _batch_id, _loaded_at "
            "from raw.categories where category_id = 'c-1'"
        )
    with pytest.raises(BuildError, match=r"^dbt build failed: test no_parent_cycle_stg_shop__categories_category_id"):
        dbt_build(settings, select="stg_shop__categories")


def test_an_unreadable_folder_is_named_unreadable_not_empty():
    """As root every folder is readable: the check runs as nobody then (``setpriv``)."""
    base = Path(tempfile.mkdtemp(prefix="shoprank-locked-", dir="/tmp"))
    folder = base / "landing"
    folder.mkdir()
    _events().write_parquet(folder / "events.parquet")
    base.chmod(0o755)
    folder.chmod(0)
    message = f'Input "{folder}" cannot be read (permission denied); give this user read access'
    try:
        if os.geteuid() != 0:
            with pytest.raises(InputError, match=re.escape(message)):
                files_under([folder])
            return
        code = f"from pathlib import Path\nfrom shoprank.ingest.readers import files_under\nfiles_under([Path({str(folder)!r})])"
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code]
        done = subprocess.run(nobody, capture_output=True, text=True, check=False)
        assert done.stderr.strip().splitlines()[-1] == f"shoprank.errors.InputError: {message}"
    finally:
        folder.chmod(0o755)
        shutil.rmtree(base)
