"""Request-time transformations behind the on-demand feature views of ``feature_repo/``.

Feast runs an on-demand view's function from its source text, without the module around it, so
the views call into these functions: one implementation for training and serving, testable here.
Each takes the view's inputs as a DataFrame and returns its features.

The row-wise ones (each output row from its own input row) are written once over NumPy arrays
(``_row_wise``) and come in two forms: the DataFrame one the views call (training, and Feast's
reference read), and one over Python values by column (``VALUES``), which serving runs on one
request's rows without pandas: building a DataFrame costs half a millisecond, their arithmetic
microseconds.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import polars as pl
from scipy import sparse

from shoprank.text import tokens

_NUMBER = re.compile(r"\d+(?:[./]\d+)?")
US_PER_HOUR, US_PER_DAY = 3_600_000_000, 86_400_000_000
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday
TIMES, NUMBERS = "times", "numbers"  # how a row-wise transformation reads an input column
QUERY_TITLE_MATCH = (
    "title_bm25",
    "title_token_overlap",
    "title_stem_overlap",
    "title_trigram_jaccard",
    "title_has_query_noun",
    "title_number_overlap",
    "title_has_query",
    "brand_in_query",
    "query_words",
    "title_words",
)  # its outputs, in order
_EPOCH, _EPOCH_UTC, _MICROSECOND = datetime(1970, 1, 1), datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1)

Values = dict[str, list[Any]]
VALUES: dict[str, Callable[[dict[str, Sequence[Any]]], Values]] = {}
"""The row-wise transformations by name, over Python values by column (input name -> values, as
the on-demand view's function receives them); their outputs likewise, missing values as None."""


def _row_wise(*inputs: tuple[str, str]) -> Callable:
    """Make ``core`` (arrays of ``inputs``, each a column name and how it is read: ``TIMES`` as
    microseconds since the epoch in UTC, ``NUMBERS`` as doubles; NaN when missing; -> output
    arrays by name) a transformation of DataFrames, and register its form over Python values in
    ``VALUES`` under its name."""

    def wrap(core: Callable[..., dict[str, np.ndarray]]) -> Callable[[pd.DataFrame], pd.DataFrame]:
        def frame(data: pd.DataFrame) -> pd.DataFrame:
            return pd.DataFrame(core(*(_column(data[name], kind) for name, kind in inputs)))

        def values(data: dict[str, Sequence[Any]]) -> Values:
            done = core(*(_array(data[name], kind) for name, kind in inputs))
            return {name: python_values(output) for name, output in done.items()}

        frame.__name__, frame.__doc__ = core.__name__, core.__doc__
        VALUES[core.__name__] = values
        return frame

    return wrap


@_row_wise(("price", NUMBERS), ("purchase_price_mean_30d", NUMBERS))
def price_to_user_mean(price: np.ndarray, mean: np.ndarray) -> dict[str, np.ndarray]:
    """The candidate's price over the mean price the user paid (missing without purchases)."""
    return {"price_to_user_mean": np.divide(price, mean, out=np.full(len(price), np.nan), where=mean > 0)}


@_row_wise(("request_time", TIMES), ("last_event_at", TIMES), ("signup_time", TIMES))
def request_context(at: np.ndarray, last_event: np.ndarray, signup: np.ndarray) -> dict[str, np.ndarray]:
    """Hour and weekday of the request (UTC), and the user's recency and tenure at that moment."""
    days = np.floor_divide(at, US_PER_DAY)
    return {
        "hour_of_day": (np.floor_divide(at, US_PER_HOUR) % 24).astype("int64"),
        "day_of_week": ((days + EPOCH_WEEKDAY) % 7).astype("int64"),  # Monday 0
        "hours_since_last_event": (at - last_event) / 1e6 / 3600,
        "days_since_signup": (at - signup) / 1e6 / 86400,
    }


@_row_wise(("category_affinity_30d", NUMBERS))
def candidate_category(affinity: np.ndarray) -> dict[str, np.ndarray]:
    """The user's 30-day activity share in the candidate's category (0 when none)."""
    return {"candidate_category_affinity": np.where(np.isnan(affinity), 0.0, affinity)}


def query_title_match(inputs: pd.DataFrame) -> pd.DataFrame:
    """How the query matches the candidate: the retrieval's BM25 (0 when missing); the share of
    the query's words in the title, exactly and as a word stem (one word starts the other, at
    least 4 letters shared: "shoe" and "shoes"); the Jaccard similarity of their character
    trigrams (misspellings); whether the query's last word (mostly the product noun) and its
    numbers (sizes) are in the title; the whole query in the title; the brand in the query; the
    words of the query and of the title.

    Each distinct query and title is split once into sparse rows of words, stems and trigrams;
    a pair's matches are row-wise products of those rows, so no Python runs per input row."""
    q, queries = _distinct(inputs["query"])
    t, titles = _distinct(inputs["title"])
    b, brands = _distinct(inputs["brand"])
    pairs, pair = np.unique(q * len(titles) + t, return_inverse=True)
    q, t = pairs // len(titles), pairs % len(titles)  # of each distinct pair; `pair` maps rows to them
    query_words = [text.split() for text in queries]
    title_words = [set(text.split()) for text in titles]
    flat = [word for words in query_words for word in words]
    word, stems, in_title, title_stems = _token_rows(
        [[w] for w in flat], [_stems(w) for w in flat], title_words, [ws.union(*map(_stems, ws)) for ws in title_words]
    )
    query_trigrams, title_trigrams = _token_rows(list(map(_trigrams, queries)), list(map(_trigrams, titles)))
    # one entry per word of each pair's query
    lengths = np.fromiter(map(len, query_words), np.int64, len(queries))
    owner = np.repeat(np.arange(len(pairs)), lengths[q])
    nth = np.arange(len(owner)) - np.repeat(np.cumsum(lengths[q]) - lengths[q], lengths[q])
    position = (np.cumsum(lengths) - lengths)[q[owner]] + nth
    exact = _dot(word, position, in_title, t[owner]) > 0
    stem = exact | (_dot(word, position, title_stems, t[owner]) + _dot(stems, position, in_title, t[owner]) > 0)
    numeric = np.fromiter(map(_is_number, flat), bool, len(flat))[position]
    last = nth == lengths[q[owner]] - 1
    shared = _dot(query_trigrams, q, title_trigrams, t)
    union = query_trigrams.sum(axis=1)[q] + title_trigrams.sum(axis=1)[t] - shared
    per_pair = {
        "title_token_overlap": _share(owner, exact, lengths[q]),
        "title_stem_overlap": _share(owner, stem, lengths[q]),
        "title_trigram_jaccard": np.divide(shared, union, out=np.zeros(len(pairs)), where=union > 0),
        "title_has_query_noun": np.bincount(owner[last], stem[last], len(pairs)).astype("int64"),
        "title_number_overlap": _share(owner, exact & numeric, np.bincount(owner, numeric, len(pairs))),
        "title_has_query": _contains(titles[t], queries[q]),
    }
    return pd.DataFrame(
        {
            "title_bm25": pd.to_numeric(inputs["retrieval_bm25"], errors="coerce").fillna(0.0).to_numpy("float64"),
            **{name: values[pair] for name, values in per_pair.items()},
            "brand_in_query": _contains(queries[q[pair]], brands[b]),
            "query_words": lengths[q][pair],
            "title_words": np.fromiter(map(len, title_words), np.int64, len(titles))[t][pair],
        }
    )


class _Text(NamedTuple):
    """A normalized query or title as ``query_title_match`` reads it. Its sets are dicts of
    words (to None) and its sequences tuples: the garbage collector leaves them untracked, so a
    service that remembers many texts does not pay for them at every full collection."""

    text: str  # its words joined by blanks
    padded: str  # the text between two blanks (whole words are found in it with their blanks)
    words: tuple[str, ...]  # in order, repeats kept (a query's)
    vocabulary: dict[str, None]  # its distinct words (a title's)
    stemmed: dict[str, None]  # its words and their stems (a title's)
    stems: tuple[tuple[str, ...], ...]  # each word's stems (a query's)
    numbers: tuple[int, ...]  # the places of its words that are numbers (a query's)
    trigrams: dict[str, None]


@lru_cache(maxsize=1 << 16)
def _analysed(value: str | None) -> _Text:
    """A query's or title's words, stems and trigrams (remembered: a service sees the same titles
    and queries again and again)."""
    text = _normalize(value) if isinstance(value, str) else ""
    words = tuple(text.split())
    stems = tuple(tuple(_stems(word)) for word in words)
    numbers = tuple(place for place, word in enumerate(words) if _is_number(word))
    stemmed = dict.fromkeys(itertools.chain(words, *stems))
    return _Text(
        text, f" {text} ", words, dict.fromkeys(words), stemmed, stems, numbers, dict.fromkeys(_trigrams(text))
    )


def query_title_match_values(data: dict[str, Sequence[Any]]) -> Values:
    """``query_title_match`` over Python values by column (serving's form, equal to the DataFrame
    one bit for bit): each query, title and pair of them analysed once (and remembered: a service
    sees the same queries and titles again and again)."""
    bm25 = [0.0 if value is None or value != value else float(value) for value in data["retrieval_bm25"]]
    matched = list(map(_matched, data["query"], data["title"], data["brand"]))
    columns = (
        [list(column) for column in zip(*matched, strict=True)] if matched else [[] for _ in QUERY_TITLE_MATCH[1:]]
    )
    return dict(zip(QUERY_TITLE_MATCH, [bm25, *columns], strict=True))


@lru_cache(maxsize=1 << 18)
def _matched(query: str | None, title: str | None, brand: str | None) -> tuple:
    """``query_title_match``'s outputs but the BM25 of one query, title and brand."""
    q, t, b = _analysed(query), _analysed(title), _analysed(brand)
    vocabulary, stemmed = t.vocabulary, t.stemmed
    exact = [word in vocabulary for word in q.words]
    stem = [
        found or word in stemmed or not vocabulary.keys().isdisjoint(stems)
        for found, word, stems in zip(exact, q.words, q.stems)  # noqa: B905 - as long by construction
    ]
    numbers = [exact[place] for place in q.numbers]
    shared = len(q.trigrams.keys() & t.trigrams.keys())
    return (
        _ratio(sum(exact), len(exact)),
        _ratio(sum(stem), len(stem)),
        _ratio(shared, len(q.trigrams) + len(t.trigrams) - shared),
        int(bool(stem) and stem[-1]),
        _ratio(sum(numbers), len(numbers)),
        int(bool(q.text) and q.padded in t.padded),
        int(bool(b.text) and b.padded in q.padded),
        len(q.words),
        len(vocabulary),
    )


def _ratio(part: int, whole: int) -> float:
    """``part / whole``, 0 when ``whole`` is 0."""
    return part / whole if whole else 0.0


VALUES["query_title_match"] = query_title_match_values


def _token_rows(*groups: list[Iterable[str]]) -> list[sparse.csr_array]:
    """Each group's rows of tokens as a binary sparse matrix, all over one vocabulary (a row's
    tokens must be distinct)."""
    rows = [list(tokens) for group in groups for tokens in group]
    lengths = np.fromiter(map(len, rows), np.int64, len(rows))
    columns, vocabulary = pd.factorize(pd.Series([token for tokens in rows for token in tokens], dtype=object))
    starts = np.concatenate([[0], np.cumsum([len(group) for group in groups])])
    matrices = []
    for first, stop in zip(starts[:-1], starts[1:], strict=True):
        indptr = np.concatenate([[0], np.cumsum(lengths[first:stop])])
        offset = lengths[:first].sum()
        indices = columns[offset : offset + indptr[-1]]
        shape = (stop - first, len(vocabulary))
        matrices.append(sparse.csr_array((np.ones(len(indices)), indices, indptr), shape=shape))
    return matrices


def _dot(a: sparse.csr_array, rows_a: np.ndarray, b: sparse.csr_array, rows_b: np.ndarray) -> np.ndarray:
    """Row-wise dot products ``a[rows_a[i]] . b[rows_b[i]]``: the tokens two binary rows share."""
    return np.asarray(a[rows_a].multiply(b[rows_b]).sum(axis=1)).ravel()


def _share(owner: np.ndarray, matched: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per pair, matched entries over ``counts`` (0 when there are none)."""
    hits = np.bincount(owner, matched, len(counts))
    return np.divide(hits, counts, out=np.zeros(len(counts)), where=counts > 0)


def _contains(texts: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """1 where the text holds the part as whole words, else 0 (an empty part: 0)."""
    frame = pl.DataFrame({"text": texts, "part": parts}, schema={"text": pl.String, "part": pl.String})
    padded = pl.concat_str(pl.lit(" "), pl.col("part"), pl.lit(" "))
    found = pl.concat_str(pl.lit(" "), pl.col("text"), pl.lit(" ")).str.contains(padded, literal=True)
    return frame.select((found & (pl.col("part") != "")).cast(pl.Int64)).to_series().to_numpy()


def _stems(word: str) -> list[str]:
    """The stems a word stands for: its prefixes of at least 4 letters except the whole word
    ("shoes" -> "shoe"), so "shoe" and "shoes" share a stem."""
    return [word[:n] for n in range(4, len(word))]


def _trigrams(text: str) -> set[str]:
    """Character trigrams of a normalized text padded with a blank on each side (none when empty)."""
    padded = f" {text} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)} if text else set()


def _distinct(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Each value's code and the distinct normalized texts ("" when missing)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return codes, np.asarray([_normalize(v) if isinstance(v, str) else "" for v in uniques], dtype=object)


@lru_cache(maxsize=1 << 16)
def _normalize(text: str) -> str:
    """The text's words (``shoprank.text.tokens``: Chinese segmented) joined by blanks."""
    return " ".join(tokens(text))


def _is_number(word: str) -> bool:
    """A whole number, decimal or fraction as normalization writes them ("18", "0.5", "1/3")."""
    return _NUMBER.fullmatch(word) is not None


def _column(values: pd.Series, kind: str) -> np.ndarray:
    """A DataFrame column read as a row-wise transformation reads it (``TIMES``, ``NUMBERS``)."""
    if kind == TIMES:
        return _micros(values)
    return pd.to_numeric(values, errors="coerce").to_numpy("float64", na_value=np.nan)


def _micros(values: pd.Series) -> np.ndarray:
    """Timestamps as microseconds since the epoch in UTC (naive ones are UTC already), as floats:
    NaN when missing (whole microseconds up to the year 2255 are exact in a double)."""
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        values = pd.to_datetime(values, utc=True, errors="coerce")
    times = values.array.as_unit("us")  # a zoned one holds UTC instants: read without pandas' tz_convert
    return np.where(times.isna(), np.nan, times.asi8.astype("float64"))


def _array(values: Sequence[Any], kind: str) -> np.ndarray:
    """Python values read as ``_column`` reads a DataFrame column: datetimes (naive ones are UTC)
    as microseconds, numbers as doubles; None as NaN."""
    if kind == TIMES:  # mostly one value repeated (the request time, the user's times): each converted once
        micros = {v: np.nan if v is None else _micro(v) for v in set(values)}
        return np.array(list(map(micros.__getitem__, values)), "float64")
    return np.array(values, "float64")  # None becomes NaN


def _micro(time: datetime) -> float:
    """A datetime as microseconds since the epoch in UTC (naive: UTC already)."""
    return float((time - (_EPOCH if time.tzinfo is None else _EPOCH_UTC)) // _MICROSECOND)


def python_values(values: np.ndarray) -> list[Any]:
    """An output array as Python values, NaN as None (as Arrow reads a pandas column back)."""
    listed = values.tolist()
    return [None if value != value else value for value in listed] if values.dtype.kind == "f" else listed
