"""``shoprank features apply``: register ``feature_repo/`` in the workdir's feature store, and
describe what it defines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from feast import FeatureStore

from shoprank.config import Settings
from shoprank.errors import FeatureStoreError
from shoprank.features.store import feast, open_store


@dataclass(frozen=True)
class ViewInfo:
    """A feature view (or on-demand view) as registered."""

    name: str
    kind: str
    entities: tuple[str, ...]
    features: int
    source: str
    ttl_days: float | None


@dataclass(frozen=True)
class Definitions:
    """What the feature store defines: views and the services that training and serving use."""

    views: list[ViewInfo]
    services: dict[str, int]


def apply(settings: Settings) -> Definitions:
    """Run ``feast apply`` for the workdir and profile, then describe the registry.

    Raises:
        FeatureStoreError: Feast rejected the definitions or could not reach its stores, or the
            workdir was copied with its registry (whose online tables are the original's).
    """
    if settings.profile == "embedded" and settings.registry.is_file():
        _check_own_tables(settings)
    feast(settings, "apply")
    return describe(open_store(settings))


def _check_own_tables(settings: Settings) -> None:
    """Refuse a registry that records online tables in another file: Feast's apply would drop
    them there (a workdir copied with its registry would tear down the original's store)."""
    online = settings.online_store.resolve()
    infra = open_store(settings).registry.get_infra(settings.project)
    others = sorted(
        {path for o in infra.infra_objects if (path := getattr(o, "path", None)) and Path(path).resolve() != online}
    )
    if others:
        raise FeatureStoreError(
            f"The registry {settings.registry} records online tables in {others[0]}, not in this workdir's "
            f"{online}: applying would drop them there. If the workdir was copied, delete {settings.registry} "
            f'and {online} and run "shoprank features apply" again'
        )


def describe(store: FeatureStore) -> Definitions:
    """The views and services registered in ``store``."""
    views = [
        ViewInfo(
            view.name,
            "view",
            tuple(view.entities),
            len(view.features),
            view.batch_source.tags.get("dbt.model", view.batch_source.name),
            view.ttl.total_seconds() / 86400 if view.ttl else None,
        )
        for view in sorted(store.list_feature_views(), key=lambda v: v.name)
    ]
    views += [
        ViewInfo(view.name, "on demand", (), len(view.features), "request + views", None)
        for view in sorted(store.list_on_demand_feature_views(), key=lambda v: v.name)
    ]
    services = {
        service.name: sum(len(p.features) for p in service.feature_view_projections)
        for service in sorted(store.list_feature_services(), key=lambda s: s.name)
    }
    return Definitions(views, services)
