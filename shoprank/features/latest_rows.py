"""The rows one materialization writes, and how writers go through them in chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from feast.value_type import ValueType

Advance = Callable[[int], None]  # called with the entities just processed
CHUNK = 5_000  # entities per chunk (and progress step) of a writer


@dataclass(frozen=True)
class LatestRows:
    """The latest row of each entity of a view within an interval.

    Attributes:
        keys: Serialized entity keys.
        times: Event timestamps.
        features: ``(name, value type, values)`` of each feature.
    """

    keys: pa.Array
    times: pa.Array
    features: list[tuple[str, ValueType, pa.Array]]

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, indices: pa.Array) -> LatestRows:
        """The rows at ``indices``, in that order."""
        features = [(name, kind, values.take(indices)) for name, kind, values in self.features]
        return LatestRows(self.keys.take(indices), self.times.take(indices), features)

    def slice(self, start: int, stop: int) -> LatestRows:
        """Rows ``start`` to ``stop`` (exclusive), without copying."""
        features = [(name, kind, values[start:stop]) for name, kind, values in self.features]
        return LatestRows(self.keys[start:stop], self.times[start:stop], features)

    def filter(self, mask: pa.Array) -> LatestRows:
        """The rows where ``mask`` is true."""
        return self.take(pc.indices_nonzero(mask))


def spans(n: int, size: int = CHUNK) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive chunks of ``n`` rows."""
    for start in range(0, n, size):
        yield start, min(start + size, n)


def ahead(pool: ThreadPoolExecutor, function: Callable, items: Iterable) -> Iterator:
    """``function(item)`` of each item in order, the next one computed in ``pool`` while the caller
    uses this one (DuckDB, Arrow and socket calls release the GIL, so the two overlap)."""
    pending = None
    for item in items:
        future = pool.submit(function, item)
        if pending is not None:
            yield pending.result()
        pending = future
    if pending is not None:
        yield pending.result()
