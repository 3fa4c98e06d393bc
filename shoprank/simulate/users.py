"""Users: latent tastes, activity, signup, region and PII, plus the bots among them."""

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
    timestamps,
    us,
)
from shoprank.simulate.catalog import Catalog
from shoprank.simulate.spec import ShopSpec

REGIONS = ("us-east", "us-west", "eu-west", "eu-central", "apac")
REGION_WEIGHTS = (0.3, 0.2, 0.2, 0.2, 0.1)
COUNTRY_CODES = ("+1", "+1", "+44", "+49", "+61")
FIRST_NAMES = (
    "james",
    "mary",
    "john",
    "linda",
    "robert",
    "susan",
    "michael",
    "karen",
    "david",
    "lisa",
    "daniel",
    "emma",
    "lukas",
    "sofia",
    "mateo",
    "chloe",
    "noah",
    "mia",
    "liam",
    "hannah",
    "oliver",
    "amelia",
    "yuki",
    "priya",
)
LAST_NAMES = (
    "smith",
    "johnson",
    "brown",
    "garcia",
    "miller",
    "davis",
    "wilson",
    "taylor",
    "martin",
    "clark",
    "lewis",
    "walker",
    "young",
    "king",
    "wright",
    "lopez",
    "hill",
    "green",
    "baker",
    "muller",
    "schmidt",
    "rossi",
    "tanaka",
)
FAVORITE_BRANDS = 3
BOT_CADENCE_DAYS = 3
ID_WIDTH = 6


@dataclass(frozen=True)
class Population:
    """Users, as arrays indexed by user number.

    Attributes:
        preference: Share of interest per top category (rows sum to 1, sparse).
        favorite_brands: Brand indexes the user likes (-1 padded).
        price_level: Preferred log price relative to a leaf's median price.
        price_sensitivity: How much a price away from ``price_level`` hurts.
        vec: Latent vector that interacts with item vectors.
        activity: Relative session rate (mean 1, heavy-tailed).
        signup_us: Signup time (microseconds since 1970); the user is never active before it.
        bot_phase: For bots, the day offset of their crawl cadence; -1 for humans.
        table: The raw ``users`` table.
    """

    preference: np.ndarray
    favorite_brands: np.ndarray
    price_level: np.ndarray
    price_sensitivity: np.ndarray
    vec: np.ndarray
    activity: np.ndarray
    signup_us: np.ndarray
    bot_phase: np.ndarray
    table: pl.DataFrame

    def ids(self) -> pl.Series:
        """User ids (``u000123``), indexed by user number."""
        return self.table["user_id"]


def build_population(spec: ShopSpec, catalog: Catalog, rng: np.random.Generator) -> Population:
    """Draw the users of ``spec``.

    Tastes are a sparse Dirichlet over top categories, favourite brands come from the preferred
    categories, activity is log-normal, 12 % of humans sign up during the period, and a
    ``bot_user_rate`` share of users (at least one when the rate is positive) are bots that signed
    up before it and crawl every ``BOT_CADENCE_DAYS`` days.
    """
    n, tops = spec.n_users, taxonomy.tops()
    preference = rng.dirichlet(np.full(len(tops), 0.3), n)
    matrix, counts = padded([[catalog.brands.index(b) for b in taxonomy.STYLE[t][0]] for t in tops])
    cumulative = np.cumsum(preference, axis=1)
    favorite_brands = np.stack(
        [pick(matrix, counts, categorical(cumulative, rng.random(n)), rng.random(n)) for _ in range(FAVORITE_BRANDS)], 1
    )
    favorite_brands[rng.random(n) < 0.5, -1] = -1
    activity = rng.lognormal(0, 1.0, n)

    n_bots = max(1, round(n * spec.bot_user_rate)) if spec.bot_user_rate > 0 else 0
    bot_phase = np.full(n, -1)
    bot_phase[rng.permutation(n)[:n_bots]] = rng.integers(0, BOT_CADENCE_DAYS, n_bots)
    start = us(spec.start)
    joins_later = (rng.random(n) < 0.12) & (bot_phase < 0)
    age_days = np.where(joins_later, -rng.random(n) * spec.days, rng.uniform(1, 1000, n))
    signup = (start - age_days * US_PER_DAY).astype(np.int64) // US_PER_SECOND * US_PER_SECOND
    return Population(
        preference=preference,
        favorite_brands=favorite_brands,
        price_level=rng.normal(0, 0.3, n),
        price_sensitivity=rng.lognormal(np.log(1.5), 0.5, n),
        vec=rng.normal(0, 1, (n, spec.latent_dim)),
        activity=activity / activity.mean(),
        signup_us=signup,
        bot_phase=bot_phase,
        table=_users_table(signup, rng),
    )


def _users_table(signup_us: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    n = len(signup_us)
    region = rng.choice(len(REGIONS), n, p=REGION_WEIGHTS)
    first = pl.Series(FIRST_NAMES).gather(rng.integers(0, len(FIRST_NAMES), n))
    last = pl.Series(LAST_NAMES).gather(rng.integers(0, len(LAST_NAMES), n))
    number = pl.Series(rng.integers(1, 1000, n)).cast(pl.String)
    digits = pl.Series(rng.integers(10**9, 10**10, n)).cast(pl.String)
    frame = pl.DataFrame(
        {
            "first": first,
            "last": last,
            "number": number,
            "digits": digits,
            "code": pl.Series(COUNTRY_CODES).gather(region),
        }
    )
    email = frame.select(pl.concat_str("first", pl.lit("."), "last", "number", pl.lit("@example.com"))).to_series()
    phone = frame.select(pl.concat_str("code", "digits")).to_series()
    return pl.DataFrame(
        {
            "user_id": ids("u", np.arange(n), ID_WIDTH, "user_id"),
            "signup_time": timestamps(signup_us, "signup_time"),
            "region": pl.Series(REGIONS).gather(region).scatter(np.flatnonzero(rng.random(n) < 0.06), None),
            "email": email.scatter(np.flatnonzero(rng.random(n) < 0.1), None),
            "phone": phone.scatter(np.flatnonzero(rng.random(n) < 0.2), None),
        }
    )
