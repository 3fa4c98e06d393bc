"""What a feature service asks of the offline store, read from the Feast registry.

Views, join keys, source Parquet paths, timestamp fields, TTLs, feature columns, on-demand
views and their inputs all come from the registry objects, resolved by the same Feast helpers
that ``FeatureStore.get_historical_features`` uses, so the plan names exactly Feast's columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from feast import FeatureService, FeatureStore, FeatureView, OnDemandFeatureView, utils
from feast.errors import FeatureServiceNotFoundException
from feast.types import FeastType

from shoprank.errors import FeatureStoreError
from shoprank.features.store import reads_parquet, registry_location, source_file


@dataclass(frozen=True)
class ViewPlan:
    """One feature view as a point-in-time join reads it.

    Attributes:
        name: Prefix of its output columns (``<name>__<feature>``).
        path: The Parquet of its batch source: a file, or a folder of parts (Spark's).
        timestamp_field: The source column holding when a value became known.
        ttl: How long a value stays valid (None: forever).
        join_keys: Source column -> entity column, one per join key.
        features: Source columns read, in output order.
    """

    name: str
    path: Path
    timestamp_field: str
    ttl: timedelta | None
    join_keys: dict[str, str]
    features: tuple[str, ...]

    @property
    def ttl_micros(self) -> int:
        """The TTL in microseconds (the view must have one)."""
        return self.ttl // self.ttl.resolution

    @property
    def columns(self) -> tuple[str, ...]:
        """The output column of each feature."""
        return tuple(f"{self.name}__{feature}" for feature in self.features)


@dataclass(frozen=True)
class OnDemandPlan:
    """One on-demand view: Feast's own object, the columns it reads and the outputs requested.

    Attributes:
        view: The registry's on-demand view (its transformation is Feast's code).
        sources: Joined feature columns it reads (``<view>__<feature>``).
        requests: Request-time fields it reads from the entity rows.
        columns: Its output columns the service asks for, in declared order.
    """

    view: OnDemandFeatureView
    sources: tuple[str, ...]
    requests: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ServicePlan:
    """Everything a training frame of one feature service needs.

    Attributes:
        service: The feature service name.
        views: Feature views to join, in Feast's order.
        on_demand: On-demand views to apply after the joins, in Feast's order.
        entity_columns: Columns every entity row must carry (join keys, then request fields).
        dtypes: Feast type of each column the service defines (its features, in order).
    """

    service: str
    views: tuple[ViewPlan, ...]
    on_demand: tuple[OnDemandPlan, ...]
    entity_columns: tuple[str, ...]
    dtypes: dict[str, FeastType]

    @property
    def features(self) -> tuple[str, ...]:
        """The service's feature columns (what a model trains on)."""
        return tuple(self.dtypes)

    @property
    def type_names(self) -> dict[str, str]:
        """Each feature column's Feast type by name: what a model is bound to."""
        return {name: str(kind) for name, kind in self.dtypes.items()}

    @property
    def feature_columns(self) -> tuple[str, ...]:
        """Every column the joins and on-demand views add, in output order (as Feast returns them:
        view features, including the on-demand views' inputs, then on-demand outputs)."""
        joined = tuple(column for view in self.views for column in view.columns)
        return joined + tuple(column for odfv in self.on_demand for column in odfv.columns)


def resolve(store: FeatureStore, service: str) -> ServicePlan:
    """Plan the historical retrieval of a feature service from the store's registry.

    Raises:
        FeatureStoreError: The service is not registered, or a view cannot be read by a plain
            point-in-time join over Parquet.
    """
    try:
        found = store.get_feature_service(service)
    except FeatureServiceNotFoundException:
        raise FeatureStoreError(
            f'Feature service "{service}" not found in {registry_location(store)}; run "shoprank features apply"'
        ) from None
    return plan_views(service, *_views(store, found), repo=store.config.repo_path)


def plan_views(
    service: str,
    refs: list[str],
    views: list[FeatureView],
    on_demand: list[OnDemandFeatureView],
    repo: Path | None = None,
) -> ServicePlan:
    """Plan the retrieval of feature references (``view:feature``) from views with projections.

    A view's features come in reference order; the features an on-demand view reads that the
    service does not name follow, in the on-demand view's declared order (Feast adds them too).
    Relative source paths are taken from ``repo``, the store's repository (the workdir).
    """
    wanted: dict[str, list[str]] = {}
    for ref in refs:
        name, feature = ref.split(":", 1)
        wanted.setdefault(name, []).append(feature)
    odfvs = [odfv for odfv in on_demand if odfv.projection.name_to_use() in wanted]
    for odfv in odfvs:
        for source in odfv.source_feature_view_projections.values():
            features = wanted.setdefault(source.name, [])
            features.extend(f.name for f in source.features if f.name not in features)
    by_name = {view.projection.name_to_use(): view for view in views}
    projections = {view.projection.name_to_use(): view.projection for view in [*views, *odfvs]}
    dtypes = {}
    for ref in refs:
        name, feature = ref.split(":", 1)
        dtypes[f"{name}__{feature}"] = projections[name].get_feature(feature).dtype
    view_plans = tuple(
        _view_plan(by_name[name], features, repo) for name, features in wanted.items() if name in by_name
    )
    odfv_plans = tuple(_on_demand_plan(odfv, wanted[odfv.projection.name_to_use()]) for odfv in odfvs)
    keys = [key for plan in view_plans for key in plan.join_keys.values()]
    requests = [field for plan in odfv_plans for field in plan.requests]
    return ServicePlan(service, view_plans, odfv_plans, tuple(dict.fromkeys(keys + requests)), dtypes)


def _views(store: FeatureStore, service: FeatureService) -> tuple[list[str], list[FeatureView], list]:
    """The service's feature references and views, resolved as ``get_historical_features`` does."""
    refs = utils._get_features(store.registry, store.project, service, allow_cache=True)
    views, on_demand = utils._get_feature_views_to_use(store.registry, store.project, service, allow_cache=True)
    return refs, views, on_demand


def _view_plan(view: FeatureView, features: list[str], repo: Path | None) -> ViewPlan:
    source = view.batch_source
    if not reads_parquet(source):
        raise FeatureStoreError(
            f'Feature view "{view.name}" reads "{source.name}", a {type(source).__name__} that is not plain Parquet '
            "(a path, no created timestamp or field mapping), which the DuckDB engine does not join; "
            'use engine="feast" or a plain Parquet source'
        )
    path = source_file(source, repo)
    if not path.exists():
        raise FeatureStoreError(
            f'Feature view "{view.name}" reads "{path}", which does not exist; '
            'run "shoprank build", then "shoprank features apply"'
        )
    keys = view.projection.join_key_map or {column.name: column.name for column in view.entity_columns}
    return ViewPlan(
        name=view.projection.name_alias or view.name,
        path=path,
        timestamp_field=source.timestamp_field,
        ttl=view.ttl or None,
        join_keys=dict(keys),
        features=tuple(features),
    )


def _on_demand_plan(odfv: OnDemandFeatureView, features: list[str]) -> OnDemandPlan:
    if odfv.mode not in ("pandas", "python"):
        raise FeatureStoreError(
            f'On-demand view "{odfv.name}" runs in {odfv.mode} mode, which the DuckDB engine does not apply; '
            'use engine="feast" or a pandas on-demand view'
        )
    sources = tuple(
        f"{source.name}__{feature.name}"
        for source in odfv.source_feature_view_projections.values()
        for feature in source.features
    )
    requests = tuple(field.name for request in odfv.source_request_sources.values() for field in request.schema)
    prefix = odfv.projection.name_to_use()
    columns = tuple(f"{prefix}__{feature.name}" for feature in odfv.features if feature.name in features)
    return OnDemandPlan(odfv, sources, requests, columns)
