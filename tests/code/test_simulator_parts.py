"""Unit tests of the shop simulator's parts: typos, synonyms, titles, prices, seasonality, history."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from shoprank.simulate import policy, seasonality, taxonomy
from shoprank.simulate.arrays import US_PER_DAY, us
from shoprank.simulate.catalog import (
    NO_TIME,
    ItemSampler,
    PriceBook,
    build_catalog,
    price_versions,
    shop_price,
)
from shoprank.simulate.history import HISTORY_SIZE, History
from shoprank.simulate.spec import spec_for
from shoprank.simulate.text import SYNONYM_CREDIT, TYPO_CREDIT, Vocabulary, make_typo


@pytest.fixture(scope="module")
def vocab() -> Vocabulary:
    return Vocabulary.build(np.random.default_rng(0))


def test_typos_are_one_slip_away_and_deterministic():
    rng = np.random.default_rng(1)
    slips = [make_typo("sneakers", rng) for _ in range(300)]
    assert all(s != "sneakers" and abs(len(s) - len("sneakers")) <= 1 for s in slips)
    assert {len(s) - len("sneakers") for s in slips} == {-1, 0, 1}
    swaps = [s for s in slips if len(s) == len("sneakers")]
    assert all(
        sorted(s) == sorted("sneakers") and sum(a != b for a, b in zip(s, "sneakers", strict=True)) == 2 for s in swaps
    )
    assert make_typo("water bottle", np.random.default_rng(5)) == make_typo("water bottle", np.random.default_rng(5))
    assert " " in make_typo("water bottle", np.random.default_rng(5))


def test_synonyms_and_typos_point_at_their_noun_with_less_credit(vocab):
    sofa, couch = vocab.ids(["sofa", "couch"])
    assert vocab.canonical[couch] == sofa and vocab.credit[couch] == SYNONYM_CREDIT
    assert vocab.canonical[sofa] == sofa and vocab.credit[sofa] == 1.0
    for typo in vocab.typos[sofa][vocab.typos[sofa] >= 0]:
        assert vocab.canonical[typo] == sofa and vocab.credit[typo] == pytest.approx(TYPO_CREDIT)
        assert vocab.text[int(typo)] not in ("sofa", "couch")
    for leaf in taxonomy.leaves():
        assert 1 <= len(leaf.synonyms) <= 2
        assert all(vocab.canonical[s] == vocab.ids([leaf.noun])[0] for s in vocab.ids(leaf.synonyms))


def test_text_match_credits_exact_over_synonym_over_typo(vocab):
    catalog = build_catalog(spec_for("tiny"), np.random.default_rng(3))
    v = catalog.vocab
    item = 0
    noun = int(catalog.terms[item, 2])
    synonym = v.ids([taxonomy.leaves()[catalog.leaf[item]].synonyms[0]])[0]
    typo = int(v.typos[noun][v.typos[noun] >= 0][0])
    other = next(i for i in range(len(catalog.leaf)) if catalog.leaf[i] != catalog.leaf[item])
    queries = np.array([[-1, noun], [-1, synonym], [-1, typo], [int(catalog.terms[other, 2]), -1]])
    match = policy.text_match(catalog, queries, np.full((4, 1), item))[:, 0]
    assert match[0] == 1.0 and match[0] > match[1] > match[2] > 0 and match[3] == 0


def test_titles_read_brand_attribute_noun_size_color(vocab):
    tv = vocab.ids(["tv"])[0]
    terms = np.array([vocab.ids(["Acme", "Stainless Steel", "water bottle", "750 ml", "Blue"]), [-1, -1, tv, -1, -1]])
    assert vocab.join(terms, titles=True).to_list() == ["Acme Stainless Steel Water Bottle 750 ml Blue", "TV"]
    assert vocab.join(terms).to_list() == ["acme stainless steel water bottle 750 ml blue", "tv"]


def test_taxonomy_has_the_expected_shape():
    leaves = taxonomy.leaves()
    assert len(taxonomy.tops()) == 8 and 60 <= len(leaves) <= 120
    assert all(leaf.path.count(" > ") == 2 for leaf in leaves)
    assert len({b for brands, _, _ in taxonomy.STYLE.values() for b in brands}) >= 24
    assert len({leaf.noun for leaf in leaves}) == len(leaves)


def test_shop_prices_end_in_nine():
    prices = shop_price(np.array([2.84, 19.96, 20.2, 849.5, 0.01]))
    assert prices.tolist() == [2.89, 20.09, 19.99, 849.99, 0.49]


def test_price_versions_change_a_share_of_items_within_the_period():
    spec = spec_for("tiny", {"price_change_share": 0.5})
    n = 4000
    created = np.full(n, us(spec.start) - US_PER_DAY)
    book = price_versions(np.full(n, 100.0), created, spec, np.random.default_rng(2))
    versions = (book.times != NO_TIME).sum(axis=1)
    assert 0.45 < (versions > 1).mean() < 0.55 and versions.max() == 4
    changed = book.times[:, 1:][book.times[:, 1:] != NO_TIME]
    assert changed.min() > us(spec.start) and changed.max() < us(spec.end)
    assert (np.diff(book.times, axis=1)[book.times[:, 1:] != NO_TIME] > 0).all()
    step = book.values[:, 1:] / book.values[:, :-1]
    step = step[book.times[:, 1:] != NO_TIME]
    assert step.min() > 0.68 and step.max() < 1.32 and np.abs(step - 1).min() > 0.04  # +-5-30 %, then rounded


def test_price_book_returns_the_version_valid_at_a_time():
    book = PriceBook(times=np.array([[10, 20, NO_TIME]]), values=np.array([[5.0, 6.0, 6.0]]))
    items = np.zeros(4, dtype=np.int64)
    assert book.at(items, np.array([5, 10, 19, 25])).tolist() == [5.0, 5.0, 5.0, 6.0]


def test_seasonality_peaks_in_the_evening_and_on_weekends():
    weights = seasonality.hour_weights()
    assert weights.sum() == pytest.approx(1.0)
    assert 18 <= weights.argmax() <= 22 and weights[2:5].max() < weights.max() / 5
    week = [seasonality.day_factor(datetime(2025, 9, 1 + d)) for d in range(7)]  # Monday..Sunday
    assert np.mean(week) == pytest.approx(1.0) and min(week[5:]) > max(week[:5])
    offsets = seasonality.session_offsets(20_000, np.random.default_rng(0))
    hours = np.bincount((offsets // 3600).astype(int), minlength=24)
    assert offsets.min() >= 0 and offsets.max() < 86_400 and hours[20] > 5 * hours[3]


def test_history_keeps_the_newest_clicks_in_order():
    history = History.empty(3)
    history.push(np.array([0, 0, 1]), np.array([10, 11, 20]), np.array([1, 2, 1]))
    history.push(np.array([0] * HISTORY_SIZE), np.arange(100, 100 + HISTORY_SIZE), np.arange(HISTORY_SIZE))
    assert history.count.tolist() == [HISTORY_SIZE, 1, 0]
    assert history.items[0].tolist() == list(range(100, 100 + HISTORY_SIZE))
    assert history.items[1, 0] == 20
    assert history.sample(np.array([2, 1]), np.array([0.5, 0.9])).tolist() == [-1, 20]


def test_item_sampler_stays_in_range_and_favours_popular_items():
    leaf = np.array([0, 1, 0, 1, 0])
    popularity = np.array([1.0, 1.0, 8.0, 1.0, 1.0])
    sampler = ItemSampler.build(leaf, np.array([0, 0]), popularity)
    r = np.random.default_rng(0).random(10_000)
    drawn = sampler.popular(np.tile(sampler.leaf_range[0], (len(r), 1)), r)
    assert set(drawn) == {0, 2, 4} and 0.75 < (drawn == 2).mean() < 0.85
    assert set(sampler.uniform(np.tile(sampler.leaf_range[1], (len(r), 1)), r)) == {1, 3}
