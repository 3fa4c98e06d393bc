"""The service's clock: what "now" is for request times, request-time features and the served log.

In production it is the wall clock. A shop whose data lies in the past (simulated, replayed) is
served as of the end of its materialized data instead: the clock starts there and advances with
the wall clock (``speed`` times faster, for simulated live traffic: 3600 makes a day pass in 24
seconds), so request times fall just after the online values, as they do live, and the offline
store answers the same request times with the same rows (``shoprank parity``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from feast import FeatureStore

from shoprank.errors import ConfigError

WALL = "now"
MATERIALIZED = "materialized"


@dataclass(frozen=True)
class Clock:
    """Now, naive UTC: the wall clock, or ``start`` plus ``speed`` times the time since ``started``
    (``time.monotonic()`` when the clock was made: the machine's, the same in every process)."""

    start: datetime | None = None
    speed: float = 1.0
    started: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        """Now in whole seconds: Feast's online read cuts request times to seconds before its
        on-demand views, and training reads them as logged, so both see the same time."""
        if self.start is None:
            return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        moment = self.start + timedelta(seconds=(time.monotonic() - self.started) * self.speed)
        return moment.replace(microsecond=0)

    @classmethod
    def parse(cls, as_of: str, store: FeatureStore, speed: float = 1.0) -> Clock:
        """The clock ``as_of`` names: ``now`` (the wall clock), ``materialized`` (the end of the
        newest materialized interval of the store's views) or an ISO timestamp (naive: UTC); a
        clock other than the wall clock runs ``speed`` times faster than it.

        Raises:
            ConfigError: ``as_of`` is none of these, nothing is materialized, or ``speed`` is set
                on the wall clock.
        """
        if as_of == WALL:
            if speed != 1.0:
                raise ConfigError('--speed needs a clock of its own: --as-of "materialized" or an ISO time')
            return cls()
        if as_of == MATERIALIZED:
            start = materialized_until(store)
            if start is None:
                raise ConfigError(
                    '--as-of materialized: nothing is materialized yet; run "shoprank features materialize"'
                )
            return cls(start, speed)
        try:
            moment = datetime.fromisoformat(as_of)
        except ValueError:
            raise ConfigError(
                f'--as-of "{as_of}" is not "now", "materialized" or an ISO time such as 2025-09-22T00:00:00'
            ) from None
        return cls(moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment, speed)


def materialized_until(store: FeatureStore) -> datetime | None:
    """The newest end of the store's views' materialized intervals (naive UTC; the registry as
    cached), None before any materialization."""
    ends = [end for view in store.list_feature_views(allow_cache=True) for _, end in view.materialization_intervals]
    return max(ends).astimezone(UTC).replace(tzinfo=None) if ends else None
