"""The users' recent items behind recommendations: the warehouse's, merged with events accepted
since, whether this process landed them or another one did (the other workers of a service)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from serving import recommend
from serving.recommend import RecentItems

STORED = pl.DataFrame(
    {
        "user_id": ["u1", "u1"],
        "item_id": ["a", "b"],
        "last_time": [datetime(2025, 9, 1, 10), datetime(2025, 9, 1, 9)],
        "bought": [False, True],
    }
)


def events(user: str, item: str, kind: str, hour: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"user_id": [user], "item_id": [item], "event_type": [kind], "event_time": [datetime(2025, 9, 2, hour)]}
    )


def test_events_landed_by_other_processes_join_the_recent_items_and_own_files_are_not_read_again(tmp_path, monkeypatch):
    landing = tmp_path / "events"
    landing.mkdir()
    events("u1", "old", "view", 1).write_parquet(landing / "events-0-before.parquet")  # ingested already
    recent = RecentItems(STORED, landing)
    monkeypatch.setattr(recommend, "FOLLOW_SECONDS", 0.0)

    events("u1", "c", "purchase", 8).write_parquet(landing / "events-1-other.parquet")  # another worker's
    events("u2", "d", "view", 9).write_parquet(landing / ".events-2-hidden.parquet")  # still being written
    own = landing / "events-3-own.parquet"
    events("u1", "e", "view", 7).write_parquet(own)
    recent.record(pl.read_parquet(own), own)
    own.write_bytes(b"not parquet: reading it again would fail")
    recent.follow()

    u1 = recent.of("u1")
    assert u1.items == ["c", "e", "a", "b"] and u1.bought == {"c", "b"}
    assert recent.of("u2").items == []

    monkeypatch.setattr(recommend, "FOLLOW_SECONDS", 3600.0)
    events("u2", "f", "view", 9).write_parquet(landing / "events-4-later.parquet")
    recent.follow()  # not yet: the folder is listed every FOLLOW_SECONDS
    assert recent.of("u2").items == []
