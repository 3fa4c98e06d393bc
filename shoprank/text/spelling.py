"""Spelling tolerance: a query word missing from the catalog's vocabulary becomes the most frequent
vocabulary word one slip away."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from shoprank.errors import ConfigError
from shoprank.text.segment import has_han, tokens


class Speller:
    """Corrects words to a vocabulary with counts (e.g. the words of the catalog's titles).

    A word is corrected when it is not in the vocabulary, has at least ``min_length`` letters and
    nothing else (numbers, short and Chinese words are left alone), and a vocabulary word is one
    edit away: a letter inserted, dropped, replaced, or two adjacent letters swapped. The most
    frequent such word wins (ties: the first in alphabetical order). Candidates are found through
    the vocabulary's single-letter deletes (symmetric delete), a few dictionary lookups per word.

    Example:
        >>> Speller({"drill": 10, "grill": 3}).correct(["cordless", "dirll", "gril", "2"])
        ['cordless', 'drill', 'grill', '2']
    """

    def __init__(self, counts: Mapping[str, int], min_length: int = 4) -> None:
        if min_length < 2:
            raise ConfigError(f"Speller min_length={min_length} is too short to correct safely; use 2 or more")
        self.counts = dict(counts)
        self.min_length = min_length
        self._words = {word for word in self.counts if _correctable(word, min_length - 1)}
        self._deletes: dict[str, str | tuple[str, ...]] = {}  # a lone word as itself: half the memory
        for word in self._words:
            for deleted in _deletes(word):
                known = self._deletes.get(deleted)
                self._deletes[deleted] = word if known is None else (*_listed(known), word)

    @classmethod
    def from_texts(cls, texts: Iterable[str | None], min_length: int = 4) -> Speller:
        """A speller over the ``tokens`` of ``texts`` and their counts."""
        return cls(Counter(word for text in texts for word in tokens(text)), min_length)

    def correct(self, words: Sequence[str]) -> list[str]:
        """``words`` with each correctable word replaced by its correction."""
        return [self.correct_word(word) for word in words]

    def correct_word(self, word: str) -> str:
        """The most frequent vocabulary word one edit away from ``word``, or ``word`` itself."""
        if word in self.counts or not _correctable(word, self.min_length):
            return word
        found = set(_listed(self._deletes.get(word, ())))
        for deleted in _deletes(word):
            if deleted in self._words:
                found.add(deleted)
            found.update(c for c in _listed(self._deletes.get(deleted, ())) if _one_edit(word, c))
        return min(found, key=lambda c: (-self.counts[c], c)) if found else word


def _correctable(word: str, min_length: int) -> bool:
    return len(word) >= min_length and word.isalpha() and not has_han(word)


def _listed(words: str | tuple[str, ...]) -> tuple[str, ...]:
    return (words,) if isinstance(words, str) else words


def _deletes(word: str) -> set[str]:
    """``word`` with one letter dropped, every way."""
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _one_edit(a: str, b: str) -> bool:
    """Whether two different words of the same length differ by one letter or one adjacent swap."""
    i = next(i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y)
    swapped = a[i + 1 : i + 2] == b[i] and b[i + 1 : i + 2] == a[i] and a[i + 2 :] == b[i + 2 :]
    return swapped or a[i + 1 :] == b[i + 1 :]
