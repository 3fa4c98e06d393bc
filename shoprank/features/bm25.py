"""BM25 of a query against catalog titles: the retrieval score a search ranker reads.

The collection is every catalog title, both texts tokenized by ``shoprank.text.tokens``. The score
reaches the models as a request-time field (``retrieval_bm25``): the retrieval that found a
candidate knows it, so training frames carry it per row and serving passes it with the request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from shoprank.text import tokens

K1, B = 1.2, 0.75


@dataclass(frozen=True)
class TitleIndex:
    """Term statistics of a set of titles.

    Attributes:
        terms: ``item_id, token, tf`` (each word of each title with its count in the title).
        lengths: ``item_id, length`` (words per title).
        idf: ``token, idf`` (``log(1 + (N - df + 0.5) / (df + 0.5))``).
        mean_length: Mean words per title.
    """

    terms: pl.DataFrame
    lengths: pl.DataFrame
    idf: pl.DataFrame
    mean_length: float

    @classmethod
    def build(cls, item_ids: Sequence[str], titles: Sequence[str | None]) -> TitleIndex:
        """Index the titles of the items (an item without a title matches nothing)."""
        words = pl.Series("token", [tokens(title) for title in titles], dtype=pl.List(pl.Utf8))
        terms = (
            pl.DataFrame({"item_id": list(item_ids), "token": words})
            .explode("token")
            .drop_nulls("token")
            .group_by("item_id", "token")
            .agg(tf=pl.len().cast(pl.Int64))
        )
        lengths = terms.group_by("item_id").agg(length=pl.col("tf").sum())
        documents = lengths.height
        idf = terms.group_by("token").agg(idf=((documents - pl.len() + 0.5) / (pl.len() + 0.5) + 1).log())
        return cls(terms, lengths, idf, float(lengths["length"].mean() or 0.0))

    def score(self, queries: Sequence[str | None], item_ids: Sequence[str]) -> np.ndarray:
        """BM25 (k1 = 1.2, b = 0.75) of each query against its item's title (0 without a query)."""
        row = "__row"
        pairs = pl.DataFrame(
            {
                row: np.arange(len(item_ids)),
                "item_id": pl.Series(list(item_ids), dtype=pl.Utf8),
                "token": pl.Series([sorted(set(tokens(q))) for q in queries], dtype=pl.List(pl.Utf8)),
            }
        ).explode("token")
        saturation = pl.col("tf") * (K1 + 1) / (pl.col("tf") + K1 * (1 - B + B * pl.col("length") / self.mean_length))
        scored = (
            pairs.join(self.terms, on=["item_id", "token"])
            .join(self.lengths, on="item_id")
            .join(self.idf, on="token")
            .group_by(row)
            .agg(score=(pl.col("idf") * saturation).sum())
        )
        every = pl.DataFrame({row: np.arange(len(item_ids))})
        ordered = every.join(scored, on=row, how="left", maintain_order="left")
        return ordered["score"].fill_null(0.0).to_numpy().astype(np.float64)
