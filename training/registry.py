"""The model registry: one immutable folder per trained model, bound to its feature service.

``<workdir>/models/<service>/<version>/`` holds the model file, ``card.json`` (the service, the
exact ordered features and their hash, label source, data windows, lineage, config, seed, metrics,
training time), ``categories.json``, the evaluation tables, importance and learning curve. A
version is written into a hidden folder and renamed when complete, so it is never seen half
written; ``<workdir>/models/<service>/production`` names the promoted version.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from shoprank.config import Settings
from shoprank.errors import FeatureStoreError, ModelError
from shoprank.features.store import open_store
from training.plan import ServicePlan, resolve
from training.rankers import Ranker, RankerConfig, load

PRODUCTION = "production"
_VERSION = re.compile(r"^v(\d{4,})$")


@dataclass(frozen=True)
class ModelVersion:
    """A registered model: its folder and card."""

    path: Path
    card: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.card['service']}/{self.card['version']}"


def features_hash(features: dict[str, str]) -> str:
    """Hash of the ordered feature names and types a model reads."""
    return hashlib.sha256(json.dumps(list(features.items())).encode()).hexdigest()[:16]


def register(settings: Settings, ranker: Ranker, card: dict[str, Any], tables: dict[str, pl.DataFrame]) -> ModelVersion:
    """Write a new version of ``card["service"]``: the model, its card and its tables.

    Args:
        settings: The workdir.
        ranker: The trained model.
        card: Everything known about it (``service`` required); ``version`` is added.
        tables: Relative Parquet path -> table (``evaluation/metrics.parquet``, ...).
    """
    folder = settings.models / card["service"]
    folder.mkdir(parents=True, exist_ok=True)
    version = f"v{_next_number(folder):04d}"
    partial = folder / f".{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    ranker.save(partial)
    card = {**card, "version": version}
    (partial / "card.json").write_text(json.dumps(card, indent=2, default=str) + "\n")
    (partial / "categories.json").write_text(json.dumps(ranker.categories, sort_keys=True) + "\n")
    for name, table in tables.items():
        (partial / name).parent.mkdir(parents=True, exist_ok=True)
        table.write_parquet(partial / name)
    partial.rename(folder / version)
    return ModelVersion(folder / version, card)


def versions(settings: Settings, service: str | None = None) -> list[ModelVersion]:
    """Every registered version (of one service), oldest first per service."""
    folders = [settings.models / service] if service else sorted(p for p in settings.models.glob("*") if p.is_dir())
    found = []
    for folder in folders:
        for path in sorted(p for p in folder.glob("v*") if _VERSION.match(p.name)):
            found.append(ModelVersion(path, json.loads((path / "card.json").read_text())))
    return found


def get(settings: Settings, service: str, version: str | None = None) -> ModelVersion:
    """A version of ``service``: the one named, else the promoted one, else the newest.

    Raises:
        ModelError: No such version, naming the versions there are.
    """
    known = versions(settings, service)
    if not known:
        raise ModelError(
            f'No model of feature service "{service}" in {settings.models}; run "shoprank train --service {service}"'
        )
    version = version or promoted(settings, service) or known[-1].card["version"]
    for model in known:
        if model.card["version"] == version:
            return model
    names = ", ".join(m.card["version"] for m in known)
    raise ModelError(f'Model "{service}/{version}" not found in {settings.models}; versions: {names}')


def promoted(settings: Settings, service: str) -> str | None:
    """The version promoted to production, if any."""
    marker = settings.models / service / PRODUCTION
    return marker.read_text().strip() if marker.is_file() else None


def promote(settings: Settings, service: str, version: str) -> ModelVersion:
    """Make ``version`` the production model of ``service``."""
    model = get(settings, service, version)
    marker = settings.models / service / PRODUCTION
    marker.with_suffix(".tmp").write_text(version + "\n")
    marker.with_suffix(".tmp").replace(marker)
    return model


def load_ranker(
    settings: Settings, service: str, version: str | None = None, plan: ServicePlan | None = None
) -> tuple[Ranker, ModelVersion]:
    """Load a model after checking that its feature service still has exactly its features (as
    ``plan`` reads them, else as the registry defines the service now).

    Raises:
        ModelError: The version is missing, or the service's features or types changed since
            training (a silent wrong prediction otherwise).
    """
    model = get(settings, service, version)
    card = model.card
    if plan is None:
        try:
            plan = resolve(open_store(settings), service)
        except FeatureStoreError as exc:
            raise ModelError(f'Model "{model.name}" cannot be loaded: {exc}') from None
    current = plan.type_names
    if features_hash(current) != card["features_hash"]:
        added = [f for f in current if f not in card["service_features"]]
        removed = [f for f in card["service_features"] if f not in current]
        raise ModelError(
            f'Model "{model.name}" was trained on feature service "{service}" with {len(card["service_features"])} '
            f"features (hash {card['features_hash']}); the registry's service now differs (added {added}, "
            f"removed {removed}, or types/order changed); restore the service or train a new model"
        )
    config = RankerConfig(**card["config"])
    categories = json.loads((model.path / "categories.json").read_text())
    return load(model.path, config, tuple(card["features"]), categories), model


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION.match(p.name.lstrip(".").split(".")[0]))]
    return max(numbers, default=0) + 1
