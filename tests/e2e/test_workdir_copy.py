"""A workdir is self-contained: Feast's own CLI or shoprank run on a `cp -r` copy (or on a checkout
whose `data/` is one) gives the copy stores of its own and leaves the original byte for byte as it
was, while a `shoprank serve` of the original keeps answering from its online store. On the
production profile, workdirs sharing Redis and PostgreSQL (copies included) get projects of their own.

The original's registry records its online tables by absolute path, as Feast's plan does (shoprank
before its workdirs were Feast repositories wrote such registries): with the online store typed
`sqlite`, an apply of a copy dropped those tables in the original's file."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
import yaml
from feast import FeatureStore

from shoprank.config import FEATURE_REPO_DIR, Settings, load_settings
from shoprank.features.store import drop_project, open_store, redis_client, source_file
from shoprank.warehouse import read
from shoprank.workdir import IDENTITY_FILE
from tests.e2e.test_serve import call, start
from training.plan import resolve

BIN = Path(sys.executable).parent
MARKER = 987_654  # views_30d of a row that only a copy's mart holds


@pytest.fixture(scope="module")
def original(tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A materialized copy of the tiny shop whose registry records its online tables by absolute path."""
    workdir = tmp_path_factory.mktemp("original") / "shop"
    shutil.copytree(tiny_shop.workdir, workdir)
    config = yaml.safe_load((workdir / "feature_store.yaml").read_text())
    config["online_store"]["type"] = "sqlite"  # Feast's plan: it records the tables in the registry
    planned = workdir.parent / "planned.yaml"
    planned.write_text(yaml.safe_dump(config))
    feast(workdir, "-c", str(workdir), "-f", str(planned), "apply")
    infra = FeatureStore(repo_path=str(workdir)).registry.get_infra("shoprank").infra_objects
    assert {(o.path, o.name.removeprefix("shoprank_")) for o in infra} == {
        (str(workdir / "online_store.db"), view) for view in _views(workdir)
    }
    return replace(tiny_shop, workdir=workdir)


@pytest.fixture(scope="module")
def server(original: Settings):
    """``shoprank serve`` of the original, started before any copy is made."""
    yield from start(original)


@pytest.fixture
def untouched(original: Settings, server: str):
    """Checks, after the test, that the original's stores are byte for byte as before, its online
    tables all there with their rows, and its service still answers from them."""
    items = read(original.warehouse, "select title from marts.dim_items order by item_id")["title"]
    _answers_from_the_store(server, items[0], "u000001")
    before = _fingerprint(original.workdir)
    yield
    assert _fingerprint(original.workdir) == before
    _answers_from_the_store(server, items[1], "u000002")  # other values than before: read now, not kept


def test_feast_on_a_copied_workdir_uses_the_copys_stores(original, untouched, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(original.workdir, copy)
    user, end = _mark(copy)
    yaml_file = str(copy / "feature_store.yaml")
    feast(copy, "-f", yaml_file, "apply")
    feast(copy, "-f", yaml_file, "materialize-incremental", end)
    _check_own_stores(copy, copy, user)
    feast(copy, "-f", yaml_file, "teardown")
    assert not (copy / "online_store.db").exists() and not FeatureStore(repo_path=str(copy)).list_projects()


def test_feast_in_a_checkouts_feature_repo_uses_its_data_folder(original, untouched, tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(FEATURE_REPO_DIR, checkout / "feature_repo", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(original.workdir, checkout / "data")
    user, end = _mark(checkout / "data")
    repo = checkout / "feature_repo"
    environ = {name: value for name, value in os.environ.items() if name != "SHOPRANK_HOME"}
    feast(repo, "apply", env=environ)
    feast(repo, "materialize-incremental", end, env=environ)
    _check_own_stores(repo, checkout / "data", user)
    registered = FeatureStore(repo_path=str(repo))  # plain feature_repo/ registers what shoprank's workdir does
    for kind in ("entities", "data_sources", "feature_views", "on_demand_feature_views", "feature_services"):
        names = sorted(item.name for item in getattr(registered, f"list_{kind}")())
        assert names == sorted(item.name for item in getattr(open_store(original), f"list_{kind}")()), kind


def test_shoprank_on_a_copied_workdir_uses_the_copys_stores(original, untouched, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(original.workdir, copy)
    user, _ = _mark(copy)
    shoprank(tmp_path, "--workdir", str(copy), "features", "materialize")  # the copied registry, as it is
    _check_own_stores(copy, copy, user)
    plan = resolve(open_store(replace(original, workdir=copy)), "search_ranker_v2")  # training frames' marts
    assert {Path(view.path).resolve().parent for view in plan.views} == {(copy / "marts").resolve()}
    shoprank(tmp_path, "--workdir", str(copy), "features", "apply")  # the copied registry's tables: the original's
    _check_own_stores(copy, copy, user)


def test_production_workdirs_sharing_redis_and_postgresql_never_share_a_project(
    production_servers, tiny_shop, tmp_path
):
    first, second, copy = tmp_path / "first", tmp_path / "second", tmp_path / "copy"
    for workdir in (first, second):
        shutil.copytree(tiny_shop.workdir, workdir, ignore=shutil.ignore_patterns("*.db"))
    made = []
    try:
        for workdir in (first, second):
            shoprank(tmp_path, "--workdir", str(workdir), "--profile", "production", "features", "apply")
            made.append(_production(workdir))
            shoprank(tmp_path, "--workdir", str(workdir), "--profile", "production", "features", "materialize")
        ids = [_identity(workdir)["id"] for workdir in (first, second)]
        assert [settings.project for settings in made] == [f"shoprank_{id[:8]}" for id in ids]
        assert made[0].project != made[1].project
        keys = [set(_redis_keys(settings)) for settings in made]
        assert keys[0] and keys[1] and not keys[0] & keys[1]
        assert {key.removesuffix(made[0].project.encode()) for key in keys[0]} == {
            key.removesuffix(made[1].project.encode()) for key in keys[1]
        }  # the same entities, each project under keys of its own

        shutil.copytree(first, copy)
        recorded = (first / IDENTITY_FILE).read_text()
        shoprank(tmp_path, "--workdir", str(copy), "--profile", "production", "features", "apply")
        made.append(_production(copy))
        assert made[2].project not in (made[0].project, made[1].project)
        assert _identity(copy)["path"] == str(copy.resolve()) and (first / IDENTITY_FILE).read_text() == recorded
        assert set(_redis_keys(made[0])) == keys[0]
        assert len(open_store(made[2]).list_feature_views()) == len(_views(tiny_shop.workdir))
    finally:
        for settings in made:
            drop_project(open_store(settings))


def feast(repo: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """Feast's own CLI, run in ``repo`` as a data engineer would."""
    done = subprocess.run([str(BIN / "feast"), *args], cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def shoprank(cwd: Path, *args: str) -> None:
    """The shoprank CLI, with no project, profile or workdir from the environment."""
    environ = {
        k: v for k, v in os.environ.items() if k not in ("SHOPRANK_HOME", "SHOPRANK_PROFILE", "SHOPRANK_PROJECT")
    }
    done = subprocess.run([str(BIN / "shoprank"), *args], cwd=cwd, env=environ, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def _views(workdir: Path) -> list[str]:
    return sorted(view.name for view in FeatureStore(repo_path=str(workdir)).list_feature_views())


def _fingerprint(workdir: Path) -> dict:
    """The SHA-256 of the registry and online store files, and the rows of every online table."""
    hashes = {
        name: hashlib.sha256((workdir / name).read_bytes()).hexdigest() for name in ("registry.db", "online_store.db")
    }
    with sqlite3.connect(f"file:{workdir / 'online_store.db'}?mode=ro", uri=True) as conn:
        tables = [name for (name,) in conn.execute("select name from sqlite_master where type = 'table' order by 1")]
        rows = {table: conn.execute(f'select count(*) from "{table}"').fetchone()[0] for table in tables}
    assert sorted(rows) == [f"shoprank_{view}" for view in _views(workdir)] and all(rows.values())
    return {**hashes, **rows}


def _answers_from_the_store(server: str, query: str, user: str) -> None:
    status, body = call(f"{server}/v1/search", {"query": query, "k": 10, "user_id": user})
    assert status == 200 and body["fallback"] is None and body["items"], body
    status, health = call(f"{server}/health")
    assert health["status"] == "ok" and health["online_store"] == "reachable", health


def _mark(workdir: Path) -> tuple[str, str]:
    """Add to the workdir's user mart a row newer than anything materialized, whose ``views_30d``
    is ``MARKER``; return its user and an end of materialization past it (ISO, UTC)."""
    path = workdir / "marts" / "user_features_daily.parquet"
    mart = pl.read_parquet(path)
    newest = mart.sort("event_timestamp").tail(1)
    moment = newest["event_timestamp"][0] + timedelta(hours=12)
    row = newest.with_columns(pl.lit(moment, dtype=mart.schema["event_timestamp"]).alias("event_timestamp"))
    row = row.with_columns(pl.lit(MARKER, dtype=mart.schema["views_30d"]).alias("views_30d"))
    pl.concat([mart, row]).write_parquet(path)
    return newest["user_id"][0], (moment + timedelta(hours=12)).isoformat()


def _check_own_stores(repo: Path, workdir: Path, user: str) -> None:
    """The store of the Feast repository ``repo`` reads the marts of ``workdir`` and holds the
    marked row in ``workdir``'s online store, every view's table with rows."""
    store = FeatureStore(repo_path=str(repo))
    for view in store.list_feature_views():
        assert source_file(view.batch_source, store.config.repo_path).resolve().parent == (workdir / "marts").resolve()
    assert (repo / store.config.online_store.path).resolve() == (workdir / "online_store.db").resolve()
    online = store.get_online_features(["user_features:views_30d"], [{"user_id": user}]).to_dict()
    assert online["views_30d"] == [MARKER]
    with sqlite3.connect(workdir / "online_store.db") as conn:
        for view in store.list_feature_views():
            assert conn.execute(f'select count(*) from "shoprank_{view.name}"').fetchone()[0] > 0, view.name


def _production(workdir: Path) -> Settings:
    """The settings a production command on ``workdir`` resolves (its project included)."""
    return load_settings(environ={}, options={"workdir": workdir, "profile": "production"})


def _identity(workdir: Path) -> dict:
    return json.loads((workdir / IDENTITY_FILE).read_text())


def _redis_keys(settings: Settings) -> list[bytes]:
    store = open_store(settings)
    return list(redis_client(store).scan_iter(match=b"*" + store.project.encode(), count=10_000))
