"""Declarative column mappings: round trips on small fixtures and every MappingError."""

from __future__ import annotations

import itertools
import tracemalloc
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from test_adapters import contract_failures

from shoprank.errors import MappingError
from shoprank.ingest.batch import coerce
from shoprank.ingest.mapping import Mapping, TimeHint, load_mapping, parse_time, read_mapped

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "adapters" / "mapping"


def mapped(path: Path, mapping: Mapping) -> pl.DataFrame:
    return pl.concat([batch.frame for batch in read_mapped(path, mapping)])


def test_csv_events_round_trip():
    mapping = load_mapping(FIXTURES / "shop_events.yaml")
    batches = list(read_mapped(FIXTURES / "shop_events.csv", mapping))
    assert [(b.table, b.frame.height, b.source) for b in batches] == [("events", 4, str(FIXTURES / "shop_events.csv"))]
    frame = batches[0].frame
    assert frame.columns == ["event_id", "event_time", "user_id", "event_type", "item_id", "position"]
    assert frame["event_type"].to_list() == ["view", "add_to_cart", "purchase", "refund"]  # unmapped passes through
    assert frame["event_time"].to_list()[2:] == ["2023-11-14 22:15:20", "yesterday"]  # unparseable kept as text
    typed, _ = coerce(frame, "events")
    assert typed["event_time"][0] == datetime(2023, 11, 14, 22, 13, 20)
    assert typed["position"].to_list() == [0, 3, None, 1]
    assert frame["event_id"].n_unique() == 4 and frame["event_id"].str.contains(r"^ev-[0-9a-f]{16}$").all()
    assert mapped(FIXTURES / "shop_events.csv", mapping)["event_id"].equals(frame["event_id"])
    assert contract_failures(frame, "events") == {
        "event_time: not a timestamp": 1,
        "event_time: not_nullable": 1,
        "event_type: unknown_event_type": 1,
    }


def test_parquet_gives_the_same_rows_and_ids_as_csv(tmp_path):
    mapping = load_mapping(FIXTURES / "shop_events.yaml")
    parquet = tmp_path / "shop_events.parquet"
    pl.read_csv(FIXTURES / "shop_events.csv", separator=";").write_parquet(parquet)  # typed: ts and pos are integers
    from_csv, from_parquet = mapped(FIXTURES / "shop_events.csv", mapping), mapped(parquet, mapping)
    assert from_parquet["event_id"].equals(from_csv["event_id"])
    assert coerce(from_parquet, "events")[0].equals(coerce(from_csv, "events")[0])


def test_jsonl_items_with_a_time_format_and_constants():
    mapping = load_mapping(FIXTURES / "catalog.yaml")
    frame = mapped(FIXTURES / "catalog.jsonl", mapping)
    typed, _ = coerce(frame, "items")
    assert typed.rows()[:2] == [
        ("A-1", "Kettle", "Kitchen > Small appliances", "Acme", 29.9, datetime(2023, 11, 14, 22, 13)),
        ("B-2", "Toaster", "Kitchen > Small appliances", "Acme", 45.0, datetime(2023, 11, 15, 8, 0)),
    ]
    assert contract_failures(frame, "items") == {
        "updated_at: not a timestamp": 1,
        "updated_at: not_nullable": 1,
        "price: greater_than_or_equal_to": 1,
    }


def test_headerless_csv_columns_are_numbered_from_one(tmp_path):
    (tmp_path / "log.csv").write_text("7,42,1511544070\n")
    (tmp_path / "m.yaml").write_text(
        "table: events\ncsv: {header: false}\ncolumns: {user_id: column_1, item_id: column_2, event_time: column_3}\n"
        "event_time: {unit: s}\nconstants: {event_type: view}\nevent_id: derive\n"
    )
    frame = mapped(tmp_path / "log.csv", load_mapping(tmp_path / "m.yaml"))
    assert frame.drop("event_id").row(0) == (datetime(2017, 11, 24, 17, 21, 10), "7", "view", "42")


def test_parse_time_units_and_zones():
    assert parse_time(pl.Series(["1511544070"]), TimeHint(unit="s"))[0] == datetime(2017, 11, 24, 17, 21, 10)
    assert parse_time(pl.Series([1_511_544_070_000_001]), TimeHint(unit="us"))[0] == datetime(
        2017, 11, 24, 17, 21, 10, 1
    )
    assert parse_time(pl.Series(["2017-11-25 01:21+0800"]), TimeHint(format="%Y-%m-%d %H:%M%z"))[0] == datetime(
        2017, 11, 24, 17, 21
    )


EVENTS = (
    "table: events\ncolumns: {user_id: visitor, item_id: sku, event_time: ts, event_type: action}\nevent_id: derive\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("table: orders\n", r'table "orders" is not a raw table; use one of events, requests, items'),
        ("columns: {item_id: sku}\n", r"table is missing; use one of events"),
        (
            EVENTS + "constants: {userid: u1}\n",
            r"constants.userid is not a contract column; use one of event_id, event_time",
        ),
        (EVENTS.replace("user_id", "userid"), r"columns.userid is not a contract column"),
        (
            EVENTS + "event_time: {unit: minutes}\n",
            r'event_time.unit "minutes" is not an epoch unit; use one of s, ms, us',
        ),
        (EVENTS + "event_time: {unit: s, format: '%Y'}\n", r"event_time must have exactly one of unit: or format:"),
        (EVENTS + "updated_at: {unit: s}\n", r"updated_at is not a mapping key for events; use table, format"),
        (
            EVENTS.replace(", event_time: ts", "") + "event_time: {unit: s}\n",
            r"event_time gives parse hints, but event_time is not",
        ),
        (EVENTS.replace("event_id: derive", "event_id: yes"), r'event_id must be "derive", not True; map a source id'),
        (
            EVENTS.replace("event_id: derive\n", ""),
            r"columns.event_id is missing: events requires it; .* \(or set event_id: derive\)",
        ),
        (EVENTS + "constants: {event_type: view}\n", r"event_type is set more than once"),
        (EVENTS + "values: {event_type: {source: action}}\n", r"values.event_type must have exactly source: and map:"),
        (EVENTS + "csv: {delimiter: ';;'}\n", r"csv.delimiter must be one character"),
        (EVENTS + "csv: {sep: ';'}\n", r"csv takes only delimiter: and header:"),
        (EVENTS + "format: xlsx\n", r'format "xlsx" is not a supported format; use csv, parquet or jsonl'),
        ("- table: events\n", r"the file is not a YAML mapping of keys"),
        ("table: [events\n", r"is not readable YAML"),
    ],
)
def test_invalid_mapping_files(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MappingError, match=message) as error:
        load_mapping(path)
    assert str(path) in str(error.value)


def test_missing_mapping_file(tmp_path):
    with pytest.raises(MappingError, match=r'Mapping file ".*nowhere.yaml" does not exist'):
        load_mapping(tmp_path / "nowhere.yaml")


def test_source_columns_are_checked_against_the_file_header(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(EVENTS.replace("sku", "product") + "csv: {delimiter: ';'}\n")
    with pytest.raises(MappingError) as error:
        next(read_mapped(FIXTURES / "shop_events.csv", load_mapping(path)))
    assert str(error.value) == (
        f'Mapping "{path}": columns.item_id names "product", but "{FIXTURES / "shop_events.csv"}" has no such column '
        "(its columns: visitor, sku, ts, action, pos); fix the source column names in the mapping, or check csv.delimiter / csv.header"
    )


def test_unknown_extension_needs_a_format(tmp_path):
    data = tmp_path / "log.txt"
    data.write_text("visitor,sku,ts,action\n")
    path = tmp_path / "m.yaml"
    path.write_text(EVENTS)
    with pytest.raises(MappingError, match=r'cannot tell the format of ".*log.txt" from its extension; set format:'):
        next(read_mapped(data, load_mapping(path)))


def _laughs(levels: int) -> str:
    """A "billion laughs": each level an alias list of nine of the level before (9**levels values)."""
    names = [f"l{level}" for level in range(levels + 1)]
    lines = [f'{names[0]}: &{names[0]} ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{name}: &{name} [{', '.join([f'*{before}'] * 9)}]" for before, name in itertools.pairwise(names)]
    return "table: events\n" + "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_laughs(9), r"expands to over [\d,]+ values through its aliases \(\*name\), past the 100,000 a mapping may"),
        ("table: events\ncolumns: &c {user_id: *c}\n", r"holds a value that contains itself through an alias"),
        ("table: events\n" + "#" * 1_000_000 + "\n", r"has 1,000,015 bytes, over the 1,000,000 a mapping may have"),
    ],
    ids=["billion-laughs", "recursive", "too-large"],
)
def test_hostile_mapping_files_are_refused_at_once_in_bounded_memory(tmp_path, text, message):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    tracemalloc.start()
    try:
        with pytest.raises(MappingError, match=message) as error:
            load_mapping(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(error.value).startswith(f'Mapping file "{path}" ')
    assert peak < 20_000_000  # bytes: what the file's text and its parse take, not its expansion


def test_aliases_are_expanded_as_yaml_reads_them_within_the_limit(tmp_path):
    shared = (FIXTURES / "shop_events.yaml").read_text().replace("columns:", "columns: &columns", 1)
    path = tmp_path / "aliased.yaml"
    path.write_text(shared + "constants: {session_id: none}\nsecond: *columns\n")
    with pytest.raises(MappingError, match=r"second is not a mapping key"):  # the aliased key, read
        load_mapping(path)
    path.write_text(_laughs(4).replace("table: events\n", (FIXTURES / "shop_events.yaml").read_text()))
    with pytest.raises(MappingError, match=r"l0 is not a mapping key"):  # 9**5 values: expanded, then read
        load_mapping(path)
