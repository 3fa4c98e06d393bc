"""Search candidates: the top items of the catalog index by BM25, within filters, backfilled with
popular items of the matched categories when fewer than ``k`` items match. A query word the index
lacks is first corrected to the index's most frequent word one edit away (``CatalogIndex.speller``).

Filters keep an item when its category path is the ``category`` or under it (``"Electronics"``
keeps ``"Electronics > TV & Video"``), its price is within ``[price_min, price_max]`` (an item
without a price fails a price filter) and, when the catalog tracks stock, ``in_stock`` holds.
Backfill adds, after the matches, the most popular allowed items (views in the past 7 days) of
the leaf categories of the query's matches, or of the allowed items when nothing matched and a
``category`` was given; their score is 0 and ``backfill`` is true.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from shoprank.errors import ConfigError
from shoprank.features.bm25 import SCALE, query_tokens
from shoprank.search.index import STOCK, CatalogIndex

SCHEMA = {"query": pl.Int64, "rank": pl.Int64, "item_id": pl.Utf8, "score": pl.Float64, "backfill": pl.Boolean}


@dataclass(frozen=True)
class Found:
    """One query's candidates, best first: matches by BM25 (ties by popularity, then item id),
    then backfill by popularity."""

    documents: np.ndarray  # rows of the index's items
    scores: np.ndarray  # BM25, 0 for backfill
    backfill: np.ndarray  # whether each is backfill

    def item_ids(self, index: CatalogIndex) -> list[str]:
        return [index.item_ids[document] for document in self.documents.tolist()]


def retrieve(
    index: CatalogIndex,
    query: str | None,
    k: int = 100,
    category: str | None = None,
    price_min: float | None = None,
    price_max: float | None = None,
    in_stock: bool | None = None,
    backfill: bool = True,
) -> pl.DataFrame:
    """The candidates of one query, best first: ``item_id, score, backfill`` (at most ``k`` rows).

    Raises:
        ConfigError: A filter is invalid (see ``retrieve_batch``).
    """
    found = retrieved(index, query, k, category, price_min, price_max, in_stock, backfill)
    return pl.DataFrame(
        {"item_id": found.item_ids(index), "score": found.scores, "backfill": found.backfill},
        schema={name: SCHEMA[name] for name in ("item_id", "score", "backfill")},
    )


def retrieve_batch(
    index: CatalogIndex,
    queries: Sequence[str | None],
    k: int = 100,
    category: str | None = None,
    price_min: float | None = None,
    price_max: float | None = None,
    in_stock: bool | None = None,
    backfill: bool = True,
) -> pl.DataFrame:
    """The candidates of many queries under the same filters: ``query`` (position in
    ``queries``), ``rank`` (0 = best), ``item_id``, ``score`` (BM25, 0 for backfill), ``backfill``.

    Raises:
        ConfigError: As ``retrieved`` says.
    """
    allowed = _checked(index, k, category, price_min, price_max, in_stock)
    found = [_found(index, query, k, allowed, backfill, category is not None) for query in queries]
    lengths = [len(each.documents) for each in found]
    documents = np.concatenate([np.empty(0, np.int64), *(each.documents for each in found)])
    return pl.DataFrame(
        {
            "query": np.repeat(np.arange(len(queries), dtype=np.int64), lengths),
            "rank": np.concatenate([np.empty(0, np.int64), *map(np.arange, lengths)]),
            "item_id": [index.item_ids[document] for document in documents.tolist()],
            "score": np.concatenate([np.empty(0), *(each.scores for each in found)]),
            "backfill": np.concatenate([np.empty(0, bool), *(each.backfill for each in found)]),
        },
        schema=SCHEMA,
    )


def retrieved(
    index: CatalogIndex,
    query: str | None,
    k: int = 100,
    category: str | None = None,
    price_min: float | None = None,
    price_max: float | None = None,
    in_stock: bool | None = None,
    backfill: bool = True,
) -> Found:
    """The candidates of one query (``retrieve``'s, as arrays: what serving reads).

    Raises:
        ConfigError: ``k`` is below 1, the price range is empty, the category is not in the
            catalog, or ``in_stock`` is asked of a catalog without stock.
    """
    allowed = _checked(index, k, category, price_min, price_max, in_stock)
    return _found(index, query, k, allowed, backfill, category is not None)


def _checked(
    index: CatalogIndex,
    k: int,
    category: str | None,
    price_min: float | None,
    price_max: float | None,
    in_stock: bool | None,
) -> np.ndarray:
    """The filters' ``allowed_items``, once ``k`` is checked.

    Raises:
        ConfigError: As ``retrieved`` says.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}; ask for the number of candidates wanted")
    return allowed_items(index, category, price_min, price_max, in_stock)


def _found(
    index: CatalogIndex, query: str | None, k: int, allowed: np.ndarray, backfill: bool, from_allowed: bool
) -> Found:
    """``query``'s ``k`` best allowed matches, then (with ``backfill``, when fewer matched) the
    most popular allowed items of the matches' categories that did not match, or of all allowed
    items (``from_allowed``) when nothing matched."""
    documents, scores = matches(index, query, k, allowed)
    fill = np.empty(0, np.int64)
    if backfill and len(documents) < k:
        fill = backfilled(index, documents, k - len(documents), allowed, from_allowed)
    return Found(
        np.concatenate([documents, fill]),
        np.concatenate([scores, np.zeros(len(fill))]),
        np.concatenate([np.zeros(len(documents), bool), np.ones(len(fill), bool)]),
    )


def allowed_items(
    index: CatalogIndex,
    category: str | None,
    price_min: float | None,
    price_max: float | None,
    in_stock: bool | None,
) -> np.ndarray:
    """A boolean per document: does the item pass the filters?

    Raises:
        ConfigError: As ``retrieve_batch`` says.
    """
    if category is None and price_min is None and price_max is None and in_stock is None:
        return np.ones(index.items.height, bool)
    items, keep = index.items, pl.lit(True)
    if category is not None:
        keep &= in_category(category)
        if not items.select(keep.any()).item():
            example = items["category_path"].drop_nulls().min()
            hint = f'give a category path or its beginning, e.g. "{example}"' if example else "drop the filter"
            raise ConfigError(f'Category "{category}" is not in the catalog index ({items.height:,} items); {hint}')
    if price_min is not None and price_max is not None and price_min > price_max:
        raise ConfigError(f"The price range [{price_min}, {price_max}] is empty; give price_min <= price_max")
    if price_min is not None:
        keep &= pl.col("price") >= price_min
    if price_max is not None:
        keep &= pl.col("price") <= price_max
    if in_stock is not None:
        if STOCK not in items.columns:
            raise ConfigError(
                f'The catalog index has no "{STOCK}" column (marts.dim_items does not track stock); '
                "drop the in-stock filter"
            )
        keep &= pl.col(STOCK) == in_stock
    return items.with_columns(__keep=keep.fill_null(False))["__keep"].to_numpy()


def in_category(category: str) -> pl.Expr:
    """Whether an item's ``category_path`` is ``category`` or under it."""
    return (pl.col("category_path") == category) | pl.col("category_path").str.starts_with(f"{category} > ")


def matches(index: CatalogIndex, query: str | None, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The documents of the ``k`` best allowed items that match a word of ``query`` and their
    BM25, best first (ties by popularity, then item id).

    Scores are bm25s's (``BM25.get_scores`` with the filter as weight mask); the top ``k`` are
    chosen among the matches only, which is 7x faster than ``BM25.retrieve``'s selection over
    the whole catalog (mostly zeros, which numpy's ``argpartition`` handles slowly).
    """
    [words] = query_tokens(index.bm25, [query], index.speller)
    if not words:
        return np.empty(0, np.int64), np.empty(0)
    vocabulary = index.bm25.vocab_dict
    scores = index.bm25.get_scores_from_ids([vocabulary[w] for w in words], weight_mask=allowed.astype(np.float64))
    best = top(scores, k)
    scaled = scores[best] * SCALE
    order = np.lexsort((index.ranks[best], -scaled))[:k]
    return best[order].astype(np.int64), scaled[order]


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """The documents of the ``k`` highest positive scores, and every document tied with the ``k``-th."""
    matched = np.flatnonzero(scores > 0)
    if len(matched) <= k:
        return matched
    return matched[scores[matched] >= np.partition(scores[matched], -k)[-k]]


def backfilled(
    index: CatalogIndex, matched: np.ndarray, need: int, allowed: np.ndarray, from_allowed: bool
) -> np.ndarray:
    """The documents of the ``need`` most popular allowed items that did not match, of the
    ``matched`` documents' categories, or (``from_allowed``, when nothing matched) of all."""
    if len(matched):
        categories = np.unique(index.category[matched])
        groups = [index.by_category[category] for category in categories[categories >= 0].tolist()]
        # a category's best need + matched allowed items hold the best need of its unmatched ones
        pool = np.concatenate(
            [np.empty(0, np.int64), *(group[allowed[group]][: need + len(matched)] for group in groups)]
        )
        pool = pool[~np.isin(pool, matched)]
    elif from_allowed:
        pool = index.by_popularity[allowed[index.by_popularity]][:need]
    else:
        return np.empty(0, np.int64)
    return pool[np.argsort(index.ranks[pool], kind="stable")][:need]
