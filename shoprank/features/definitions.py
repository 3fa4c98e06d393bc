"""``shoprank features apply``: register ``feature_repo/`` in the workdir's feature store, and
describe what it defines."""

from __future__ import annotations

from dataclasses import dataclass

from feast import FeatureStore

from shoprank.config import Settings
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

    A copied workdir's registry (which may record the original's online tables) is safe to
    apply: the embedded online store is typed by its class, so Feast creates and drops tables in
    the workdir's own file only (``shoprank.features.store``).

    Raises:
        FeatureStoreError: Feast rejected the definitions or could not reach its stores.
    """
    feast(settings, "apply")
    return describe(open_store(settings))


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
