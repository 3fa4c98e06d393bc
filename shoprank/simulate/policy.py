"""The shop's logging policy: which ``list_size`` items a served list shows, in which order.

Each list draws ``POOL_FACTOR * list_size`` candidates from sources that depend on the surface
(``TEMPLATES``) and ranks them by a score the shop can compute, never by true relevance:

* search: text match of query terms against title terms (synonyms and typos get less credit)
  + popularity + noise;
* browse: popularity in the category page's leaf + noise (the same for every user);
* recommend: popularity + a bonus for items in the leaf of a recently clicked item + noise.

Items not yet listed at the list's time and repeated candidates are never shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shoprank.simulate.catalog import Catalog
from shoprank.simulate.history import History

SEARCH, RECOMMEND, BROWSE = range(3)
POOL_FACTOR = 4
LEAF_POPULAR, TOP_POPULAR, ALL_POPULAR, LEAF_UNIFORM, NEAR_HISTORY = range(5)
# candidate source of each quarter of the pool, per surface (rows: search, recommend, browse)
TEMPLATES = np.array(
    [
        [LEAF_POPULAR, LEAF_POPULAR, TOP_POPULAR, ALL_POPULAR],
        [ALL_POPULAR, ALL_POPULAR, NEAR_HISTORY, NEAR_HISTORY],
        [LEAF_POPULAR, LEAF_POPULAR, LEAF_POPULAR, LEAF_UNIFORM],
    ]
)
POPULARITY_WEIGHT = np.array([0.4, 0.5, 0.6])
NOISE = np.array([0.7, 0.8, 0.7])
TEXT_WEIGHT = 2.5
NEAR_WEIGHT = 1.0


@dataclass(frozen=True)
class Lists:
    """Served lists of one chunk (arrays indexed by list number within the chunk).

    Attributes:
        first: Number of the chunk's first list; list ``k`` is request ``first + k``.
        user, session: Who was served, in which session (run-wide session number).
        time_us: Request time.
        surface: ``SEARCH``, ``RECOMMEND`` or ``BROWSE``.
        leaf: Intent leaf (the searched or browsed category; -1 for recommendations).
        query: Query term ids, two slots, -1 padded (search only).
    """

    first: int
    user: np.ndarray
    session: np.ndarray
    time_us: np.ndarray
    surface: np.ndarray
    leaf: np.ndarray
    query: np.ndarray


def show(
    catalog: Catalog, lists: Lists, history: History, list_size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Choose and order the items of every list.

    Returns:
        ``(list, position, item)`` per impression; a list is shorter than ``list_size`` only when
        too few distinct listed items were found.
    """
    n, width = len(lists.user), POOL_FACTOR * list_size
    source = TEMPLATES[lists.surface][:, np.repeat(np.arange(POOL_FACTOR), list_size)]
    candidates, near = _candidates(catalog, lists, history, source, rng)
    surface = lists.surface[:, None]
    scores = POPULARITY_WEIGHT[surface] * np.log(catalog.popularity[np.maximum(candidates, 0)])
    scores += NOISE[surface] * rng.normal(size=(n, width))
    scores += NEAR_WEIGHT * near
    search = np.flatnonzero(lists.surface == SEARCH)
    scores[search] += TEXT_WEIGHT * text_match(catalog, lists.query[search], candidates[search])
    listed = catalog.created_us[np.maximum(candidates, 0)] <= lists.time_us[:, None]
    scores[(candidates < 0) | ~listed | _repeated(candidates)] = -np.inf
    ranked = np.argsort(-scores, axis=1, kind="stable")[:, :list_size]
    row, position = np.nonzero(np.isfinite(np.take_along_axis(scores, ranked, axis=1)))
    return row, position, candidates[row, ranked[row, position]]


def text_match(catalog: Catalog, query: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Credit-weighted share of query terms found among each candidate's title terms.

    Args:
        catalog: Items and vocabulary.
        query: Query term ids, one row per list (-1 padded).
        candidates: Item numbers, one row per list.
    """
    vocab = catalog.vocab
    used = query >= 0
    canonical = np.where(used, vocab.canonical[np.maximum(query, 0)], -2)
    credit = np.where(used, vocab.credit[np.maximum(query, 0)], 0.0)
    titles = catalog.terms[np.maximum(candidates, 0)]
    hit = (titles[:, :, :, None] == canonical[:, None, None, :]).any(axis=2)
    return (hit * credit[:, None, :]).sum(axis=2) / np.maximum(used.sum(axis=1), 1)[:, None]


def _candidates(
    catalog: Catalog, lists: Lists, history: History, source: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    sampler = catalog.sampler
    n, width = source.shape
    row = np.repeat(np.arange(n), width)
    leaf = np.maximum(lists.leaf[row], 0)
    recent = history.sample(lists.user[row], rng.random(n * width))
    near = (source.ravel() == NEAR_HISTORY) & (recent >= 0)
    everything = sampler.everything(n * width)
    ranges = np.select(
        [
            c[:, None]
            for c in (np.isin(source.ravel(), (LEAF_POPULAR, LEAF_UNIFORM)), source.ravel() == TOP_POPULAR, near)
        ],
        [
            sampler.leaf_range[leaf],
            sampler.top_range[catalog.top_of_leaf[leaf]],
            sampler.leaf_range[catalog.leaf[recent]],
        ],
        everything,
    )
    r = rng.random(n * width)
    items = np.where(source.ravel() == LEAF_UNIFORM, sampler.uniform(ranges, r), sampler.popular(ranges, r))
    return items.reshape(n, width), near.reshape(n, width)


def _repeated(candidates: np.ndarray) -> np.ndarray:
    """Mark every candidate that already appears earlier in its row."""
    order = np.argsort(candidates, axis=1, kind="stable")
    ordered = np.take_along_axis(candidates, order, axis=1)
    repeated = np.zeros_like(candidates, dtype=bool)
    np.put_along_axis(
        repeated, order, np.concatenate([np.zeros((len(ordered), 1), bool), ordered[:, 1:] == ordered[:, :-1]], 1), 1
    )
    return repeated
