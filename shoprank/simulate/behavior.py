"""One chunk of shop traffic (one day, one block of users), vectorized with numpy.

Sessions follow each user's activity and the seasonality; a session holds served lists (search,
recommend, browse); users examine list positions with a position bias and click with a
probability that grows with true relevance (and, on search and browse, with how well the item fits
the category they came for). A click is followed by a product-page view, possibly a favorite, an
add-to-cart and a purchase, more likely for relevant items at a fitting price. Sessions of users
with a history may also revisit a recently clicked item (an organic view that can convert). Bots
crawl random items in bursts of hundreds of views a minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from shoprank.simulate import policy, seasonality, truth
from shoprank.simulate.arrays import US_PER_DAY, categorical, pick, seconds, sigmoid, us
from shoprank.simulate.catalog import ATTRIBUTE, BRAND, COLOR, SIZE, Catalog
from shoprank.simulate.history import History
from shoprank.simulate.policy import RECOMMEND, SEARCH, Lists
from shoprank.simulate.spec import ShopSpec
from shoprank.simulate.users import BOT_CADENCE_DAYS, Population

VIEW, CLICK, ADD_TO_CART, FAVORITE, PURCHASE = range(5)
EVENT_COLUMNS = ("time", "user", "session", "kind", "item", "request", "position", "price", "quantity")
SURFACE_SHARES = (0.4, 0.4, 0.2)
MAX_LISTS = 20
# query forms: the leaf noun alone, or with the brand / attribute / color / size of a wanted item
QUERY_SLOTS = (-1, BRAND, ATTRIBUTE, COLOR, SIZE)
QUERY_SHARES = (0.35, 0.2, 0.2, 0.15, 0.1)
EXAMINATION_EXPONENT = 0.7
CLICK_SCALE, CLICK_POWER = 0.8, 1.5
OFF_INTENT = (0.4, 0.12)  # click factor for an item of the intended top category / of another one
CART = (-4.2, 3.0, 1.0)  # bias, relevance weight, price-misfit weight
FAVORITE_ODDS = (-5.0, 2.5)
BUY = (-1.9, 1.5, 0.8)
QUANTITIES, QUANTITY_SHARES = (1, 2, 3), (0.75, 0.18, 0.07)
REVISIT_RATE, REVISIT_BOOST = 0.3, 0.8
BOT_VIEWS, BOT_SECONDS = (250, 500), (20, 60)

Events = dict[str, np.ndarray]


@dataclass(frozen=True)
class World:
    """Everything fixed for a whole run."""

    spec: ShopSpec
    catalog: Catalog
    population: Population


@dataclass(frozen=True)
class Chunk:
    """Traffic of one chunk.

    Attributes:
        lists: The served lists.
        impressions: ``(list, position, item)`` per shown item, lists numbered within the chunk.
        events: Event columns (``EVENT_COLUMNS``) in time order, with run-wide session and request
            numbers; -1 / NaN / 0 mean null.
        n_sessions: Sessions started in the chunk.
    """

    lists: Lists
    impressions: tuple[np.ndarray, np.ndarray, np.ndarray]
    events: Events
    n_sessions: int


def simulate_chunk(
    world: World, history: History, day: int, users: np.ndarray, first: tuple[int, int], rng: np.random.Generator
) -> Chunk:
    """Simulate one day of the period for some users, then add its clicks to ``history``.

    Args:
        world: Spec, catalog and users.
        history: Recent clicks per user; updated in place.
        day: Day of the period, from 0.
        users: User numbers of the chunk.
        first: Run-wide numbers of the chunk's first session and first list.
        rng: The chunk's random source.
    """
    session_user, session_start = draw_sessions(world, day, users, rng)
    lists = draw_lists(world, session_user, session_start, first, rng)
    shown = policy.show(world.catalog, lists, history, world.spec.list_size, rng)
    clicks, views = draw_clicks(world, lists, shown, rng)
    revisits = _revisits(world, history, session_user, session_start, first[0], rng)
    parts = [clicks, views, revisits, _bots(world, day, users, rng)]
    parts += draw_conversions(world, views, 0.0, rng) + draw_conversions(world, revisits, REVISIT_BOOST, rng)
    events = {c: np.concatenate([p[c] for p in parts]) for c in EVENT_COLUMNS}
    order = np.lexsort(tuple(events[c] for c in ("item", "kind", "user", "time")))
    events = {c: v[order] for c, v in events.items()}
    history.push(clicks["user"], clicks["item"], clicks["time"])
    return Chunk(lists=lists, impressions=shown, events=events, n_sessions=len(session_user))


def event_rows(time: np.ndarray, user: np.ndarray, kind: int, item: np.ndarray, **columns: np.ndarray) -> Events:
    """Event columns for ``len(time)`` events of one kind; missing columns are null."""
    n = len(time)
    rows = {
        "time": time,
        "user": user,
        "kind": np.full(n, kind),
        "item": item,
        "session": np.full(n, -1),
        "request": np.full(n, -1),
        "position": np.full(n, -1),
        "price": np.full(n, np.nan),
        "quantity": np.zeros(n, np.int64),
    }
    rows.update(columns)
    return rows


def draw_sessions(world: World, day: int, users: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The sessions of ``users`` (bots aside) on ``day``: user number and start, in time order."""
    spec, population = world.spec, world.population
    humans = users[population.bot_phase[users] < 0]
    rate = (
        spec.sessions_per_user_day
        * population.activity[humans]
        * seasonality.day_factor(spec.start + timedelta(days=day))
    )
    user = np.repeat(humans, rng.poisson(rate))
    start = us(spec.start) + day * US_PER_DAY + seconds(seasonality.session_offsets(len(user), rng))
    keep = start >= population.signup_us[user]
    order = np.lexsort((user[keep], start[keep]))
    return user[keep][order], start[keep][order]


def draw_lists(
    world: World, session_user: np.ndarray, session_start: np.ndarray, first: tuple[int, int], rng: np.random.Generator
) -> Lists:
    """The lists the sessions ask for (surface, time, intent leaf, query), before any item is chosen."""
    spec, catalog = world.spec, world.catalog
    per_session = np.minimum(rng.geometric(1 / spec.lists_per_session, len(session_user)), MAX_LISTS)
    session = np.repeat(np.arange(len(session_user)), per_session)
    opening = np.repeat(np.cumsum(per_session) - per_session, per_session)
    n = len(session)
    gaps = np.where(np.arange(n) == opening, rng.uniform(0, 10, n), 20 + rng.exponential(100, n))
    elapsed = np.cumsum(gaps)
    time_us = session_start[session] + seconds(elapsed - elapsed[opening] + gaps[opening])
    user = session_user[session]
    surface = rng.choice(3, n, p=SURFACE_SHARES)
    top = categorical(np.cumsum(world.population.preference[user], axis=1), rng.random(n))
    wanted = catalog.sampler.popular(catalog.sampler.top_range[top], rng.random(n))
    wanted = np.where(wanted >= 0, wanted, catalog.sampler.popular(catalog.sampler.everything(n), rng.random(n)))
    query = _queries(spec, catalog, wanted, rng)
    return Lists(
        first=first[1],
        user=user,
        session=first[0] + session,
        time_us=time_us,
        surface=surface,
        leaf=np.where(surface == RECOMMEND, -1, catalog.leaf[wanted]),
        query=np.where((surface == SEARCH)[:, None], query, -1),
    )


def _queries(spec: ShopSpec, catalog: Catalog, wanted: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two-slot query term ids describing a wanted item: its leaf noun (or a synonym) plus maybe
    its brand, attribute, color or size; some queries get a typo in one term."""
    n = len(wanted)
    nouns = catalog.leaf_terms[catalog.leaf[wanted]]
    n_synonyms = (nouns[:, 1:] >= 0).sum(axis=1)
    synonym = pick(nouns[:, 1:], n_synonyms, np.arange(n), rng.random(n))
    noun = np.where((rng.random(n) < spec.synonym_rate) & (synonym >= 0), synonym, nouns[:, 0])
    slot = np.array(QUERY_SLOTS)[rng.choice(len(QUERY_SLOTS), n, p=QUERY_SHARES)]
    modifier = np.where(slot >= 0, catalog.terms[wanted, np.maximum(slot, 0)], -1)
    query = np.where((slot == SIZE)[:, None], np.stack([noun, modifier], 1), np.stack([modifier, noun], 1))
    slipped = np.flatnonzero(rng.random(n) < spec.typo_rate)
    column = np.where(slot[slipped] == SIZE, 0, 1)
    on_modifier = (rng.random(len(slipped)) < 0.3) & (query[slipped, 1 - column] >= 0)
    column = np.where(on_modifier, 1 - column, column)
    term = query[slipped, column]
    variant = catalog.vocab.typos[term, rng.integers(0, catalog.vocab.typos.shape[1], len(slipped))]
    query[slipped, column] = np.where(variant >= 0, variant, term)
    return query


def draw_clicks(
    world: World, lists: Lists, shown: tuple[np.ndarray, np.ndarray, np.ndarray], rng: np.random.Generator
) -> tuple[Events, Events]:
    """Position-biased clicks on the ``shown`` (list, position, item) triples, by true relevance and
    fit with the list's intent, and the product-page view that follows each click."""
    catalog = world.catalog
    row, position, item = shown
    user = lists.user[row]
    relevance = truth.score(world.population, catalog, user, item)
    intent = lists.leaf[row]
    fit = np.where(
        (intent < 0) | (catalog.leaf[item] == intent),
        1.0,
        np.where(catalog.top[item] == catalog.top_of_leaf[np.maximum(intent, 0)], *OFF_INTENT),
    )
    examined = rng.random(len(row)) < (1.0 + position) ** -EXAMINATION_EXPONENT
    c = np.flatnonzero(examined & (rng.random(len(row)) < CLICK_SCALE * relevance**CLICK_POWER * fit))
    click_time = lists.time_us[row[c]] + seconds(2 + 1.5 * position[c] + rng.exponential(4, len(c)))
    view_time = click_time + seconds(rng.uniform(1, 5, len(c)))
    context = {"session": lists.session[row[c]], "request": lists.first + row[c], "position": position[c]}
    clicks = event_rows(click_time, user[c], CLICK, item[c], **context)
    price = catalog.prices.at(item[c], view_time)
    return clicks, event_rows(view_time, user[c], VIEW, item[c], price=price, **context)


def _revisits(
    world: World,
    history: History,
    session_user: np.ndarray,
    session_start: np.ndarray,
    first_session: int,
    rng: np.random.Generator,
) -> Events:
    n = len(session_user)
    item = history.sample(session_user, rng.random(n))
    s = np.flatnonzero((item >= 0) & (rng.random(n) < REVISIT_RATE))
    time = session_start[s] + seconds(rng.uniform(0, 600, len(s)))
    price = world.catalog.prices.at(item[s], time)
    return event_rows(time, session_user[s], VIEW, item[s], session=first_session + s, price=price)


def draw_conversions(world: World, views: Events, boost: float, rng: np.random.Generator) -> list[Events]:
    """Favorites, add-to-carts and purchases that follow product-page views."""
    catalog, population = world.catalog, world.population
    user, item, n = views["user"], views["item"], len(views["time"])
    relevance = truth.score(population, catalog, user, item)
    ratio_now = catalog.price_ratio[item] + np.log(views["price"] / catalog.prices.values[item, 0])
    misfit = population.price_sensitivity[user] * (ratio_now - population.price_level[user]) ** 2
    cart = np.flatnonzero(rng.random(n) < sigmoid(CART[0] + CART[1] * relevance - CART[2] * misfit + boost))
    favorite = np.flatnonzero(rng.random(n) < sigmoid(FAVORITE_ODDS[0] + FAVORITE_ODDS[1] * relevance + boost))
    buy = rng.random(len(cart)) < sigmoid(BUY[0] + BUY[1] * relevance[cart] - BUY[2] * misfit[cart])
    quantity = rng.choice(QUANTITIES, len(cart), p=QUANTITY_SHARES)
    cart_time = views["time"][cart] + seconds(rng.uniform(10, 180, len(cart)))
    buy_time = cart_time[buy] + seconds(rng.uniform(60, 900, buy.sum()))

    def follow(rows: np.ndarray, time: np.ndarray, kind: int, **columns: np.ndarray) -> Events:
        context = {c: views[c][rows] for c in ("session", "request", "position")}
        return event_rows(time, user[rows], kind, item[rows], **context, **columns)

    return [
        follow(favorite, views["time"][favorite] + seconds(rng.uniform(5, 60, len(favorite))), FAVORITE),
        follow(cart, cart_time, ADD_TO_CART, price=catalog.prices.at(item[cart], cart_time), quantity=quantity),
        follow(
            cart[buy], buy_time, PURCHASE, price=catalog.prices.at(item[cart[buy]], buy_time), quantity=quantity[buy]
        ),
    ]


def _bots(world: World, day: int, users: np.ndarray, rng: np.random.Generator) -> Events:
    """Bursts of views on random listed items, one per crawling bot and day."""
    catalog, phase = world.catalog, world.population.bot_phase[users]
    bots = users[(phase >= 0) & ((day + phase) % BOT_CADENCE_DAYS == 0)]
    views = rng.integers(BOT_VIEWS[0], BOT_VIEWS[1] + 1, len(bots))
    bot = np.repeat(np.arange(len(bots)), views)
    day_start = us(world.spec.start) + day * US_PER_DAY
    start = day_start + seconds(rng.uniform(0, 86_000, len(bots)))
    time = start[bot] + seconds(rng.random(len(bot)) * rng.uniform(*BOT_SECONDS, len(bots))[bot])
    listed = np.searchsorted(catalog.created_us, day_start, side="right")
    item = rng.integers(0, max(listed, 1), len(bot))
    return event_rows(time, bots[bot], VIEW, item, price=catalog.prices.at(item, time))
