"""The shop simulator: a deterministic (by seed) shop whose raw data carries real ranking signal
and real-world noise.

Example:
    >>> from shoprank.simulate import spec_for, simulate
    >>> summary = simulate(spec_for("tiny"), seed=7, landing=Path("data/landing"),
    ...                    truth=Path("data/truth"))  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from shoprank.errors import ConfigError
from shoprank.simulate import truth as ground_truth
from shoprank.simulate import writer
from shoprank.simulate.behavior import World, simulate_chunk
from shoprank.simulate.catalog import build_catalog
from shoprank.simulate.dirt import KINDS, inject
from shoprank.simulate.history import History
from shoprank.simulate.spec import PRESETS, ShopSpec, spec_for
from shoprank.simulate.users import build_population

__all__ = ["PRESETS", "ShopSpec", "SimulationSummary", "simulate", "spec_for"]

CATALOG_STREAM, USERS_STREAM, CHUNK_STREAM = range(3)


@dataclass(frozen=True)
class SimulationSummary:
    """What a simulation wrote.

    Attributes:
        rows: Rows per raw table (events, requests, items, users).
        dirt: Dirty events per kind (``dirt.KINDS``), plus ``bot_users`` and ``bot_events``.
        seconds: Wall time of the run.
    """

    rows: Mapping[str, int]
    dirt: Mapping[str, int]
    seconds: float


def simulate(
    spec: ShopSpec,
    seed: int,
    landing: Path,
    truth: Path,
    progress: Callable[[int, int, str], None] | None = None,
) -> SimulationSummary:
    """Simulate the shop of ``spec`` and write its raw tables and its ground truth.

    The same spec and seed give identical table contents. Events and requests are generated one
    chunk (a day for a block of ``spec.chunk_users`` users) at a time and written as one Parquet
    part per chunk, so memory stays bounded.

    Args:
        spec: What to simulate (see ``spec_for``).
        seed: Root seed (a non-negative integer).
        landing: Folder of the raw tables (``events/``, ``requests/``, ``items.parquet``,
            ``users.parquet``); earlier parts in it are replaced.
        truth: Folder of the ground truth (``relevance``, ``user_latent``, ``item_latent`` and
            ``dirt`` Parquet files); keep it out of ``landing``.
        progress: Called after every chunk with (chunks done, chunks in all, what was done).

    Returns:
        Rows per table, dirt counts and the run's duration.

    Raises:
        ConfigError: A negative seed, or ``truth`` inside ``landing`` (ingest would read it).
    """
    started = time.perf_counter()
    if seed < 0:
        raise ConfigError(f"Simulator seed must be a non-negative integer, got {seed}")
    if truth.resolve().is_relative_to(landing.resolve()):
        raise ConfigError(
            f'Truth folder "{truth}" lies inside landing folder "{landing}"; keep ground truth out of landing'
        )
    world = build_world(spec, seed)
    catalog, population = world.catalog, world.population
    writer.prepare(landing, truth)
    items = writer.items_frame(catalog)
    writer.write(items, landing / "items.parquet")
    writer.write(population.table, landing / "users.parquet")
    user_ids, item_ids = population.ids(), catalog.ids()

    history = History.empty(spec.n_users)
    blocks = user_blocks(spec)
    chunks = [(day, block) for day in range(spec.days) for block in range(len(blocks))]
    rows, dirt, manifests, pairs = Counter(), Counter(), [], ground_truth.ShownPairs(spec.n_items)
    next_session = next_list = next_event = 0
    for index, (day, block) in enumerate(chunks):
        rng = chunk_rng(seed, day, block)
        chunk = simulate_chunk(world, history, day, blocks[block], (next_session, next_list), rng)
        dirty = inject(chunk.events, next_event, spec, rng)
        events = writer.events_frame(dirty.events, user_ids, item_ids)
        queries = catalog.vocab.join(chunk.lists.query)
        requests = writer.requests_frame(chunk.lists, chunk.impressions, queries, user_ids, item_ids)
        writer.write(events, writer.part_path(landing, "events", index))
        writer.write(requests, writer.part_path(landing, "requests", index))

        next_session += chunk.n_sessions
        next_list += len(chunk.lists.user)
        next_event = int(dirty.events["number"].max(initial=next_event - 1)) + 1
        rows.update(events=events.height, requests=requests.height)
        dirt.update(dirty.counts())
        dirt["bot_events"] += int(np.isin(dirty.events["user"], np.flatnonzero(population.bot_phase >= 0)).sum())
        manifests.append(writer.dirt_frame(dirty))
        pairs.add(block, chunk.lists.user[chunk.impressions[0]], chunk.impressions[2])
        if progress:
            progress(index + 1, len(chunks), f"day {day + 1}/{spec.days}")

    _write_truth(truth, world, pairs, pl.concat(manifests))
    dirt["bot_users"] = int((population.bot_phase >= 0).sum())
    rows.update(items=items.height, users=population.table.height)
    return SimulationSummary(
        rows=dict(rows),
        dirt={kind: dirt[kind] for kind in (*KINDS, "bot_users", "bot_events")},
        seconds=time.perf_counter() - started,
    )


def build_world(spec: ShopSpec, seed: int) -> World:
    """The catalog and users of ``spec`` and ``seed``: the same for every run (and for live users)."""
    catalog = build_catalog(spec, np.random.default_rng([seed, CATALOG_STREAM]))
    return World(spec, catalog, build_population(spec, catalog, np.random.default_rng([seed, USERS_STREAM])))


def user_blocks(spec: ShopSpec) -> list[np.ndarray]:
    """User numbers of each block simulated together (``spec.chunk_users`` at most)."""
    return np.array_split(np.arange(spec.n_users), -(-spec.n_users // spec.chunk_users))


def chunk_rng(seed: int, day: int, block: int) -> np.random.Generator:
    """The random source of one day of one user block (days past ``spec.days`` continue the shop)."""
    return np.random.default_rng([seed, CHUNK_STREAM, day, block])


def _write_truth(truth: Path, world: World, pairs: ground_truth.ShownPairs, dirt: pl.DataFrame) -> None:
    population, catalog = world.population, world.catalog
    writer.write_blocks(pairs.frames(population, catalog), truth / "relevance.parquet")
    writer.write(ground_truth.user_latent_frame(population), truth / "user_latent.parquet")
    writer.write(ground_truth.item_latent_frame(catalog), truth / "item_latent.parquet")
    writer.write(dirt, truth / "dirt.parquet")
