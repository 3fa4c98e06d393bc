"""Real-world dirt in the events table: re-sent events, skewed clocks, lost item ids, odd types.

Each kind hits its own events (disjoint draws), so every dirty event has exactly one kind and the
counts add up. Duplicates copy clean events: half keep the event_id (a re-send), half get a new
one (a double fire). A fifth of the skewed clocks land at absurd times (1970, 2100+).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprank.contracts import EVENT_TYPES
from shoprank.simulate.arrays import US_PER_DAY, seconds, us
from shoprank.simulate.behavior import Events
from shoprank.simulate.spec import ShopSpec

VARIANTS = tuple(v for t in EVENT_TYPES for v in (t.capitalize(), f" {t.upper()} ", f"{t} "))
UNKNOWN_TYPES = ("pageview", "share", "remove_from_cart", "")
TYPE_TEXTS = (*EVENT_TYPES, *VARIANTS, *UNKNOWN_TYPES)
KINDS = (
    "duplicate_same_id",
    "duplicate_new_id",
    "clock_skew",
    "absurd_time",
    "missing_item",
    "unknown_event_type",
    "event_type_variant",
)
ABSURD_SHARE = 0.2
ABSURD_EPOCHS = (us(np.datetime64("1970-01-01")), us(np.datetime64("2100-01-01")))


@dataclass(frozen=True)
class Dirty:
    """Events after injection, in arrival order, and which events got which dirt.

    Attributes:
        events: Event columns plus ``number`` (the event id's number).
        numbers: Event number of every dirty event (a re-send shares its original's number).
        kinds: Index into ``KINDS`` per entry of ``numbers``.
    """

    events: Events
    numbers: np.ndarray
    kinds: np.ndarray

    def counts(self) -> dict[str, int]:
        """Dirty events per kind."""
        return {kind: int((self.kinds == k).sum()) for k, kind in enumerate(KINDS)}


def inject(events: Events, first_number: int, spec: ShopSpec, rng: np.random.Generator) -> Dirty:
    """Number ``events`` from ``first_number`` and add dirt at the rates of ``spec``.

    Args:
        events: Clean event columns in time order; ``kind`` indexes ``EVENT_TYPES``.
        first_number: Number of the first event; new ids continue after the last one.
        spec: Dirt rates.
        rng: Random source.

    Returns:
        The dirty events (``kind`` now indexes ``TYPE_TEXTS``) and the dirt manifest.
    """
    n = len(events["time"])
    out = {c: v.copy() for c, v in events.items()}
    out["number"] = first_number + np.arange(n)
    rates = (
        spec.clock_skew_rate,
        spec.missing_item_rate,
        spec.unknown_event_type_rate,
        spec.event_type_variant_rate,
        spec.duplicate_rate,
    )
    sizes = [rng.binomial(n, r) for r in rates]
    skewed, missing, unknown, variant, copied = np.split(
        rng.permutation(n)[: min(sum(sizes), n)], np.cumsum(sizes)[:-1]
    )

    absurd = rng.random(len(skewed)) < ABSURD_SHARE
    shift = rng.choice([-1, 1], len(skewed)) * seconds(rng.uniform(3600, 72 * 3600, len(skewed)))
    epoch = np.array(ABSURD_EPOCHS)[rng.integers(0, 2, len(skewed))]
    nonsense = epoch + (rng.random(len(skewed)) * np.where(epoch > 0, 100 * 365, 1) * US_PER_DAY).astype(np.int64)
    out["time"][skewed] = np.where(absurd, nonsense, out["time"][skewed] + shift)
    out["item"][missing] = -1
    out["kind"][unknown] = len(EVENT_TYPES) + len(VARIANTS) + rng.integers(0, len(UNKNOWN_TYPES), len(unknown))
    out["kind"][variant] = len(EVENT_TYPES) + 3 * out["kind"][variant] + rng.integers(0, 3, len(variant))

    same_id = rng.random(len(copied)) < 0.5
    copies = {c: v[copied] for c, v in out.items()}
    copies["number"] = np.where(same_id, copies["number"], first_number + n + np.cumsum(~same_id) - 1)
    arrival = np.concatenate([events["time"], events["time"][copied] + seconds(rng.uniform(0, 120, len(copied)))])
    order = np.argsort(arrival, kind="stable")
    merged = {c: np.concatenate([out[c], copies[c]])[order] for c in out}

    manifest = [
        (copies["number"][same_id], 0),
        (copies["number"][~same_id], 1),
        (out["number"][skewed[~absurd]], 2),
        (out["number"][skewed[absurd]], 3),
        (out["number"][missing], 4),
        (out["number"][unknown], 5),
        (out["number"][variant], 6),
    ]
    return Dirty(
        events=merged,
        numbers=np.concatenate([m for m, _ in manifest]),
        kinds=np.concatenate([np.full(len(m), k) for m, k in manifest]),
    )
