"""Request-time transformations behind the on-demand feature views of ``feature_repo/``.

Feast runs an on-demand view's function from its source text, without the module around it, so
the views call into these functions: one implementation for training and serving, testable here.
Each takes the view's inputs as a DataFrame and returns its features.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

from shoprank.text import normalize_query


def price_to_user_mean(inputs: pd.DataFrame) -> pd.DataFrame:
    """The candidate's price over the mean price the user paid (missing without purchases)."""
    mean = inputs["purchase_price_mean_30d"].where(inputs["purchase_price_mean_30d"] > 0)
    return pd.DataFrame({"price_to_user_mean": (inputs["price"] / mean).astype("float64")})


def request_context(inputs: pd.DataFrame) -> pd.DataFrame:
    """Hour and weekday of the request (UTC), and the user's recency and tenure at that moment."""
    at = _utc(inputs["request_time"])
    return pd.DataFrame(
        {
            "hour_of_day": at.dt.hour.astype("int64"),
            "day_of_week": at.dt.dayofweek.astype("int64"),
            "hours_since_last_event": (at - _utc(inputs["last_event_at"])).dt.total_seconds() / 3600,
            "days_since_signup": (at - _utc(inputs["signup_time"])).dt.total_seconds() / 86400,
        }
    )


def candidate_category(inputs: pd.DataFrame) -> pd.DataFrame:
    """The user's 30-day activity share in the candidate's category (0 when none)."""
    affinity = pd.to_numeric(inputs["category_affinity_30d"], errors="coerce").fillna(0.0)
    return pd.DataFrame({"candidate_category_affinity": affinity.astype("float64")})


def query_title_match(inputs: pd.DataFrame) -> pd.DataFrame:
    """How the query matches the candidate: the retrieval's BM25 (0 when missing); the share of
    the query's words in the title, exactly and as a word stem (one word starts the other, at
    least 4 letters shared: "shoe" and "shoes"); the Jaccard similarity of their character
    trigrams (misspellings); whether the query's last word (mostly the product noun) and its
    numbers (sizes) are in the title; the whole query in the title; the brand in the query; the
    words of the query and of the title."""
    queries, titles, brands = (_normalized(inputs[c]) for c in ("query", "title", "brand"))
    names = ("overlap", "stems", "trigrams", "noun", "numbers", "phrase", "brand", "words", "title_words")
    columns: dict[str, list] = {name: [] for name in names}
    for query, title, brand_name in zip(queries, titles, brands, strict=True):
        query_words, _, query_trigrams = _text(query)
        _, title_words, title_trigrams = _text(title)
        prefixes = _prefixes(title)
        stems = [w in title_words or w in prefixes or not _prefixes(w).isdisjoint(title_words) for w in query_words]
        columns["overlap"].append(_share([w in title_words for w in query_words]))
        columns["stems"].append(_share(stems))
        columns["noun"].append(int(bool(stems) and stems[-1]))
        columns["numbers"].append(_share([w in title_words for w in query_words if w.isdigit()]))
        columns["trigrams"].append(_jaccard(query_trigrams, title_trigrams))
        columns["phrase"].append(int(bool(query) and f" {query} " in f" {title} "))
        columns["brand"].append(int(bool(brand_name) and f" {brand_name} " in f" {query} "))
        columns["words"].append(len(query_words))
        columns["title_words"].append(len(title_words))
    bm25 = pd.to_numeric(inputs["retrieval_bm25"], errors="coerce").fillna(0.0)
    return pd.DataFrame(
        {
            "title_bm25": bm25.to_numpy(dtype="float64"),
            "title_token_overlap": np.asarray(columns["overlap"], dtype="float64"),
            "title_stem_overlap": np.asarray(columns["stems"], dtype="float64"),
            "title_trigram_jaccard": np.asarray(columns["trigrams"], dtype="float64"),
            "title_has_query_noun": np.asarray(columns["noun"], dtype="int64"),
            "title_number_overlap": np.asarray(columns["numbers"], dtype="float64"),
            "title_has_query": np.asarray(columns["phrase"], dtype="int64"),
            "brand_in_query": np.asarray(columns["brand"], dtype="int64"),
            "query_words": np.asarray(columns["words"], dtype="int64"),
            "title_words": np.asarray(columns["title_words"], dtype="int64"),
        }
    )


def _share(matched: list[bool]) -> float:
    return sum(matched) / len(matched) if matched else 0.0


@lru_cache(maxsize=1 << 16)
def _text(text: str) -> tuple[tuple[str, ...], frozenset[str], frozenset[str]]:
    """A normalized text's words in order, as a set, and its character trigrams (the text padded
    with a blank on each side); cached, as titles and queries repeat across rows."""
    padded, words = f" {text} ", tuple(text.split())
    trigrams = frozenset(padded[i : i + 3] for i in range(len(padded) - 2)) if text else frozenset()
    return words, frozenset(words), trigrams


@lru_cache(maxsize=1 << 16)
def _prefixes(text: str) -> frozenset[str]:
    """The word stems a text's words stand for: every prefix of at least 4 letters of each word
    except the whole word ("shoes" -> "shoe"), so "shoe" and "shoes" share a stem."""
    return frozenset(word[:n] for word in text.split() for n in range(4, len(word)))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def _normalized(values: pd.Series) -> list[str]:
    """Normalized text of each value ("" when missing)."""
    return [_normalize(v) if isinstance(v, str) else "" for v in values]


@lru_cache(maxsize=1 << 16)
def _normalize(text: str) -> str:
    return normalize_query(text) or ""


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps as UTC (naive ones are UTC already); missing stays missing."""
    return pd.to_datetime(values, utc=True, errors="coerce")
