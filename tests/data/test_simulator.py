"""The shop simulator's output: determinism, contracts, dirt, funnel, signal and ground truth (tiny preset)."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import numpy as np
import pandera.polars as pa
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from shoprank.contracts import RAW_TABLES
from shoprank.errors import ConfigError
from shoprank.simulate import SimulationSummary, simulate, spec_for
from shoprank.simulate.truth import relevance

SEED = 7
TABLES = ("events", "requests", "items", "users")
TRUTH_FILES = ("relevance", "user_latent", "item_latent", "dirt")
SKEW_KINDS = ("clock_skew", "absurd_time")


def run(root: Path, seed: int = SEED, **overrides) -> tuple[SimulationSummary, list[tuple[int, int, str]]]:
    calls: list[tuple[int, int, str]] = []
    summary = simulate(
        spec_for("tiny", overrides), seed, root / "landing", root / "truth", progress=lambda *a: calls.append(a)
    )
    return summary, calls


def load(root: Path) -> dict[str, pl.DataFrame]:
    landing, truth = root / "landing", root / "truth"
    frames = {
        "events": pl.read_parquet(landing / "events" / "*.parquet"),
        "requests": pl.read_parquet(landing / "requests" / "*.parquet"),
        "items": pl.read_parquet(landing / "items.parquet"),
        "users": pl.read_parquet(landing / "users.parquet"),
    }
    frames.update({name: pl.read_parquet(truth / f"{name}.parquet") for name in TRUTH_FILES})
    return frames


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SimulationSummary, list, dict[str, pl.DataFrame]]:
    root = tmp_path_factory.mktemp("shop")
    summary, calls = run(root)
    return root, summary, calls, load(root)


@pytest.fixture(scope="module")
def frames(shop) -> dict[str, pl.DataFrame]:
    return shop[3]


@pytest.fixture(scope="module")
def normalized(frames) -> pl.DataFrame:
    """Events with staging-style event types, skewed and bot events dropped."""
    skewed = frames["dirt"].filter(pl.col("kind").is_in(SKEW_KINDS))["event_id"].implode()
    bots = frames["user_latent"].filter("is_bot")["user_id"].implode()
    return (
        frames["events"]
        .filter(~pl.col("event_id").is_in(skewed) & ~pl.col("user_id").is_in(bots))
        .with_columns(pl.col("event_type").str.strip_chars().str.to_lowercase())
    )


@pytest.fixture(scope="module")
def impressions(frames) -> pl.DataFrame:
    """Requests with a ``clicked`` flag and the pair's true relevance."""
    events = frames["events"].with_columns(pl.col("event_type").str.strip_chars().str.to_lowercase())
    clicks = events.filter(pl.col("event_type") == "click").select("request_id", "position").unique()
    return (
        frames["requests"]
        .join(clicks.with_columns(clicked=pl.lit(True)), on=["request_id", "position"], how="left")
        .with_columns(pl.col("clicked").fill_null(False))
        .join(frames["relevance"], on=["user_id", "item_id"], how="left")
    )


def test_same_seed_gives_identical_tables_and_another_seed_does_not(shop, tmp_path):
    first = shop[3]
    run(tmp_path / "again")
    again = load(tmp_path / "again")
    for name, frame in first.items():
        assert_frame_equal(frame, again[name])
    run(tmp_path / "other", seed=SEED + 1)
    other = load(tmp_path / "other")
    for name in ("events", "requests", "items", "users"):
        assert not first[name].equals(other[name]), name


def test_tables_have_the_contract_columns_and_layout(shop):
    root, summary, calls, frames = shop
    for table in TABLES:
        assert dict(frames[table].schema) == RAW_TABLES[table].columns
        assert summary.rows[table] == frames[table].height
    assert sorted(p.name for p in (root / "landing").iterdir()) == [
        "events",
        "items.parquet",
        "requests",
        "users.parquet",
    ]
    assert len(list((root / "landing" / "events").glob("part-*.parquet"))) == len(calls)
    assert calls[-1][:2] == (len(calls), len(calls)) and [c[0] for c in calls] == list(range(1, len(calls) + 1))


def test_only_injected_dirt_breaks_the_contract(shop):
    _, summary, _, frames = shop
    now = datetime.now(UTC).replace(tzinfo=None)
    for table in ("requests", "items", "users"):
        RAW_TABLES[table].schema(now).validate(frames[table], lazy=True)
    with pytest.raises(pa.errors.SchemaErrors) as failed:
        RAW_TABLES["events"].schema(now).validate(frames["events"], lazy=True)
    cases = failed.value.failure_cases.with_columns(pl.col("check").str.split(" ").list.first())
    by_check = dict(cases.group_by("check").len().iter_rows())
    assert by_check == {
        "implausible_timestamp": summary.dirt["absurd_time"],
        "unknown_event_type": summary.dirt["unknown_event_type"],
        "not_nullable": summary.dirt["missing_item"],
    }
    assert all(n > 0 for n in by_check.values())
    failing = frames["events"][cases["index"].to_list()].select("event_id").unique()
    dirt = frames["dirt"].filter(pl.col("kind").is_in(["absurd_time", "unknown_event_type", "missing_item"]))
    assert failing.join(dirt, on="event_id", how="anti").is_empty()


def test_dirt_counts_match_the_summary_and_the_data(shop):
    _, summary, _, frames = shop
    events, manifest = frames["events"], frames["dirt"]
    assert dict(manifest.group_by("kind").len().iter_rows()) == {
        k: v for k, v in summary.dirt.items() if v and not k.startswith("bot")
    }
    resent = events.group_by("event_id").len().filter(pl.col("len") > 1)
    assert resent.height == summary.dirt["duplicate_same_id"] > 0
    content = [c for c in events.columns if c != "event_id"]
    doubled = events.group_by(content).len().filter(pl.col("len") > 1)["len"].sum() - resent.height
    assert doubled >= summary.dirt["duplicate_new_id"] > 0
    odd = events.filter(~pl.col("event_type").is_in(["view", "click", "add_to_cart", "favorite", "purchase"]))
    assert odd.height == summary.dirt["event_type_variant"] + summary.dirt["unknown_event_type"]
    assert summary.dirt["clock_skew"] > 0 and summary.dirt["bot_users"] >= 1


def test_funnel_rates_are_realistic(normalized, impressions):
    counts = dict(normalized.group_by("event_type").len().iter_rows())
    assert 0.01 <= counts["purchase"] / counts["view"] <= 0.03
    assert 0.03 <= impressions["clicked"].mean() <= 0.15
    assert counts["click"] < counts["view"] and counts["add_to_cart"] > counts["purchase"]


def test_click_through_rate_falls_with_position(impressions):
    by_block = impressions.group_by(pl.col("position") // 3).agg(pl.col("clicked").mean()).sort("position")["clicked"]
    assert all(a > b for a, b in pairwise(by_block))
    assert by_block[0] > 2.5 * by_block[-1]


def test_clicked_items_are_more_relevant_than_skipped_ones(impressions):
    mean = dict(impressions.group_by("clicked").agg(pl.col("relevance").mean()).iter_rows())
    assert mean[True] > mean[False] + 0.1


def test_ids_reference_existing_users_and_items(frames):
    users, items = frames["users"]["user_id"], frames["items"]["item_id"].unique()
    assert users.is_unique().all()
    for table in ("events", "requests"):
        assert frames[table]["user_id"].is_in(users.implode()).all()
        assert frames[table]["item_id"].drop_nulls().is_in(items.implode()).all()
    served = frames["requests"].select("request_id").unique()
    linked = frames["events"].filter(pl.col("request_id").is_not_null()).select("request_id").unique()
    assert linked.join(served, on="request_id", how="anti").is_empty()
    search = frames["requests"]["surface"] == "search"
    assert frames["requests"].filter(search)["query"].null_count() == 0
    assert frames["requests"].filter(~search)["query"].null_count() == (~search).sum()


def test_items_have_sane_price_versions(frames):
    items = frames["items"].sort("item_id", "updated_at")
    start = spec_for("tiny").start
    versions = items.group_by("item_id").agg(
        pl.len().alias("n"),
        pl.col("updated_at").first().alias("listed"),
        (pl.col("updated_at").diff() > pl.duration()).all().alias("increasing"),
        (pl.col("price") / pl.col("price").shift(1)).drop_nulls().alias("ratio"),
    )
    assert versions["increasing"].all()
    assert versions.filter(pl.col("n") > 1).height > 0.1 * versions.height
    assert versions["n"].max() <= 4
    assert 0 < versions.filter(pl.col("listed") > start).height < 0.2 * versions.height
    ratios = versions["ratio"].explode().drop_nulls()
    assert ratios.min() >= 0.65 and ratios.max() <= 1.35 and (ratios != 1).mean() > 0.9
    later = items.filter(pl.col("updated_at") > start).join(versions, on="item_id").filter(pl.col("listed") <= start)
    assert later.height > 0


def test_nobody_acts_before_signup_and_items_before_listing(frames, normalized):
    users = frames["users"].select("user_id", "signup_time")
    early = normalized.join(users, on="user_id").filter(pl.col("event_time") < pl.col("signup_time"))
    assert early.is_empty()
    assert (
        frames["requests"].join(users, on="user_id").filter(pl.col("request_time") < pl.col("signup_time")).is_empty()
    )
    listed = frames["items"].group_by("item_id").agg(pl.col("updated_at").min().alias("listed"))
    shown = frames["requests"].join(listed, on="item_id")
    assert shown.filter(pl.col("request_time") < pl.col("listed")).is_empty()
    assert frames["users"]["signup_time"].max() > spec_for("tiny").start


def test_truth_is_kept_apart_and_reproducible(shop):
    root, _, _, frames = shop
    assert not list((root / "landing").rglob("*latent*")) and not list((root / "landing").rglob("relevance*"))
    truth = frames["relevance"]
    recomputed = relevance(frames["user_latent"], frames["item_latent"], truth.select("user_id", "item_id"))
    np.testing.assert_allclose(recomputed, truth["relevance"].to_numpy())
    assert truth["relevance"].is_between(0, 1).all() and set(truth["grade"].unique()) == {0, 1, 2, 3}
    shown = frames["requests"].select("user_id", "item_id").unique()
    assert shown.height == truth.height and shown.join(truth, on=["user_id", "item_id"], how="anti").is_empty()


def test_truth_inside_landing_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="inside landing"):
        simulate(spec_for("tiny"), SEED, tmp_path / "landing", tmp_path / "landing" / "truth")
    assert not (tmp_path / "landing").exists()


def test_relevance_scores_unshown_pairs(frames):
    pairs = pl.DataFrame({"user_id": frames["users"]["user_id"][:3], "item_id": frames["items"]["item_id"][:3]})
    values = relevance(frames["user_latent"], frames["item_latent"], pairs)
    assert values.shape == (3,) and ((values > 0) & (values < 1)).all()


def test_bots_burst_hundreds_of_views_per_minute(frames):
    bots = frames["user_latent"].filter("is_bot")["user_id"].implode()
    bursts = (
        frames["events"]
        .filter(pl.col("user_id").is_in(bots))
        .group_by("user_id", pl.col("event_time").dt.truncate("1m"))
        .len()
    )
    assert bursts["len"].max() > 100
    assert frames["events"].filter(pl.col("user_id").is_in(bots))["request_id"].null_count() > 0


def test_spec_for_rejects_unknown_presets_fields_and_values():
    with pytest.raises(ConfigError, match='"huge".*tiny, small, medium, large'):
        spec_for("huge")
    with pytest.raises(ConfigError, match='"n_userz".*n_users'):
        spec_for("tiny", {"n_userz": 5})
    with pytest.raises(ConfigError, match='"days" must be int, got "many"'):
        spec_for("tiny", {"days": "many"})
    with pytest.raises(ConfigError, match="duplicate_rate"):
        spec_for("tiny", {"duplicate_rate": 2})
    with pytest.raises(ConfigError, match="future"):
        spec_for("tiny", {"start": "2999-01-01"})
    assert spec_for("small", {"days": "14", "start": "2025-06-01"}).days == 14
