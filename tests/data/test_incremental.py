"""Incremental dbt models rewrite only the days that received new rows, and end up equal to a
full rebuild."""

from __future__ import annotations

import shutil
from dataclasses import replace

import duckdb

from shoprank.build import dbt_build
from shoprank.contracts import RAW_TABLES
from shoprank.ingest.run import ingest

# model -> its day column: every model rebuilt by day
INCREMENTAL = {
    "int_events_cleaned": "reported_date",
    "int_events_sessionized": "reported_date",
    "int_impressions_labeled": "request_date",
}


def _query(warehouse, sql: str) -> list[tuple]:
    con = duckdb.connect(str(warehouse))
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _mark_first_day(warehouse) -> dict[str, int]:
    """Tag every row of the first day of each incremental model; return how many were tagged."""
    marked = {}
    for model, day in INCREMENTAL.items():
        table = f"intermediate.{model}"
        _query(
            warehouse,
            f"update {table} set source_session_id = 'untouched' where {day} = (select min({day}) from {table})",
        )
        marked[model] = _query(warehouse, f"select count(*) from {table} where source_session_id = 'untouched'")[0][0]
    return marked


def _untouched(warehouse) -> dict[str, int]:
    return {
        model: _query(warehouse, f"select count(*) from intermediate.{model} where source_session_id = 'untouched'")[0][
            0
        ]
        for model in INCREMENTAL
    }


def _next_day_files(warehouse, folder) -> None:
    """The last day's events and requests again, one day later, with new ids."""
    folder.mkdir()
    events = ", ".join(RAW_TABLES["events"].columns)
    requests = ", ".join(RAW_TABLES["requests"].columns)
    _query(
        warehouse,
        f"""copy (select * replace ('next-' || event_id as event_id, event_time + interval 1 day as event_time,
                                    'next-' || request_id as request_id)
                  from (select {events} from raw.events
                        where cast(event_time as date) = (select max(cast(event_time as date)) from raw.events
                                                          where event_time < '2030-01-01')))
            to '{folder}/events.parquet' (format parquet)""",
    )
    _query(
        warehouse,
        f"""copy (select * replace ('next-' || request_id as request_id, request_time + interval 1 day as request_time)
                  from (select {requests} from raw.requests
                        where cast(request_time as date) = (select max(cast(request_time as date)) from raw.requests)))
            to '{folder}/requests.parquet' (format parquet)""",
    )


def test_new_days_are_added_without_rewriting_old_days_and_match_a_full_rebuild(tiny_shop, tmp_path):
    settings = replace(tiny_shop, workdir=tmp_path / "shop")
    shutil.copytree(tiny_shop.workdir, settings.workdir)
    warehouse = settings.warehouse
    marked = _mark_first_day(warehouse)
    assert all(count > 0 for count in marked.values())

    dbt_build(settings)  # nothing new arrived: nothing is rewritten
    assert _untouched(warehouse) == marked

    _next_day_files(warehouse, tmp_path / "next")
    report = ingest(warehouse, [tmp_path / "next"])
    assert report.tables["events"].accepted > 0 and report.tables["requests"].accepted > 0
    dbt_build(settings)
    assert _untouched(warehouse) == marked
    new_events = _query(
        warehouse, "select count(*) from intermediate.int_events_sessionized where event_id like 'next-%'"
    )[0][0]
    new_lists = _query(
        warehouse, "select count(*) from intermediate.int_impressions_labeled where request_id like 'next-%'"
    )[0][0]
    assert new_events > 0 and new_lists == report.tables["requests"].accepted
    incremental = {
        model: _query(warehouse, f"select count(*), count(distinct {day}) from intermediate.{model}")[0]
        for model, day in INCREMENTAL.items()
    }

    dbt_build(settings, full_refresh=True)
    assert _untouched(warehouse) == dict.fromkeys(INCREMENTAL, 0)
    rebuilt = {
        model: _query(warehouse, f"select count(*), count(distinct {day}) from intermediate.{model}")[0]
        for model, day in INCREMENTAL.items()
    }
    assert rebuilt == incremental
