"""Words of a text for matching: its normalized words, the Chinese ones segmented by jieba."""

from __future__ import annotations

import logging
import re
from functools import cache, lru_cache

import jieba

from shoprank.text.normalize import normalize_query

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def tokens(text: str | None) -> list[str]:
    """The words of ``normalize_query(text)``, a word with Chinese characters segmented by jieba's
    dictionary (deterministic); empty for missing or blank text.

    Example:
        >>> tokens("乐高 LEGO积木 3岁")
        ['乐高', 'lego', '积木', '3', '岁']
    """
    normalized = normalize_query(text)
    if not normalized:
        return []
    words = normalized.split(" ")
    if not has_han(normalized):
        return words
    return [piece for word in words for piece in _segment(word)]


def has_han(word: str) -> bool:
    """Whether ``word`` holds a Chinese (Han) character."""
    return _HAN.search(word) is not None


@lru_cache(maxsize=1 << 16)
def _segment(word: str) -> tuple[str, ...]:
    return tuple(_jieba().lcut(word)) if has_han(word) else (word,)


@cache
def _jieba() -> jieba.Tokenizer:
    """jieba's default dictionary, loaded once, on the first Chinese word, without log lines."""
    logging.getLogger(jieba.__name__).setLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    tokenizer.initialize()
    return tokenizer
