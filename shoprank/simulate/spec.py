"""What to simulate: the ``ShopSpec`` dataclass, its presets and ``spec_for``."""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shoprank.errors import ConfigError


@dataclass(frozen=True)
class ShopSpec:
    """Size, time span, behavior and dirt rates of a simulated shop.

    Attributes:
        n_users: Registered users (bots included).
        n_items: Catalog items (new items added during the period included).
        days: Length of the simulated period in days.
        start: First instant of the period, naive UTC; the whole period must lie in the past.
        sessions_per_user_day: Mean sessions per user and day (scaled by each user's activity).
        lists_per_session: Mean served lists per session (at least one).
        list_size: Items per served list.
        chunk_users: Users simulated together in one chunk (one chunk per day and user block).
        latent_dim: Size of the user and item latent vectors.
        new_item_share: Share of items added during the period.
        price_change_share: Share of items whose price changes 1-3 times during the period.
        synonym_rate: Share of search queries that use a synonym of the leaf noun.
        typo_rate: Share of search queries with a typo.
        duplicate_rate: Share of events sent twice (half with the same event_id, half with a new one).
        bot_user_rate: Share of users that are bots with bursts of hundreds of views per minute.
        clock_skew_rate: Share of events with a skewed clock (a fifth of them absurd).
        missing_item_rate: Share of events whose item_id is lost.
        unknown_event_type_rate: Share of events with an event type outside the contract.
        event_type_variant_rate: Share of events with a valid type in odd case or with blanks.
    """

    n_users: int
    n_items: int
    days: int
    start: datetime = datetime(2025, 9, 1)
    sessions_per_user_day: float = 0.25
    lists_per_session: float = 2.5
    list_size: int = 12
    chunk_users: int = 50_000
    latent_dim: int = 8
    new_item_share: float = 0.08
    price_change_share: float = 0.3
    synonym_rate: float = 0.1
    typo_rate: float = 0.08
    duplicate_rate: float = 0.01
    bot_user_rate: float = 0.002
    clock_skew_rate: float = 0.005
    missing_item_rate: float = 0.003
    unknown_event_type_rate: float = 0.003
    event_type_variant_rate: float = 0.01

    @property
    def end(self) -> datetime:
        """First instant after the period."""
        return self.start + timedelta(days=self.days)


PRESETS: dict[str, ShopSpec] = {
    "tiny": ShopSpec(n_users=250, n_items=400, days=7, sessions_per_user_day=0.4),
    "small": ShopSpec(n_users=10_000, n_items=5_000, days=14),
    "medium": ShopSpec(n_users=50_000, n_items=30_000, days=28, chunk_users=25_000),
    "large": ShopSpec(n_users=270_000, n_items=150_000, days=42, chunk_users=90_000),
}

_RATES = {f.name for f in fields(ShopSpec) if f.name.endswith(("_rate", "_share"))}
_POSITIVE = {"n_users", "n_items", "days", "list_size", "chunk_users", "latent_dim"}


def spec_for(preset: str, overrides: Mapping[str, Any] | None = None) -> ShopSpec:
    """Return a preset's spec with ``overrides`` applied and checked.

    Args:
        preset: One of ``PRESETS`` (tiny, small, medium, large).
        overrides: Field values, e.g. ``{"days": 14}``; text values are parsed (config files, env).

    Returns:
        The resolved spec.

    Raises:
        ConfigError: Unknown preset or field, a value of the wrong type, out of range, or a
            period that ends in the future.
    """
    if preset not in PRESETS:
        raise ConfigError(f'Unknown simulator preset "{preset}"; allowed: {", ".join(PRESETS)}')
    hints = typing.get_type_hints(ShopSpec)
    values = {}
    for name, value in (overrides or {}).items():
        if name not in hints:
            raise ConfigError(f'Unknown simulator option "{name}"; allowed: {", ".join(hints)}')
        values[name] = _coerce(name, value, hints[name])
    spec = replace(PRESETS[preset], **values)
    _check(spec)
    return spec


def _coerce(name: str, value: Any, kind: type) -> Any:
    try:
        if kind is datetime:
            return _as_datetime(value)
        if kind is int and (isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f'Simulator option "{name}" must be {kind.__name__}, got "{value}"') from None


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise TypeError(value)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _check(spec: ShopSpec) -> None:
    for name in _POSITIVE:
        if getattr(spec, name) < 1:
            raise ConfigError(f'Simulator option "{name}" must be at least 1, got {getattr(spec, name)}')
    for name in _RATES:
        if not 0.0 <= getattr(spec, name) <= 1.0:
            raise ConfigError(f'Simulator option "{name}" must be between 0 and 1, got {getattr(spec, name)}')
    if spec.sessions_per_user_day <= 0 or spec.lists_per_session < 1:
        raise ConfigError(
            "Simulator options sessions_per_user_day must be > 0 and lists_per_session >= 1, got "
            f"{spec.sessions_per_user_day} and {spec.lists_per_session}"
        )
    now = datetime.now(UTC).replace(tzinfo=None)
    if spec.end > now:
        raise ConfigError(
            f"Simulated period {spec.start:%Y-%m-%d} + {spec.days} days ends in the future; "
            "choose an earlier start or fewer days"
        )
