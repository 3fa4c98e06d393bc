"""Query and title text as shoprank compares it: one normalization for Python and dbt (the dbt
macro `normalize_query` implements the same rule)."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\W_]+")


def normalize_query(text: str | None) -> str | None:
    """Lower case; every run of characters that are not letters or digits becomes one blank.

    Returns None for missing or blank text.

    Example:
        >>> normalize_query("  Red-Shoes, size 42!")
        'red shoes size 42'
    """
    if text is None:
        return None
    normalized = _SEPARATORS.sub(" ", text.lower()).strip()
    return normalized or None


def tokens(text: str | None) -> list[str]:
    """The normalized words of ``text`` (empty for missing text)."""
    normalized = normalize_query(text)
    return normalized.split(" ") if normalized else []
