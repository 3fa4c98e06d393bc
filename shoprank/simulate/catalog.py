"""The catalog: items with titles, categories, brands, latent quality and versioned prices."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from shoprank.simulate import taxonomy
from shoprank.simulate.arrays import (
    US_PER_DAY,
    US_PER_SECOND,
    categorical,
    ids,
    padded,
    pick,
    us,
)
from shoprank.simulate.spec import ShopSpec
from shoprank.simulate.text import Vocabulary

SLOTS = ("brand", "attribute", "noun", "size", "color")
BRAND, ATTRIBUTE, NOUN, SIZE, COLOR = range(len(SLOTS))
MAX_PRICE_CHANGES = 3
CATALOG_AGE_DAYS = 730
ID_WIDTH = 6
NO_TIME = np.iinfo(np.int64).max


@dataclass(frozen=True)
class PriceBook:
    """Price versions of every item: ``times[i, v]`` (us, ``NO_TIME`` when unused) and ``values[i, v]``."""

    times: np.ndarray
    values: np.ndarray

    def at(self, items: np.ndarray, when_us: np.ndarray) -> np.ndarray:
        """Price of each item at each time: the latest version not after it (else the first)."""
        version = np.maximum((self.times[items] <= when_us[:, None]).sum(axis=1) - 1, 0)
        return self.values[items, version]


def shop_price(raw: np.ndarray) -> np.ndarray:
    """Round raw prices to shop prices: x.99 from 20 up, x.x9 below (at least 0.49)."""
    raw = np.maximum(raw, 0.4)
    return np.round(np.where(raw < 20, np.round(raw, 1) + 0.09, np.round(raw) - 0.01), 2)


def price_versions(base: np.ndarray, created_us: np.ndarray, spec: ShopSpec, rng: np.random.Generator) -> PriceBook:
    """Give a share of items 1-3 price changes of +-5-30 % each at random times of the period.

    Args:
        base: Initial shop price per item.
        created_us: When each item was listed (its first version).
        spec: Period and ``price_change_share``.
        rng: Random source.

    Returns:
        The price book; version 0 of every item is its initial price at its creation time.
    """
    n = len(base)
    start, end = us(spec.start), us(spec.end)
    changes = np.where(rng.random(n) < spec.price_change_share, rng.integers(1, MAX_PRICE_CHANGES + 1, n), 0)
    first = np.maximum(created_us, start)
    offsets = np.sort(rng.random((n, MAX_PRICE_CHANGES)), axis=1)
    span = end - first - MAX_PRICE_CHANGES * US_PER_SECOND
    when = (first[:, None] + (offsets * span[:, None]).astype(np.int64)) // US_PER_SECOND * US_PER_SECOND
    when += US_PER_SECOND * np.arange(1, MAX_PRICE_CHANGES + 1)  # distinct, after the listing
    used = np.arange(MAX_PRICE_CHANGES)[None, :] < changes[:, None]
    factor = 1 + rng.choice([-1.0, 1.0], (n, MAX_PRICE_CHANGES)) * rng.uniform(0.05, 0.30, (n, MAX_PRICE_CHANGES))
    values = np.concatenate([base[:, None], base[:, None] * np.cumprod(np.where(used, factor, 1.0), axis=1)], axis=1)
    times = np.concatenate([created_us[:, None], np.where(used, when, NO_TIME)], axis=1)
    return PriceBook(times=times, values=shop_price(values))


@dataclass(frozen=True)
class ItemSampler:
    """Draws items of a leaf, a top category or the whole catalog, by popularity or uniformly.

    Items are kept in leaf order, so a leaf and a top category are each one range of ``order``.
    """

    order: np.ndarray
    cum: np.ndarray
    leaf_range: np.ndarray
    top_range: np.ndarray

    @classmethod
    def build(cls, leaf: np.ndarray, top_of_leaf: np.ndarray, popularity: np.ndarray) -> ItemSampler:
        """Index items by leaf for range sampling."""
        order = np.argsort(leaf, kind="stable")
        sorted_leaf = leaf[order]
        n_leaves = len(top_of_leaf)
        leaf_range = np.stack([np.searchsorted(sorted_leaf, np.arange(n_leaves), side=s) for s in ("left", "right")], 1)
        n_tops = top_of_leaf.max() + 1
        top_range = np.stack(
            [
                leaf_range[:, 0][np.searchsorted(top_of_leaf, np.arange(n_tops))],
                leaf_range[:, 1][np.searchsorted(top_of_leaf, np.arange(n_tops), side="right") - 1],
            ],
            1,
        )
        cum = np.concatenate([[0.0], np.cumsum(popularity[order])])
        return cls(order=order, cum=cum, leaf_range=leaf_range, top_range=top_range)

    def popular(self, ranges: np.ndarray, r: np.ndarray) -> np.ndarray:
        """One item per (lo, hi) range, with probability proportional to popularity (-1 if empty)."""
        lo, hi = ranges[:, 0], ranges[:, 1]
        target = self.cum[lo] + r * (self.cum[hi] - self.cum[lo])
        k = np.clip(np.searchsorted(self.cum, target, side="right") - 1, lo, np.maximum(hi - 1, lo))
        return np.where(hi > lo, self.order[np.minimum(k, len(self.order) - 1)], -1)

    def uniform(self, ranges: np.ndarray, r: np.ndarray) -> np.ndarray:
        """One item per (lo, hi) range, uniformly (-1 if empty)."""
        lo, hi = ranges[:, 0], ranges[:, 1]
        k = np.minimum(lo + (r * (hi - lo)).astype(np.int64), np.maximum(hi - 1, lo))
        return np.where(hi > lo, self.order[np.minimum(k, len(self.order) - 1)], -1)

    def everything(self, n: int) -> np.ndarray:
        """``n`` copies of the whole-catalog range."""
        return np.tile([0, len(self.order)], (n, 1))


@dataclass(frozen=True)
class Catalog:
    """Items (arrays indexed by item number, which is creation order) and their vocabulary.

    Attributes:
        vocab: Terms of titles and queries.
        leaves: Leaf categories; ``leaf`` indexes them.
        top_of_leaf: Top category index of every leaf.
        leaf_terms: Noun term id of every leaf, then its synonyms' (-1 padded).
        brands: Brand names; ``brand`` indexes them (-1: unbranded).
        leaf, top, brand: Category and brand of each item.
        terms: Title term ids per item and slot (``SLOTS``; -1 for an empty slot).
        quality: Latent quality (standard normal-ish).
        vec: Latent vector, one row per item.
        popularity: Prior popularity the shop's logging policy knows.
        price_ratio: Log of the initial price over the leaf's median price.
        created_us: Listing time (microseconds since 1970).
        prices: Price versions.
        sampler: Range sampler by leaf / top category.
    """

    vocab: Vocabulary
    leaves: tuple[taxonomy.Leaf, ...]
    top_of_leaf: np.ndarray
    leaf_terms: np.ndarray
    brands: tuple[str, ...]
    leaf: np.ndarray
    top: np.ndarray
    brand: np.ndarray
    terms: np.ndarray
    quality: np.ndarray
    vec: np.ndarray
    popularity: np.ndarray
    price_ratio: np.ndarray
    created_us: np.ndarray
    prices: PriceBook
    sampler: ItemSampler

    def ids(self) -> pl.Series:
        """Item ids (``i000123``), indexed by item number."""
        return ids("i", np.arange(len(self.leaf)), ID_WIDTH, "item_id")


def build_catalog(spec: ShopSpec, rng: np.random.Generator) -> Catalog:
    """Draw the catalog of ``spec``.

    Leaves get a skewed share of the items; brands are drawn per top category with Zipf weights (7 %
    unbranded); quality mixes a brand effect and item noise; the initial price is log-normal around
    the leaf's median, higher for premium brands and better items; a ``new_item_share`` of items is
    listed during the period, the rest up to two years before it. Item numbers follow listing time.
    """
    vocab = Vocabulary.build(rng)
    leaves, tops = taxonomy.leaves(), taxonomy.tops()
    top_of_leaf = np.array([tops.index(leaf.top) for leaf in leaves])
    leaf_median = np.array([leaf.median_price for leaf in leaves])
    brands = tuple(dict.fromkeys(b for style in taxonomy.STYLE.values() for b in style[0]))
    n = spec.n_items

    leaf = rng.choice(len(leaves), n, p=_normalized(rng.lognormal(0, 0.6, len(leaves))))
    top = top_of_leaf[leaf]
    top_brands, _ = padded([[brands.index(b) for b in taxonomy.STYLE[t][0]] for t in tops])
    zipf = np.where(top_brands >= 0, 1.0 / (1 + np.arange(top_brands.shape[1])) ** 0.8, 0)
    brand = top_brands[top, categorical(np.cumsum(zipf / zipf.sum(1, keepdims=True), axis=1)[top], rng.random(n))]
    brand = np.where(rng.random(n) < 0.07, -1, brand)
    terms = _title_terms(vocab, leaf, top, brand, brands, rng)

    brand_quality, brand_premium = rng.normal(0, 0.4, len(brands)), rng.normal(0, 0.25, len(brands))
    quality = np.where(brand >= 0, brand_quality[brand], -0.3) + rng.normal(0, 0.8, n)
    premium = np.where(brand >= 0, brand_premium[brand], -0.2)
    base = shop_price(leaf_median[leaf] * np.exp(premium + 0.15 * quality + rng.normal(0, 0.3, n)))

    start = us(spec.start)
    is_new = rng.random(n) < spec.new_item_share
    age = np.where(is_new, -rng.random(n) * spec.days, rng.random(n) * CATALOG_AGE_DAYS)
    created = (start - age * US_PER_DAY) // US_PER_SECOND * US_PER_SECOND
    popularity = np.exp(0.6 * quality + 0.8 * rng.normal(0, 1, n)) * np.where(is_new, 0.3, 1.0)
    vec = rng.normal(0, 1, (n, spec.latent_dim))

    order = np.argsort(created, kind="stable")
    leaf, top, brand, terms, quality, base, created, popularity, vec = (
        a[order] for a in (leaf, top, brand, terms, quality, base, created.astype(np.int64), popularity, vec)
    )
    return Catalog(
        vocab=vocab,
        leaves=leaves,
        top_of_leaf=top_of_leaf,
        leaf_terms=padded([vocab.ids([lf.noun, *lf.synonyms]) for lf in leaves])[0],
        brands=brands,
        leaf=leaf,
        top=top,
        brand=brand,
        terms=terms,
        quality=quality,
        vec=vec,
        popularity=popularity,
        price_ratio=np.log(base / leaf_median[leaf]),
        created_us=created,
        prices=price_versions(base, created, spec, rng),
        sampler=ItemSampler.build(leaf, top_of_leaf, popularity),
    )


def _title_terms(
    vocab: Vocabulary,
    leaf: np.ndarray,
    top: np.ndarray,
    brand: np.ndarray,
    brands: tuple[str, ...],
    rng: np.random.Generator,
) -> np.ndarray:
    n = len(leaf)
    tops, leaves = taxonomy.tops(), taxonomy.leaves()
    attributes, n_attributes = padded([vocab.ids(taxonomy.STYLE[t][1]) for t in tops])
    colors, n_colors = padded([vocab.ids(taxonomy.STYLE[t][2]) for t in tops])
    sizes, n_sizes = padded([vocab.ids(lf.sizes) for lf in leaves])
    terms = np.full((n, len(SLOTS)), -1, dtype=np.int32)
    terms[:, BRAND] = np.where(brand >= 0, np.array(vocab.ids(brands))[brand], -1)
    terms[:, ATTRIBUTE] = np.where(rng.random(n) < 0.85, pick(attributes, n_attributes, top, rng.random(n)), -1)
    terms[:, NOUN] = np.array(vocab.ids([lf.noun for lf in leaves]))[leaf]
    terms[:, SIZE] = pick(sizes, n_sizes, leaf, rng.random(n))
    terms[:, COLOR] = np.where(rng.random(n) < 0.8, pick(colors, n_colors, top, rng.random(n)), -1)
    return terms


def _normalized(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()
