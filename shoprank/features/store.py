"""The Feast store of a workdir: its configuration per profile, ``feast apply``, and opening it.

``feature_repo/`` holds one set of definitions and one YAML per profile. For a workdir, shoprank
writes ``WORKDIR/feature_store.yaml``: the profile's YAML with the registry and online store
moved into the workdir (embedded) and the project named by the settings, so workdirs never share
a registry or online rows. Feast itself runs unchanged, ``feast apply`` included.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from feast import FeatureStore

from shoprank.config import FEATURE_REPO_DIR, Settings
from shoprank.errors import FeatureStoreError

PROFILE_FILES = {"embedded": "feature_store.yaml", "production": "feature_store.production.yaml"}
_FEAST = "from feast.cli.cli import cli; cli()"


def write_config(settings: Settings) -> Path:
    """Write the workdir's Feast configuration for its profile; return its path."""
    config = yaml.safe_load((FEATURE_REPO_DIR / PROFILE_FILES[settings.profile]).read_text())
    config["project"] = settings.project
    if settings.profile == "embedded":
        config["registry"] = str(settings.registry.resolve())
        config["online_store"]["path"] = str(settings.online_store.resolve())
    else:
        if settings.redis:
            config["online_store"]["connection_string"] = settings.redis
        if settings.registry_url:
            config["registry"]["path"] = settings.registry_url
    settings.feature_store_yaml.parent.mkdir(parents=True, exist_ok=True)
    settings.feature_store_yaml.write_text(yaml.safe_dump(config, sort_keys=False))
    return settings.feature_store_yaml


def feast(settings: Settings, *args: str) -> str:
    """Run a ``feast`` CLI command on ``feature_repo/`` with the workdir's configuration.

    Raises:
        FeatureStoreError: Feast failed; the message carries its last error line.
    """
    command = [sys.executable, "-c", _FEAST, "-c", str(FEATURE_REPO_DIR), "-f", str(write_config(settings)), *args]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **settings.env()})
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()] or ["no output"]
        raise FeatureStoreError(
            f"feast {' '.join(args)} failed: {lines[-1]}; check the definitions in {FEATURE_REPO_DIR}"
        )
    return done.stdout


def open_store(settings: Settings) -> FeatureStore:
    """The workdir's feature store for its profile, once ``shoprank features apply`` ran.

    Raises:
        FeatureStoreError: Nothing is registered for this workdir, profile and project.
    """
    if settings.profile == "embedded" and not settings.registry.is_file():
        raise FeatureStoreError(f'No feature store in "{settings.workdir}" yet; run "shoprank features apply"')
    store = FeatureStore(repo_path=str(FEATURE_REPO_DIR), fs_yaml_file=write_config(settings))
    if not store.list_feature_views():
        raise FeatureStoreError(
            f'No feature views registered for project "{settings.project}" ({settings.profile} profile); '
            'run "shoprank features apply"'
        )
    return store


def redis_client(store: FeatureStore):
    """A redis-py client of the store's Redis online store (its first address)."""
    from redis import Redis

    host, port = store.config.online_store.connection_string.split(",")[0].split(":")
    return Redis(host, int(port))


def drop_project(store: FeatureStore) -> None:
    """Delete a production project: its online values in Redis and its registry entries."""
    client = redis_client(store)
    keys = list(client.scan_iter(match=b"*" + store.project.encode(), count=10_000))
    for start in range(0, len(keys), 10_000):
        client.unlink(*keys[start : start + 10_000])
    store.registry.delete_project(store.project)
