"""Ground truth: how relevant an item really is to a user, computed from latent parameters.

The true relevance of item ``i`` to user ``u`` is ``sigmoid(logit)`` with::

    logit = BIAS
          + CATEGORY * log(T * preference[u, top[i]] + 0.1)     interest in the item's top category
          + BRAND    * [brand[i] among favorite_brands[u]]      brand affinity
          - PRICE    * price_sensitivity[u] * (price_ratio[i] - price_level[u]) ** 2     price fit
          + QUALITY  * quality[i]
          + LATENT   * vec[u] . vec[i] / sqrt(k)                 collaborative-filtering signal

where ``T`` is the number of top categories, ``price_ratio`` the log of the item's initial price
over its leaf's median price and ``k`` the latent size. ``grade`` counts the ``GRADE_THRESHOLDS``
the relevance reaches (0..3). Relevance is static: price changes move conversion, not relevance.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import polars as pl

from shoprank.errors import InputError
from shoprank.simulate.arrays import distinct, sigmoid, timestamps
from shoprank.simulate.catalog import Catalog
from shoprank.simulate.users import Population

BIAS, CATEGORY, BRAND, PRICE, QUALITY, LATENT = -1.2, 0.8, 0.8, 1.0, 0.6, 0.8
GRADE_THRESHOLDS = (0.3, 0.55, 0.8)
BLOCK = 1_000_000


def score(users: Any, items: Any, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """True relevance in [0, 1] of items ``i`` to users ``u`` (index arrays of equal length).

    Args:
        users: Object with the user latent arrays (a ``Population`` or a loaded ``user_latent``).
        items: Object with the item latent arrays (a ``Catalog`` or a loaded ``item_latent``).
        u: User numbers (rows of ``users``).
        i: Item numbers (rows of ``items``).
    """
    out = np.empty(len(u))
    for lo in range(0, len(u), BLOCK):
        terms = components(users, items, u[lo : lo + BLOCK], i[lo : lo + BLOCK])
        out[lo : lo + BLOCK] = sigmoid(sum(terms.values(), BIAS))
    return out


def components(users: Any, items: Any, u: np.ndarray, i: np.ndarray) -> dict[str, np.ndarray]:
    """The terms of the relevance logit (without ``BIAS``): category, brand, price, quality, latent."""
    n_tops = users.preference.shape[1]
    brand = (users.favorite_brands[u] == items.brand[i, None]).any(axis=1) & (items.brand[i] >= 0)
    misfit = users.price_sensitivity[u] * (items.price_ratio[i] - users.price_level[u]) ** 2
    return {
        "category": CATEGORY * np.log(n_tops * users.preference[u, items.top[i]] + 0.1),
        "brand": BRAND * brand,
        "price": -PRICE * misfit,
        "quality": QUALITY * items.quality[i],
        "latent": LATENT * (np.einsum("ij,ij->i", users.vec[u], items.vec[i]) / np.sqrt(users.vec.shape[1])),
    }


def grade(relevance_values: np.ndarray) -> np.ndarray:
    """Graded relevance 0..3 from relevance in [0, 1]."""
    return np.digitize(relevance_values, GRADE_THRESHOLDS).astype(np.int32)


def relevance(user_latent: pl.DataFrame, item_latent: pl.DataFrame, pairs: pl.DataFrame) -> np.ndarray:
    """True relevance of any (user, item) pairs, from the simulator's ground-truth files.

    Args:
        user_latent: ``truth/user_latent.parquet``.
        item_latent: ``truth/item_latent.parquet``.
        pairs: Frame with ``user_id`` and ``item_id`` columns.

    Returns:
        Relevance in [0, 1], one value per row of ``pairs``.

    Raises:
        InputError: A pair names a user or item the latent files do not hold.

    Example:
        >>> truth = Path("data/truth")  # doctest: +SKIP
        >>> relevance(pl.read_parquet(truth / "user_latent.parquet"),
        ...           pl.read_parquet(truth / "item_latent.parquet"), candidates)  # doctest: +SKIP
    """
    u = _rows(user_latent, pairs, "user_id")
    i = _rows(item_latent, pairs, "item_id")
    return score(_arrays(user_latent), _arrays(item_latent), u, i)


def _rows(latent: pl.DataFrame, pairs: pl.DataFrame, key: str) -> np.ndarray:
    index = latent.select(key).with_row_index("row")
    rows = pairs.select(key).join(index, on=key, how="left", maintain_order="left")["row"]
    if rows.null_count():
        missing = pairs[key].filter(rows.is_null())[0]
        raise InputError(f'{rows.null_count()} pair(s) name a {key} missing from the latent file (e.g. "{missing}")')
    return rows.to_numpy().astype(np.int64)


def _arrays(latent: pl.DataFrame) -> SimpleNamespace:
    return SimpleNamespace(**{name: latent[name].to_numpy() for name in latent.columns})


def user_latent_frame(population: Population) -> pl.DataFrame:
    """The ``truth/user_latent`` table: every latent parameter of every user."""
    p = population
    return pl.DataFrame(
        {
            "user_id": p.ids(),
            "preference": p.preference,
            "favorite_brands": p.favorite_brands,
            "price_level": p.price_level,
            "price_sensitivity": p.price_sensitivity,
            "vec": p.vec,
            "activity": p.activity,
            "is_bot": p.bot_phase >= 0,
        }
    )


def item_latent_frame(catalog: Catalog) -> pl.DataFrame:
    """The ``truth/item_latent`` table: every latent parameter of every item."""
    c = catalog
    return pl.DataFrame(
        {
            "item_id": c.ids(),
            "leaf": c.leaf,
            "top": c.top,
            "brand": c.brand,
            "price_ratio": c.price_ratio,
            "quality": c.quality,
            "vec": c.vec,
            "popularity": c.popularity,
            "created_at": timestamps(c.created_us, "created_at"),
        }
    )


class ShownPairs:
    """Distinct (user, item) pairs shown in lists, as sorted codes ``user * n_items + item``.

    Codes are kept per block of users, so merging them never copies more than one block.
    """

    MERGE_EVERY = 16

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.blocks: dict[int, list[np.ndarray]] = defaultdict(list)

    def add(self, block: int, users: np.ndarray, items: np.ndarray) -> None:
        """Record impressions of a chunk of user block ``block``."""
        parts = self.blocks[block]
        parts.append(distinct(users * self.n_items + items))
        if len(parts) >= self.MERGE_EVERY:
            self.blocks[block] = [distinct(np.concatenate(parts))]

    def frames(self, population: Population, catalog: Catalog) -> Iterator[pl.DataFrame]:
        """The ``truth/relevance`` table, ordered by user and item, in frames of at most ``BLOCK`` rows."""
        user_ids, item_ids = population.ids(), catalog.ids()
        for block in sorted(self.blocks):
            codes = distinct(np.concatenate(self.blocks.pop(block)))
            for lo in range(0, max(len(codes), 1), BLOCK):  # an empty block still gives the schema
                u, i = np.divmod(codes[lo : lo + BLOCK], self.n_items)
                values = score(population, catalog, u, i)
                yield pl.DataFrame(
                    {
                        "user_id": user_ids.gather(u),
                        "item_id": item_ids.gather(i),
                        "relevance": values,
                        "grade": grade(values),
                    }
                )
