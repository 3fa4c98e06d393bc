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

import numpy as np
import polars as pl

from shoprank.errors import ConfigError
from shoprank.features.bm25 import SCALE, query_tokens
from shoprank.search.index import STOCK, CatalogIndex

COLUMNS = ("query", "document", "score", "backfill")
SCHEMA = {"query": pl.Int64, "rank": pl.Int64, "item_id": pl.Utf8, "score": pl.Float64, "backfill": pl.Boolean}


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
    found = retrieve_batch(index, [query], k, category, price_min, price_max, in_stock, backfill)
    return found.select("item_id", "score", "backfill")


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
        ConfigError: ``k`` is below 1, the price range is empty, the category is not in the
            catalog, or ``in_stock`` is asked of a catalog without stock.
    """
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}; ask for the number of candidates wanted")
    allowed = allowed_items(index, category, price_min, price_max, in_stock)
    found = matches(index, queries, k, allowed)
    if backfill:
        found = pl.concat([found, backfilled(index, found, len(queries), k, allowed, category is not None)])
    return ranked(index, found).select(*SCHEMA).cast(SCHEMA)


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


def matches(index: CatalogIndex, queries: Sequence[str | None], k: int, allowed: np.ndarray) -> pl.DataFrame:
    """``query, document, score, backfill`` of the ``k`` best allowed items of each query that
    match a query word (ties broken by popularity, then item id).

    Scores are bm25s's (``BM25.get_scores`` with the filter as weight mask); the top ``k`` are
    chosen among the matches only, which is 7x faster than ``BM25.retrieve``'s selection over
    the whole catalog (mostly zeros, which numpy's ``argpartition`` handles slowly).
    """
    weights, vocabulary = allowed.astype(np.float64), index.bm25.vocab_dict
    rows = {"query": [np.empty(0, np.int64)], "document": [np.empty(0, np.int64)], "score": [np.empty(0)]}
    for query, words in enumerate(query_tokens(index.bm25, queries, index.speller)):
        if words:
            scores = index.bm25.get_scores_from_ids([vocabulary[w] for w in words], weight_mask=weights)
            best = top(scores, k)
            rows["query"].append(np.full(len(best), query, dtype=np.int64))
            rows["document"].append(best.astype(np.int64))
            rows["score"].append(scores[best] * SCALE)
    found = pl.DataFrame({name: np.concatenate(parts) for name, parts in rows.items()}).with_columns(
        backfill=pl.lit(False)
    )
    return ranked(index, found).filter(pl.col("rank") < k).select(*COLUMNS)


def top(scores: np.ndarray, k: int) -> np.ndarray:
    """The documents of the ``k`` highest positive scores, and every document tied with the ``k``-th."""
    matched = np.flatnonzero(scores > 0)
    if len(matched) <= k:
        return matched
    return matched[scores[matched] >= np.partition(scores[matched], -k)[-k]]


def backfilled(
    index: CatalogIndex, found: pl.DataFrame, queries: int, k: int, allowed: np.ndarray, from_allowed: bool
) -> pl.DataFrame:
    """``query, document, score, backfill`` of the popular items that fill each query's list up to
    ``k``: the matched leaf categories' (or, with ``from_allowed``, the allowed items' when
    nothing matched) most popular allowed items that did not match."""
    counts = found.group_by("query").len()
    short = (
        pl.DataFrame({"query": np.arange(queries, dtype=np.int64)})
        .join(counts, on="query", how="left")
        .select("query", need=k - pl.col("len").fill_null(0))
        .filter(pl.col("need") > 0)
    )
    if short.is_empty():
        return found.clear()
    items = index.items.with_row_index("document").filter(pl.Series(allowed))
    categories = attributes(index, found.join(short, on="query", how="semi"), "category_path").drop_nulls()
    pools = [
        categories.select("query", "category_path").unique().join(popular(items, categories, k), on="category_path")
    ]
    if from_allowed:
        unmatched = short.join(found, on="query", how="anti").select("query")
        pools.append(unmatched.join(popular(items, None, k), how="cross"))
    pool = pl.concat([p.select("query", "document", "popularity", "item_id") for p in pools])
    return (
        pool.join(short, on="query")
        .join(found, on=["query", "document"], how="anti")
        .sort("query", "popularity", "item_id", descending=[False, True, False])
        .filter(pl.int_range(pl.len()).over("query") < pl.col("need"))
        .select("query", "document", score=pl.lit(0.0), backfill=pl.lit(True))
    )


def popular(items: pl.DataFrame, categories: pl.DataFrame | None, k: int) -> pl.DataFrame:
    """The ``k`` most popular ``items`` of each of the ``categories`` (``category_path``), or of
    all of them (``None``)."""
    if categories is not None:
        items = items.join(categories.select("category_path").unique(), on="category_path", how="semi")
    ordered = items.sort("popularity", "item_id", descending=[True, False]).with_columns(
        pl.col("document").cast(pl.Int64)
    )
    return ordered.group_by("category_path", maintain_order=True).head(k) if categories is not None else ordered.head(k)


def ranked(index: CatalogIndex, found: pl.DataFrame) -> pl.DataFrame:
    """``found`` with ``item_id`` and ``rank`` in each query's list: matches by score, then
    backfill; ties by popularity, then item id."""
    order = ["query", "backfill", "score", "popularity", "item_id"]
    return (
        attributes(index, found, "item_id", "popularity")
        .sort(order, descending=[False, False, True, True, False])
        .with_columns(rank=pl.int_range(pl.len()).over("query"))
    )


def attributes(index: CatalogIndex, found: pl.DataFrame, *columns: str) -> pl.DataFrame:
    """``found`` with the ``columns`` of the items of its ``document`` column."""
    return pl.concat([found, index.items.select(columns)[found["document"]]], how="horizontal")
