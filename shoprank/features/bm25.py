"""BM25 of a query against catalog titles: the retrieval score a search ranker reads.

The collection is every catalog title, both texts tokenized by ``shoprank.text.tokens``. The score
reaches the models as a request-time field (``retrieval_bm25``): the retrieval that found a
candidate knows it, so training frames carry it per row and serving passes it with the request.

The index is a ``bm25s`` index (Lucene's BM25: ``idf = log(1 + (N - df + 0.5) / (df + 0.5))``).
bm25s leaves out Lucene's constant ``k1 + 1`` factor of the term frequency part, which does not
change a ranking; scores here multiply it back, so they are the classic Lucene values.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np
import polars as pl
import scipy.sparse as sp

from shoprank.text import Speller, tokens

K1, B = 1.2, 0.75
SCALE = K1 + 1  # bm25s's "lucene" term frequency part is Lucene's divided by k1 + 1


def index_documents(documents: Sequence[list[str]]) -> bm25s.BM25:
    """A bm25s index (k1 = 1.2, b = 0.75, float64) of token lists (at least one)."""
    index = bm25s.BM25(k1=K1, b=B, method="lucene", dtype="float64")
    index.index(list(documents), show_progress=False)
    return index


def query_tokens(index: bm25s.BM25, queries: Sequence[str | None], speller: Speller | None = None) -> list[list[str]]:
    """The distinct words of each query that the index knows (a query word counts once), each
    first corrected by ``speller`` when given."""
    vocabulary = index.vocab_dict
    spelled = (speller.correct(tokens(query)) if speller else tokens(query) for query in queries)
    return [sorted({word for word in words if word in vocabulary and word}) for words in spelled]


def token_weights(index: bm25s.BM25) -> sp.csc_matrix:
    """bm25s's token weights as a sparse matrix (a copy, its documents sorted in each column): a
    row per document, a column per token."""
    scores = index.scores
    shape = (scores["num_docs"], len(scores["indptr"]) - 1)
    weights = sp.csc_matrix((scores["data"], scores["indices"], scores["indptr"]), shape=shape, copy=True)
    weights.sort_indices()
    return weights


def pair_scores(
    weights: sp.csc_matrix, vocabulary: dict[str, int], documents: np.ndarray, queries: Sequence[list[str]]
) -> np.ndarray:
    """BM25 of each query's tokens against its document (row in the index; -1 for none), from the
    index's ``token_weights`` and vocabulary: bm25s's precomputed weights of the pair alone (what
    ``BM25.get_scores`` sums over every document) times ``SCALE``. Per distinct query, each of its
    words' weights is looked up at its rows' documents (a binary search in the word's column) and
    added in the query's word order, so each sum is the same float whatever the batch."""
    documents = np.asarray(documents, dtype=np.int64)
    totals = np.zeros(len(queries))
    rows_of: dict[tuple[str, ...], list[int]] = {}
    for row, words in enumerate(queries):
        rows_of.setdefault(tuple(words), []).append(row)
    for words, rows in rows_of.items():
        at = documents[rows]
        total = np.zeros(len(rows))
        for word in words:
            column = vocabulary[word]
            start, end = weights.indptr[column], weights.indptr[column + 1]
            found = weights.indices[start:end]
            if not len(found):
                continue
            place = np.minimum(np.searchsorted(found, at), len(found) - 1)
            total += np.where(found[place] == at, weights.data[start:end][place], 0.0)
        totals[rows] = total
    return totals * SCALE


@dataclass(frozen=True)
class TitleIndex:
    """A bm25s index of a set of titles.

    Attributes:
        bm25: The index; its documents are the items whose title has at least one word.
        documents: ``item_id, document`` (the item's row in the index).
    """

    bm25: bm25s.BM25
    documents: pl.DataFrame

    @classmethod
    def build(cls, item_ids: Sequence[str], titles: Sequence[str | None]) -> TitleIndex:
        """Index the titles of the items (an item without a title matches nothing; an item listed
        twice keeps its first title)."""
        words = [tokens(title) for title in titles]
        first = pl.Series(list(item_ids), dtype=pl.Utf8).is_first_distinct().to_list()
        kept = [k for k, title in enumerate(words) if title and first[k]]
        documents = pl.DataFrame(
            {"item_id": pl.Series([item_ids[k] for k in kept], dtype=pl.Utf8), "document": np.arange(len(kept))}
        )
        # bm25s cannot index nothing: a catalog without titles gets one empty word, which no query has
        return cls(index_documents([words[k] for k in kept] or [[""]]), documents)

    def __post_init__(self) -> None:
        documents = dict(zip(self.documents["item_id"].to_list(), self.documents["document"].to_list(), strict=True))
        object.__setattr__(self, "_document_of", documents)  # by item id
        object.__setattr__(self, "_weights", token_weights(self.bm25))

    def score(self, queries: Sequence[str | None], item_ids: Sequence[str]) -> np.ndarray:
        """BM25 (k1 = 1.2, b = 0.75) of each query against its item's title (0 without a query)."""
        documents = np.fromiter(map(self._document_of.get, item_ids, itertools.repeat(-1)), np.int64, len(item_ids))
        distinct = list(dict.fromkeys(queries))
        words = dict(zip(distinct, query_tokens(self.bm25, distinct), strict=True))
        return pair_scores(self._weights, self.bm25.vocab_dict, documents, [words[q] for q in queries])
