"""When people shop: hour-of-day and day-of-week weights (UTC, one market's rhythm)."""

from __future__ import annotations

from datetime import datetime

import numpy as np

# relative traffic per hour 0..23: quiet nights, a lunch bump, the peak in the evening
HOURLY = (
    0.25,
    0.15,
    0.10,
    0.08,
    0.08,
    0.12,
    0.25,
    0.45,
    0.60,
    0.70,
    0.75,
    0.85,
    0.95,
    0.90,
    0.85,
    0.85,
    0.90,
    1.00,
    1.20,
    1.45,
    1.60,
    1.50,
    1.10,
    0.60,
)
# relative traffic Monday..Sunday: more on weekends
WEEKLY = (0.90, 0.90, 0.95, 1.00, 1.05, 1.25, 1.30)


def hour_weights() -> np.ndarray:
    """Probability that a session starts in each hour of the day (sums to 1)."""
    weights = np.array(HOURLY)
    return weights / weights.sum()


def day_factor(day: datetime) -> float:
    """Traffic of ``day`` relative to an average day of the week (mean 1 over a week)."""
    return WEEKLY[day.weekday()] / float(np.mean(WEEKLY))


def session_offsets(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` session start times as seconds after midnight, following ``hour_weights``."""
    hours = rng.choice(24, n, p=hour_weights())
    return (hours + rng.random(n)) * 3600.0
