"""Terms of titles and queries: one id per term, with synonyms and typo variants.

A *term* is a phrase that fills one slot of a title (brand, attribute, noun, size, color) or of a
query. Synonyms and typo variants are terms too; each points at the canonical term it stands for
and carries the *credit* a text matcher gives it (exact 1, synonym and typo less).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from shoprank.simulate import taxonomy
from shoprank.simulate.arrays import gather

SYNONYM_CREDIT = 0.5
TYPO_CREDIT = 0.35
TYPO_VARIANTS = 3
TYPO_KINDS = ("swap", "drop", "double")


def make_typo(term: str, rng: np.random.Generator) -> str:
    """Return ``term`` with one slip: two adjacent letters swapped, a letter dropped or doubled.

    Args:
        term: A lower-case term with at least two letters.
        rng: Source of the slip's kind and place.

    Returns:
        A different string one edit (or one transposition) away from ``term``.
    """
    letters = [i for i, c in enumerate(term) if c.isalpha()]
    while True:
        kind = TYPO_KINDS[rng.integers(len(TYPO_KINDS))]
        i = letters[rng.integers(len(letters))]
        if kind == "swap" and i + 1 < len(term) and term[i + 1].isalpha() and term[i + 1] != term[i]:
            return term[:i] + term[i + 1] + term[i] + term[i + 2 :]
        if kind == "drop" and len(letters) > 3:
            return term[:i] + term[i + 1 :]
        if kind == "double":
            return term[: i + 1] + term[i:]


@dataclass(frozen=True)
class Vocabulary:
    """Every term of the shop.

    Attributes:
        text: Query form of each term (lower case).
        display: Title form of each term ("Stainless Steel", "750 ml", "TV").
        canonical: Id of the term a term stands for (itself for plain terms).
        credit: Match credit of the term against its canonical term.
        typos: ``TYPO_VARIANTS`` typo term ids per term (-1 for typo terms themselves).
    """

    text: pl.Series
    display: pl.Series
    canonical: np.ndarray
    credit: np.ndarray
    typos: np.ndarray

    @classmethod
    def build(cls, rng: np.random.Generator) -> Vocabulary:
        """Collect the terms of ``taxonomy`` and add synonyms and typo variants."""
        builder = _Builder()
        for leaf in taxonomy.leaves():
            noun = builder.add(leaf.noun, taxonomy.display(leaf.noun))
            for synonym in leaf.synonyms:
                builder.add(synonym, synonym, noun, SYNONYM_CREDIT)
            for size in leaf.sizes:
                builder.add(size.lower(), size)
        for brands, attributes, colors in taxonomy.STYLE.values():
            for term in (*brands, *attributes, *colors):
                builder.add(term.lower(), term)
        base = len(builder.text)
        typos = np.full((base, TYPO_VARIANTS), -1, dtype=np.int32)
        for term_id in range(base):
            text = builder.text[term_id]
            if sum(c.isalpha() for c in text) < 3:
                continue
            for k in range(TYPO_VARIANTS):
                slip = make_typo(text, rng)
                if slip not in builder.ids:
                    typos[term_id, k] = builder.add(
                        slip, slip, builder.canonical[term_id], builder.credit[term_id] * TYPO_CREDIT
                    )
        typos = np.vstack([typos, np.full((len(builder.text) - base, TYPO_VARIANTS), -1, dtype=np.int32)])
        return cls(
            text=pl.Series("text", builder.text, dtype=pl.String),
            display=pl.Series("display", builder.display, dtype=pl.String),
            canonical=np.array(builder.canonical, dtype=np.int32),
            credit=np.array(builder.credit),
            typos=typos,
        )

    def ids(self, texts: tuple[str, ...] | list[str]) -> list[int]:
        """Ids of terms given in query or display form."""
        index = {t: i for i, t in enumerate(self.text)}
        return [index[t.lower()] for t in texts]

    def join(self, ids: np.ndarray, *, titles: bool = False) -> pl.Series:
        """Join rows of term ids (-1 skips a slot) into strings, in display or query form."""
        forms = self.display if titles else self.text
        parts = [gather(forms, col) for col in ids.T]
        frame = pl.DataFrame({str(k): p for k, p in enumerate(parts)})
        return frame.select(pl.concat_str(pl.all(), separator=" ", ignore_nulls=True)).to_series()


class _Builder:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.text: list[str] = []
        self.display: list[str] = []
        self.canonical: list[int] = []
        self.credit: list[float] = []

    def add(self, text: str, display: str, canonical: int | None = None, credit: float = 1.0) -> int:
        if text in self.ids:
            return self.ids[text]
        term_id = len(self.text)
        self.ids[text] = term_id
        self.text.append(text)
        self.display.append(display)
        self.canonical.append(term_id if canonical is None else canonical)
        self.credit.append(credit)
        return term_id
