"""Query and title text as shoprank groups and compares it: one rule, implemented here and by the
dbt macro ``normalize_query`` (``dbt_project/macros/text.sql``); ``tests/code/test_text.py`` runs
the shared cases of ``tests/fixtures/text_cases.csv`` through both.

The rule, in order:

0. E-mail addresses and phone numbers become ``EMAIL`` and ``PHONE`` (``shoprank.text.pii``).
1. Unicode: NFC, then the compatibility characters that matter as NFKC maps them (``COMPATIBILITY``):
   fullwidth ASCII U+FF01-U+FF5E (``Ａ１．`` -> ``A1.``), the ligatures U+FB00-U+FB06 (``ﬁ`` -> ``fi``),
   superscript and subscript digits; a vulgar fraction (U+00BC-U+00BE, U+2150-U+215E, U+2189) becomes
   a blank and ``N/D`` (``1½`` -> ``1 1/2``), the fraction and division slashes U+2044, U+2215 ``/``,
   the primes ``′ ″`` ``'`` and ``"``. ``İ`` -> ``I`` and ``Σ`` -> ``σ`` (so that both engines lower
   case alike: Python would write ``i̇`` and a final ``ς``). Then lower case. Other compatibility
   characters (halfwidth katakana, circled digits, ``™``...) are left as they are.
2. A quote after a digit is a unit: ``6"`` -> ``6 in``; ``8'`` -> ``8 ft`` unless an ``s`` follows (``80's``).
3. Every run of characters other than letters, marks and numbers (Unicode L, M, N), ``.`` and ``/``
   becomes one blank. A single ``.`` or ``/`` stays only between two digits (``2.5``, ``1/2``,
   ``1.2.3``); a ``.`` after a blank and before a digit becomes ``0.`` (``.5`` -> ``0.5``); any other
   ``.`` and ``/`` separates. Digits are ASCII 0-9 here and below; ``1,000`` stays two numbers.
4. Digits and other characters are split apart: ``18v`` -> ``18 v``, ``2x4`` -> ``2 x 4``, ``3岁`` -> ``3 岁``.
5. A unit word after a number takes its family's canonical form (``UNITS``: abbreviations for length,
   weight and volume, words for electricity, symbols for metric units): ``18 volts`` -> ``18 volt``.
6. A decimal loses its trailing zeros (``2.50`` -> ``2.5``, ``2.0`` -> ``2``). A fraction ``N/D`` with
   ``D`` in ``FRACTION_DENOMINATORS`` and ``0 < N < D`` becomes a decimal, added to the whole number
   (1 to 6 digits) just before it (``1-1/2`` -> ``1.5``, ``1/2`` -> ``0.5``); other fractions stay.
7. Blanks collapse and are trimmed; an empty result is None.

Chinese and Latin letters stay one word (``lego积木``): ``tokens`` segments it. The tests check that
both engines agree on every assigned code point of planes 0 and 1 in Python's Unicode version;
characters assigned later are separators here and may be letters in DuckDB.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from functools import cache, lru_cache

from shoprank.text.pii import scrub_pii

UNITS: dict[str, tuple[str, ...]] = {
    "in": ("inch", "inches"),
    "ft": ("foot", "feet"),
    "yd": ("yds", "yard", "yards"),
    "lb": ("lbs", "pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "gal": ("gallon", "gallons"),
    "qt": ("quart", "quarts"),
    "volt": ("v", "volts"),
    "watt": ("w", "watts"),
    "amp": ("a", "amps", "ampere", "amperes"),
    "mm": ("millimeter", "millimeters", "millimetre", "millimetres"),
    "cm": ("centimeter", "centimeters", "centimetre", "centimetres"),
    "m": ("meter", "meters", "metre", "metres"),
    "ml": ("milliliter", "milliliters", "millilitre", "millilitres"),
    "l": ("liter", "liters", "litre", "litres"),
    "kg": ("kgs", "kilogram", "kilograms"),
    "g": ("gram", "grams"),
    "pack": ("pk", "pks", "packs"),
    "piece": ("pc", "pcs", "pieces"),
}
"""Canonical form of each unit family -> its other spellings (after a number only)."""

FRACTION_DENOMINATORS = (2, 4, 8, 16, 32, 64)

_NFKC = "ﬀﬁﬂﬃﬄﬅﬆ⁰¹²³⁴⁵⁶⁷⁸⁹₀₁₂₃₄₅₆₇₈₉"
_VULGAR_FRACTIONS = "¼½¾⅐⅑⅒⅓⅔⅕⅖⅗⅘⅙⅚⅛⅜⅝⅞↉"
_OTHERS = {"⁄": "/", "∕": "/", "′": "'", "″": '"', "İ": "I", "Σ": "σ"}


def _compatibility() -> dict[int, str]:
    """The ``str.translate`` table of step 1."""
    fullwidth = {code: chr(code - 0xFEE0) for code in range(0xFF01, 0xFF5F)}
    nfkc = {ord(c): unicodedata.normalize("NFKC", c) for c in _NFKC}
    fractions = {ord(c): " " + unicodedata.normalize("NFKC", c).replace("⁄", "/") for c in _VULGAR_FRACTIONS}
    return fullwidth | nfkc | fractions | {ord(c): mapped for c, mapped in _OTHERS.items()}


COMPATIBILITY = _compatibility()
_CANONICAL_UNIT = {spelling: unit for unit, spellings in UNITS.items() for spelling in (unit, *spellings)}

_DIGIT = re.compile(r"[0-9]")
_INCH_QUOTE = re.compile(r'([0-9])"')
_FOOT_QUOTE = re.compile(r"([0-9])'([^s])")
_LEADING_DOT = re.compile(r" \.([0-9])")
_WORD = re.compile(r"[0-9]+(?:[./][0-9]+)*|[^0-9 ./]+")
_UNIT = re.compile(rf"([0-9])  ({'|'.join(_CANONICAL_UNIT)}) ")
_TRAILING_ZEROS = re.compile(r" ([0-9]+\.[0-9]*[1-9])0+ ")
_POINT_ZEROS = re.compile(r" ([0-9]+)\.0+ ")
_FRACTION = re.compile(r" (?:([0-9]{1,6})  )?([0-9]+)/([0-9]+) ")


def normalize_query(text: str | None) -> str | None:
    """``text`` normalized by the rule of this module's docstring; None for missing or blank text.

    Example:
        >>> normalize_query("DEWALT 20V MAX 1-1/2 in. Drill, ½-Inch Chuck")
        'dewalt 20 volt max 1.5 in drill 0.5 in chuck'
    """
    if text is None:
        return None
    return _normalize(text) or None


@lru_cache(maxsize=1 << 17)
def _normalize(text: str) -> str:
    """The normalized text ("" when nothing is left); remembered, personal data scrubbed included."""
    text = scrub_pii(text)
    is_ascii = text.isascii()
    folded = text.lower() if is_ascii else _fold(text)
    if not _DIGIT.search(folded):
        return " ".join(_separators("", is_ascii).sub(" ", folded).split())
    spaced = _UNIT.sub(_unit, f" {'  '.join(_words(folded, is_ascii))} ")
    if "." in spaced:
        spaced = _POINT_ZEROS.sub(r" \1 ", _TRAILING_ZEROS.sub(r" \1 ", spaced))
    if "/" in spaced:
        spaced = _FRACTION.sub(_fraction, spaced)
    return " ".join(spaced.split())


def _fold(text: str) -> str:
    """Step 1: NFC, the compatibility characters, lower case."""
    return unicodedata.normalize("NFC", text).translate(COMPATIBILITY).lower()


def _words(text: str, is_ascii: bool) -> list[str]:
    """Steps 2 to 4: the words of a text, numbers apart (the macro's regular expressions in fewer passes)."""
    if '"' in text:
        text = _INCH_QUOTE.sub(r"\1 in ", text)
    if "'" in text:
        text = _FOOT_QUOTE.sub(r"\1 ft \2", f"{text} ")
    text = _separators("./", is_ascii).sub(" ", f" {text}")
    if " ." in text:
        text = _LEADING_DOT.sub(r" 0.\1", text)
    return _WORD.findall(text)


@cache
def _separators(keep: str, is_ascii: bool) -> re.Pattern[str]:
    """Runs of characters that are not letters, marks, numbers (Unicode L, M, N) nor in ``keep``,
    in a lower-case text (a faster expression for an ASCII text)."""
    if is_ascii:
        return re.compile(rf"[^a-z0-9{re.escape(keep)}]+")
    return re.compile(rf"(?:[^\w{_marks()}{re.escape(keep)}]|_)+")


@cache
def _marks() -> str:
    """Unicode category M (marks) as a regular expression class body (Python's ``\\w`` lacks them)."""
    codes = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "M"]
    starts = [c for i, c in enumerate(codes) if i == 0 or codes[i - 1] != c - 1]
    ends = [c for i, c in enumerate(codes) if i == len(codes) - 1 or codes[i + 1] != c + 1]
    return "".join(f"\\U{start:08x}-\\U{end:08x}" for start, end in zip(starts, ends, strict=True))


def _unit(match: re.Match[str]) -> str:
    return f"{match[1]}  {_CANONICAL_UNIT[match[2]]} "


def _fraction(match: re.Match[str]) -> str:
    """Step 6: a fraction (and its whole number) as a decimal, or unchanged."""
    whole, numerator, denominator = int(match[1] or 0), int(match[2]), int(match[3])
    if denominator not in FRACTION_DENOMINATORS or not 0 < numerator < denominator:
        return match[0]
    return f" {whole + numerator / denominator} "
