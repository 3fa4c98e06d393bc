"""Personal data in free text (queries): e-mail addresses and phone numbers replaced by a word
that says what was there, by one rule implemented here and by the dbt macro ``scrub_pii``
(``dbt_project/macros/pii.sql``), with the same regular expressions (a subset both Python's ``re``
and RE2, DuckDB's, read alike); ``tests/code/test_text.py`` runs shared cases through both.

- An e-mail address: ``name@domain.tld`` (letters, digits and ``._%+-`` before the ``@``, a domain
  of letters, digits, ``.`` and ``-``, a top-level domain of 2+ letters) becomes ``EMAIL``.
- A phone number: 9 to 15 digits, each after at most two of ``-.() `` (``+1 (555) 123-4567``,
  ``06 12 34 56 78``), optionally after a ``+``, not inside a longer run of letters or digits,
  becomes ``PHONE``. A product code of that many digits (a UPC) goes too: a query loses it
  rather than keep a number that may be a person's.

Queries are scrubbed before they are normalized (``normalize_query``), in staging and in the
service's served log: no clear value reaches marts, training frames or served logs.
"""

from __future__ import annotations

import re

EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
PHONE = r"(^|[^A-Za-z0-9+])\+?[0-9](?:[-. ()]{0,2}[0-9]){8,14}($|[^A-Za-z0-9])"
"""With the characters around it (kept): RE2 has no lookarounds."""
_EMAIL, _PHONE, _DIGIT = re.compile(EMAIL), re.compile(PHONE), re.compile(r"[0-9]")


def scrub_pii(text: str | None) -> str | None:
    """``text`` with e-mail addresses replaced by ``EMAIL`` and phone numbers by ``PHONE``.

    Example:
        >>> scrub_pii("drill for jane.roe@example.org, call +1 (555) 123-4567")
        'drill for EMAIL, call PHONE'
    """
    if text is None or ("@" not in text and not _DIGIT.search(text)):  # nothing either rule could match
        return text
    return _PHONE.sub(r"\1PHONE\2", _PHONE.sub(r"\1PHONE\2", _EMAIL.sub("EMAIL", text)))
