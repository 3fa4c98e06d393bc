"""The raw lake of the distributed profile: each committed ingest run as Parquet files per table,
its journal row last; a run cut off while it was being published is published again; erasure
rewrites the lake from the warehouse."""

from __future__ import annotations

import duckdb
import polars as pl
from test_ingest import _events

from shoprank.contracts import RAW_TABLES
from shoprank.ingest.lake import JOURNAL, publish
from shoprank.ingest.run import ingest


def _ingested(tmp_path, name: str, frame: pl.DataFrame) -> str:
    path = tmp_path / name / "events.parquet"
    path.parent.mkdir()
    frame.write_parquet(path)
    return ingest(tmp_path / "w.duckdb", [path], lake=tmp_path / "raw").batch_id


def test_each_run_is_published_per_table_with_its_journal_row(tmp_path):
    first = _ingested(tmp_path, "a", _events(3))
    second = _ingested(tmp_path, "b", _events(5))  # e0..e2 again: duplicates, two new rows
    lake = tmp_path / "raw"
    assert sorted(p.name for p in lake.iterdir()) == sorted([*RAW_TABLES, JOURNAL])
    assert {p.stem for p in (lake / "items").glob("*.parquet")} == {first, second}  # empty tables too
    events = pl.read_parquet(lake / "events" / "*.parquet")
    assert sorted(events["event_id"]) == ["e0", "e1", "e2", "e3", "e4"]
    journal = pl.read_parquet(lake / JOURNAL / "*.parquet")
    assert sorted(journal["batch_id"]) == sorted([first, second]) and set(journal["status"]) == {"done"}
    assert not list(lake.rglob(".*"))  # no hidden half-written file left


def test_a_run_cut_off_while_publishing_is_published_by_the_next_ingest(tmp_path):
    first = _ingested(tmp_path, "a", _events(3))
    lake = tmp_path / "raw"
    (lake / JOURNAL / f"{first}.parquet").unlink()  # killed before its journal row: invisible to staging
    (lake / "events" / f"{first}.parquet").unlink()
    second = _ingested(tmp_path, "b", _events(4))
    assert {p.stem for p in (lake / JOURNAL).glob("*.parquet")} == {first, second}
    assert sorted(pl.read_parquet(lake / "events" / "*.parquet")["event_id"]) == ["e0", "e1", "e2", "e3"]


def test_publishing_again_rewrites_the_lake_from_the_warehouse(tmp_path):
    _ingested(tmp_path, "a", _events(3))
    lake = tmp_path / "raw"
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("delete from raw.events where event_id = 'e1'")  # as shoprank forget does
        assert publish(con, lake) == []  # nothing new
        assert len(publish(con, lake, again=True)) == 1
    assert sorted(pl.read_parquet(lake / "events" / "*.parquet")["event_id"]) == ["e0", "e2"]
