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


def _next_day_files(warehouse, folder, events_of_the_requests_day: bool = False) -> None:
    """The last day's events and requests again, one day later, with new ids (the events of the
    last day with events, or of the requests' last day)."""
    folder.mkdir()
    events = ", ".join(RAW_TABLES["events"].columns)
    requests = ", ".join(RAW_TABLES["requests"].columns)
    last = "select max(cast(event_time as date)) from raw.events where event_time < '2030-01-01'"
    if events_of_the_requests_day:
        last = "select max(cast(request_time as date)) from raw.requests"
    _query(
        warehouse,
        f"""copy (select * replace ('next-' || event_id as event_id, event_time + interval 1 day as event_time,
                                    'next-' || request_id as request_id)
                  from (select {events} from raw.events where cast(event_time as date) = ({last})))
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


def test_lists_served_past_the_events_build_and_come_labelled_with_the_events_after_them(tiny_shop, tmp_path):
    """A service that served past the last day with events (``serve --as-of materialized``) does
    not break the build: its lists wait out of ``fct_labels`` until the events after them arrive."""
    settings = replace(tiny_shop, workdir=tmp_path / "shop")
    shutil.copytree(tiny_shop.workdir, settings.workdir)
    _next_day_files(settings.warehouse, tmp_path / "next", events_of_the_requests_day=True)
    labels = settings.marts / "fct_labels.parquet"

    def next_lists() -> tuple[int, int]:
        return _query(
            settings.warehouse,
            f"select count(*), count(*) filter (label > 0) from '{labels}' where query_id like 'next-%'",
        )[0]

    served = ingest(settings.warehouse, [tmp_path / "next" / "requests.parquet"]).tables["requests"].accepted
    assert served > 0
    dbt_build(settings, select="+fct_labels")  # its tests pass, not_after_horizon among them
    assert next_lists() == (0, 0)
    horizon = _query(settings.warehouse, f"select max(event_timestamp) from '{labels}'")[0][0]
    assert (
        horizon
        < _query(settings.warehouse, "select min(request_time) from raw.requests where request_id like 'next-%'")[0][0]
    )

    ingest(settings.warehouse, [tmp_path / "next" / "events.parquet"])
    dbt_build(settings, select="+fct_labels")
    rows, _ = next_lists()
    assert 0 < rows <= served  # the day's last 30 minutes wait for the day after
    # each list labelled by the next day's events as its original was by its own day's
    pairs, differing = _query(
        settings.warehouse,
        f"""select count(*), count(*) filter (n.label <> o.label)
            from '{labels}' n join '{labels}' o on n.query_id = 'next-' || o.query_id and n.item_id = o.item_id""",
    )[0]
    assert pairs > 0 and differing == 0
