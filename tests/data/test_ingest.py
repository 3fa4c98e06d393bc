"""Ingest: counts add up, rejected rows are kept with their reason, re-ingesting adds nothing,
and a failed run leaves the warehouse as it was."""

from datetime import datetime, timedelta

import duckdb
import polars as pl
import pytest

from shoprank.config import Settings
from shoprank.errors import InputError
from shoprank.ingest import journal, run
from shoprank.ingest.run import ingest
from shoprank.pipeline import workdir_status


def _events(n: int = 6) -> pl.DataFrame:
    start = datetime(2025, 6, 1, 12)
    return pl.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "event_time": [start + timedelta(minutes=i) for i in range(n)],
            "user_id": ["u1"] * n,
            "event_type": ["view"] * n,
            "item_id": [f"i{i}" for i in range(n)],
        }
    )


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    events = _events()
    dirty = pl.concat(
        [
            events,
            events.head(1),  # same event_id again: a duplicate
            pl.DataFrame({"event_id": ["bad1"], "event_time": [datetime(2025, 6, 1)], "user_id": ["u1"],
                          "event_type": ["share"], "item_id": ["i9"]}),
            pl.DataFrame({"event_id": ["bad2"], "event_time": [datetime(2025, 6, 1)], "user_id": ["u1"],
                          "event_type": ["view"], "item_id": [None]}, schema_overrides={"item_id": pl.Utf8}),
        ]
    )  # fmt: skip
    dirty.write_parquet(folder / "events.parquet")
    pl.DataFrame({"item_id": ["i1"], "title": ["Red Shoes"], "updated_at": ["2025-01-01T00:00:00Z"]}).write_csv(
        folder / "items.csv"
    )
    return folder


def _counts(warehouse) -> dict[str, int]:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        return {
            t: con.execute(f"select count(*) from {t}").fetchall()[0][0]
            for t in ("raw.events", "raw.items", "quarantine.events", "raw.ingest_batches")
        }
    finally:
        con.close()


def test_counts_add_up_and_rejected_rows_keep_their_text_and_reason(tmp_path, files):
    report = ingest(tmp_path / "w.duckdb", [files])
    events = report.tables["events"]
    assert (events.read, events.accepted, events.quarantined, events.duplicates) == (9, 6, 2, 1)
    assert events.read == events.accepted + events.quarantined + events.duplicates
    assert report.tables["items"].accepted == 1
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    rows = con.execute(
        "select event_id, event_type, item_id, _reason, _source from quarantine.events order by 1"
    ).fetchall()
    assert rows[0][:4] == (
        "bad1",
        "share",
        "i9",
        "event_type: unknown_event_type (allowed: view, click, add_to_cart, favorite, purchase)",
    )
    assert rows[1][:4] == ("bad2", "view", None, "item_id: not_nullable")
    assert rows[0][4].endswith("events.parquet")
    assert con.execute("select typeof(event_time), typeof(position) from raw.events limit 1").fetchall() == [
        ("TIMESTAMP", "INTEGER")
    ]


def test_ingesting_the_same_files_twice_adds_nothing(tmp_path, files):
    warehouse = tmp_path / "w.duckdb"
    ingest(warehouse, [files])
    before = _counts(warehouse)
    again = ingest(warehouse, [files])
    assert {t: (c.accepted, c.quarantined) for t, c in again.tables.items()} == {"events": (0, 0), "items": (0, 0)}
    assert again.tables["events"].duplicates == 9
    after = _counts(warehouse)
    assert {k: v for k, v in after.items() if k != "raw.ingest_batches"} == {
        k: v for k, v in before.items() if k != "raw.ingest_batches"
    }


def test_a_failing_file_rolls_back_the_whole_run(tmp_path, files):
    warehouse = tmp_path / "w.duckdb"
    ingest(warehouse, [files / "items.csv"])
    before = _counts(warehouse)
    (files / "items-zz.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(InputError, match='items-zz.parquet" cannot be read as parquet'):
        ingest(warehouse, [files])
    assert _counts(warehouse) == before


def test_an_interruption_mid_run_rolls_back_the_whole_run(tmp_path, files, monkeypatch):
    warehouse = tmp_path / "w.duckdb"
    calls = []
    real = run.write_rows

    def interrupted(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "write_rows", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ingest(warehouse, [files])
    assert _counts(warehouse) == {"raw.events": 0, "raw.items": 0, "quarantine.events": 0, "raw.ingest_batches": 0}


def test_contract_files_in_csv_jsonl_and_parquet_load_the_same_rows(tmp_path):
    events = _events()
    for suffix, write in (("parquet", events.write_parquet), ("csv", events.write_csv), ("jsonl", events.write_ndjson)):
        folder = tmp_path / suffix
        folder.mkdir()
        write(folder / f"events-2025-06.{suffix}")
        report = ingest(tmp_path / f"{suffix}.duckdb", [folder])
        assert report.tables["events"].accepted == 6, suffix
    con = duckdb.connect(str(tmp_path / "csv.duckdb"), read_only=True)
    assert con.execute("select min(event_time) from raw.events").fetchall()[0][0] == datetime(2025, 6, 1, 12)


@pytest.mark.parametrize(
    ("name", "fmt", "message"),
    [
        ("clicks.parquet", "contract", 'Cannot tell which raw table ".*clicks.parquet" holds'),
        ("events.parquet", "excel", 'Unknown format "excel"; use one of contract, taobao'),
        ("events.xlsx", "contract", "has an unknown extension"),
    ],
)
def test_unusable_inputs_are_clear_errors(tmp_path, name, fmt, message):
    path = tmp_path / name
    _events().write_parquet(path)
    with pytest.raises(InputError, match=message):
        ingest(tmp_path / "w.duckdb", [path], fmt)
    with pytest.raises(InputError, match='Input ".*missing" does not exist'):
        ingest(tmp_path / "w.duckdb", [tmp_path / "missing"])


def test_a_run_cut_off_by_a_crash_is_rolled_back_by_the_next_run(tmp_path, files):
    warehouse_path = tmp_path / "w.duckdb"
    ingest(warehouse_path, [files / "items.csv"])
    before = _counts(warehouse_path)
    con = duckdb.connect(str(warehouse_path))
    journal.start(con, "crashed", datetime(2026, 1, 1), 1)  # a run whose process died mid-way:
    con.execute(  # one chunk committed, never finished
        "insert into raw.events (event_id, event_time, user_id, event_type, item_id, _batch_id) "
        "values ('x1', '2025-06-01', 'u', 'view', 'i', 'crashed')"
    )
    con.close()

    report = ingest(warehouse_path, [files / "items.csv"])
    assert report.recovered == ["crashed"]
    assert _counts(warehouse_path) == {**before, "raw.ingest_batches": before["raw.ingest_batches"] + 1}
    con = duckdb.connect(str(warehouse_path), read_only=True)
    runs = dict(con.execute("select batch_id, status from raw.ingest_runs").fetchall())
    assert runs["crashed"] == "rolled back"
    assert list(runs.values()).count("done") == 2


def test_status_counts_the_rows_of_committed_runs_only(tmp_path, files):
    settings = Settings(workdir=tmp_path / "shop")
    ingest(settings.warehouse, [files / "items.csv"])
    committed = workdir_status(settings).schemas["raw"]["events"]
    con = duckdb.connect(str(settings.warehouse))
    journal.start(con, "running", datetime(2026, 1, 1), 1)  # a run still writing (or killed): not counted
    con.execute(
        "insert into raw.events (event_id, event_time, user_id, event_type, item_id, _batch_id) "
        "values ('x1', '2025-06-01', 'u', 'view', 'i', 'running')"
    )
    con.close()
    assert workdir_status(settings).schemas["raw"]["events"] == committed
