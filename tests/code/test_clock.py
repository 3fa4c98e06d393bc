"""The service's clock: whole seconds, a start of its own running faster, clear errors."""

import time
from datetime import datetime, timedelta

import pytest

from serving.clock import Clock
from shoprank.errors import ConfigError


def test_now_is_in_whole_seconds_and_a_clock_of_its_own_runs_speed_times_faster():
    assert Clock().now().microsecond == 0
    start = datetime(2025, 9, 9, 0, 0, 0)
    fast = Clock(start, speed=3600.0)
    moment = fast.now()
    assert moment.microsecond == 0 and start <= moment < start + timedelta(hours=1)


def test_bad_as_of_values_name_the_fix():
    with pytest.raises(ConfigError, match='--as-of "yesterday" is not "now", "materialized" or an ISO time'):
        Clock.parse("yesterday", store=None)
    with pytest.raises(ConfigError, match="--speed needs a clock of its own"):
        Clock.parse("now", store=None, speed=10.0)
    assert Clock.parse("2025-09-09T12:00:00+02:00", store=None).start == datetime(2025, 9, 9, 10, 0, 0)


def test_workers_get_the_parents_clock_and_options_unchanged(tmp_path):
    from serving.workers import ServeOptions
    from shoprank.config import Settings

    started = time.monotonic() - 100.0  # made 100 s ago by the parent
    clock = Clock(datetime(2025, 9, 9, 12, 0, 0), speed=60.0, started=started)
    options = ServeOptions(
        Settings(workdir=tmp_path, profile="production", redis="redis://h:1"), "s", "v2", True, clock
    )
    again = ServeOptions.from_json(options.to_json())
    assert again == options
    assert again.clock.now() >= datetime(2025, 9, 9, 13, 40, 0)  # 100 s at 60x: 100 minutes on
