from datetime import UTC, datetime

import polars as pl

from shoprank.ingest.batch import coerce


def test_timestamps_in_any_iso_form_or_zone_become_naive_utc():
    frame = pl.DataFrame(
        {"event_time": ["2025-01-02T03:04:05Z", "2025-01-02 05:04:05+02:00", "2025-01-02 03:04:05.5", "2025-01-02"]}
    )
    typed, reasons = coerce(frame, "events")
    assert typed["event_time"].to_list() == [
        datetime(2025, 1, 2, 3, 4, 5),
        datetime(2025, 1, 2, 3, 4, 5),
        datetime(2025, 1, 2, 3, 4, 5, 500000),
        datetime(2025, 1, 2),
    ]
    assert reasons.null_count() == 4


def test_zoned_datetimes_are_converted_to_utc():
    aware = pl.Series("event_time", [datetime(2025, 1, 2, 12, tzinfo=UTC)]).dt.convert_time_zone("Asia/Shanghai")
    typed, _ = coerce(pl.DataFrame([aware]), "events")
    assert typed["event_time"].to_list() == [datetime(2025, 1, 2, 12)]


def test_uncastable_values_become_null_with_a_reason_per_row():
    frame = pl.DataFrame({"event_time": ["soon", "2025-01-01"], "position": ["2.5", "3"], "price": ["x", ""]})
    typed, reasons = coerce(frame, "events")
    assert reasons.to_list() == ["event_time: not a timestamp; position: not an integer; price: not a number", None]
    assert typed["position"].to_list() == [None, 3]
    assert typed["price"].to_list() == [None, None]


def test_ids_read_as_floats_keep_their_integer_text_and_missing_columns_are_null():
    typed, reasons = coerce(pl.DataFrame({"user_id": [42.0, None, 1.5]}), "events")
    assert typed["user_id"].to_list() == ["42", None, "1.5"]
    assert typed.columns[:3] == ["event_id", "event_time", "user_id"]
    assert typed["event_id"].null_count() == 3
    assert reasons.null_count() == 3
