"""Shared fixtures: a tiny shop run through the whole pipeline once per test session (once per
pytest-xdist worker: ``pytest`` runs the modules on two workers)."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import shutil
import socket
from pathlib import Path
from uuid import uuid4

import pytest
import yaml

from shoprank.config import FEATURE_REPO_DIR, Settings
from shoprank.pipeline import PipelineResult, run_pipeline
from shoprank.progress import progress_bar

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_dataset(relative: str) -> Path:
    """A file of ../shared/datasets, or skip the test when the folder is absent (a user's clone)."""
    path = SHARED_DATASETS / relative
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared sample datasets are only on the project's machines")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, PipelineResult]:
    """Settings of a workdir holding the `tiny` shop after simulate -> ingest -> build -> validate."""
    settings = Settings(workdir=tmp_path_factory.mktemp("tiny-shop"), seed=7, simulate={"preset": "tiny"})
    return settings, run_pipeline(settings, progress_bar)


@pytest.fixture(scope="session")
def tiny_shop(tiny_run: tuple[Settings, PipelineResult]) -> Settings:
    """The tiny shop's settings (read it only; copy the workdir to change it)."""
    return tiny_run[0]


@pytest.fixture(scope="session")
def served_shop(tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the tiny shop for the serving commands (they open its online store and index)."""
    workdir = tmp_path_factory.mktemp("served") / "shop"
    shutil.copytree(tiny_shop.workdir, workdir)
    return dataclasses.replace(tiny_shop, workdir=workdir)


@pytest.fixture(scope="session")
def home_depot_shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    """The first 2,000 Home Depot judgments, ingested and built, and the sample file."""
    from shoprank.build import dbt_build
    from shoprank.ingest.run import ingest

    source = shared_dataset("homedepot_search_relevance/judgments_dev.csv")
    settings = Settings(workdir=tmp_path_factory.mktemp("home-depot"))
    sample = settings.workdir / "judgments.csv"
    with source.open(encoding="utf-8") as full, sample.open("w", encoding="utf-8") as head:
        head.writelines(line for _, line in zip(range(2001), full, strict=False))
    ingest(settings.warehouse, [sample], fmt="homedepot")
    dbt_build(settings)
    return settings, sample


SERVERS = {"Redis": ("127.0.0.1", 6379), "PostgreSQL": ("127.0.0.1", 5432)}


@pytest.fixture(scope="session")
def production_servers(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Redis and PostgreSQL of the production profile: skip when absent (a user's machine), fail
    when SHOPRANK_REQUIRE_SERVERS is set (CI, where .ci/run starts them)."""
    down = []
    for name, address in SERVERS.items():
        try:
            socket.create_connection(address, timeout=2).close()
        except OSError:
            down.append(f"{name} at {address[0]}:{address[1]}")
    if down:
        reason = f"{' and '.join(down)} not reachable: the production-profile tests need them"
        if os.environ.get("SHOPRANK_REQUIRE_SERVERS"):
            pytest.fail(reason)
        pytest.skip(reason)
    _registry_tables(tmp_path_factory.getbasetemp().parent / "registry-tables.lock")


def _registry_tables(lock: Path) -> None:
    """Create the SQL registry's tables once, one worker at a time: two workers applying their first
    projects to an empty database would both create them, and one would fail on the other's."""
    from feast.infra.registry.sql import metadata
    from sqlalchemy import create_engine

    config = yaml.safe_load((FEATURE_REPO_DIR / "feature_store.production.yaml").read_text())
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        engine = create_engine(os.environ.get("SHOPRANK_REGISTRY_URL", config["registry"]["path"]))
        metadata.create_all(engine)
        engine.dispose()


@pytest.fixture(scope="session")
def production_shop(production_servers, tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the tiny shop on the production profile: a Feast project of its own in the
    PostgreSQL registry, its online values materialized into Redis; both dropped afterwards."""
    from shoprank.features.definitions import apply
    from shoprank.features.materialize import materialize
    from shoprank.features.store import drop_project, open_store

    workdir = tmp_path_factory.mktemp("production") / "shop"
    shutil.copytree(tiny_shop.workdir, workdir, ignore=shutil.ignore_patterns("registry.db", "online_store.db"))
    settings = dataclasses.replace(tiny_shop, workdir=workdir, profile="production", project=f"t_{uuid4().hex[:8]}")
    apply(settings)
    materialize(settings)
    yield settings
    drop_project(open_store(settings))
