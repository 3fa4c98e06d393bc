"""The serving reader's memory of the values it read: a value is served until it is stale, counted
from its latest read; past its size the least recently read go first."""

import serving.online
from serving.online import _Fresh


def test_kept_values_go_stale_in_the_order_they_were_last_read():
    fresh = _Fresh()
    fresh.put({("a",): (1,)}, now=0.0)
    fresh.put({("b",): (2,)}, now=10.0)
    fresh.put({("a",): (3,)}, now=20.0)  # read again: the newest
    assert fresh.get([("a",), ("b",), ("c",)], stale=5.0) == [(3,), (2,), None]
    assert fresh.get([("a",), ("b",)], stale=10.0) == [(3,), None]  # read at 10: stale
    assert fresh.get([("b",)], stale=0.0) == [None]  # dropped, not kept for later
    assert fresh.get([("a",)], stale=20.0) == [None]


def test_values_kept_as_absent_are_dropped_when_a_store_recovers_the_present_ones_stay():
    fresh = _Fresh()
    fresh.put({("a",): (1, None), ("b",): (None, None)}, now=0.0)  # b: read while the store was empty
    fresh.drop_absent()
    assert fresh.get([("a",), ("b",)], stale=-1.0) == [(1, None), None]
    fresh.put({("b",): (2, 3)}, now=1.0)  # read again from the refilled store
    assert fresh.get([("b",)], stale=-1.0) == [(2, 3)]


def test_past_its_size_the_least_recently_read_values_are_forgotten(monkeypatch):
    monkeypatch.setattr(serving.online, "CACHE_KEYS", 2)
    fresh = _Fresh()
    fresh.put({("a",): (1,), ("b",): (2,)}, now=0.0)
    fresh.put({("a",): (1,)}, now=1.0)  # read again: b is now the least recent
    fresh.put({("c",): (3,)}, now=2.0)
    assert fresh.get([("a",), ("b",), ("c",)], stale=-1.0) == [(1,), None, (3,)]
