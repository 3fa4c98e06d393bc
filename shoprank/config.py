"""Typed settings: defaults < config file < environment < CLI options.

The config file is TOML (``shoprank.toml`` in the current directory, or ``--config`` /
``SHOPRANK_CONFIG``)::

    workdir = "data"
    seed = 7
    profile = "embedded"      # "production": Redis online store, PostgreSQL registry;
                              # "distributed": the same, with dbt and Feast's offline store on Spark
    project = "shoprank"      # the Feast project (default: shoprank; production: one per workdir)
    redis = "10.0.0.5:6379"   # production: the Redis online store (default 127.0.0.1:6379)
    registry_url = "postgresql+psycopg://feast@db:5432/feast"  # production: the SQL registry

    [simulate]
    preset = "small"
    days = 21
    bot_user_rate = 0.002

    [train]                   # hyperparameters of training.rankers.RankerConfig
    algorithm = "lightgbm"
    learning_rate = 0.05

Everything a run writes lives under ``workdir`` (``SHOPRANK_HOME``), so deleting that one folder
starts over and two workdirs never collide: on the production profile, whose Redis and PostgreSQL
workdirs share, a command's default project is the workdir's own (``default_project``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shoprank.errors import ConfigError
from shoprank.workdir import identify

DEFAULT_CONFIG_FILE = "shoprank.toml"
ENV_PREFIX = "SHOPRANK_"
REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
FEATURE_REPO_DIR = REPO_ROOT / "feature_repo"
PROFILES = ("embedded", "production", "distributed")
SHARED_STORES = ("production", "distributed")  # Redis and PostgreSQL, shared by workdirs
DEFAULT_PROJECT = "shoprank"
FIELDS = {"workdir": Path, "seed": int, "profile": str, "project": str, "redis": str, "registry_url": str}
TABLES = ("simulate", "train")
ENVIRONMENT = {
    "workdir": "SHOPRANK_HOME",
    "seed": "SHOPRANK_SEED",
    "profile": "SHOPRANK_PROFILE",
    "project": "SHOPRANK_PROJECT",
    "redis": "SHOPRANK_REDIS",
    "registry_url": "SHOPRANK_REGISTRY_URL",
}


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one run.

    Attributes:
        workdir: Folder that holds everything the run writes.
        seed: Seed of every random choice (simulator, splits, models).
        profile: ``embedded`` (SQLite, file registry), ``production`` (Redis online store,
            PostgreSQL registry) or ``distributed`` (production's stores; dbt, the raw tables and
            Feast's offline store on Spark).
        project: Feast project name: separates feature stores that share Redis and PostgreSQL.
            Commands that name none get ``default_project`` of their workdir (``load_settings``).
        redis: The production profile's Redis (Feast's ``connection_string``; None: the one in
            ``feature_repo/feature_store.production.yaml``).
        registry_url: The production profile's SQL registry (SQLAlchemy URL; None: the YAML's).
        simulate: Simulator options: ``preset`` plus overrides of the preset's fields.
        train: Ranker hyperparameters (fields of ``training.rankers.RankerConfig``).
    """

    workdir: Path = Path("data")
    seed: int = 7
    profile: str = "embedded"
    project: str = DEFAULT_PROJECT
    redis: str | None = None
    registry_url: str | None = None
    simulate: Mapping[str, Any] = field(default_factory=lambda: {"preset": "small"})
    train: Mapping[str, Any] = field(default_factory=dict)

    @property
    def warehouse(self) -> Path:
        """The DuckDB warehouse file."""
        return self.workdir / "warehouse.duckdb"

    @property
    def landing(self) -> Path:
        """Raw files waiting to be ingested (simulator output, served-event logs)."""
        return self.workdir / "landing"

    @property
    def truth(self) -> Path:
        """Simulator ground truth, for evaluation only; never read by ingest or training."""
        return self.workdir / "truth"

    @property
    def raw_lake(self) -> Path | None:
        """Where ingest publishes the raw tables as Parquet for Spark (the distributed profile)."""
        return self.workdir / "raw" if self.profile == "distributed" else None

    def spark_tables(self, schema: str) -> Path:
        """The folder of a schema's managed tables in Spark's warehouse (``dbt_project/profiles.yml``)."""
        return self.workdir / "spark" / "warehouse" / f"{schema}.db"

    @property
    def dbt_target_name(self) -> str:
        """The dbt target (``dbt_project/profiles.yml``): Spark on the distributed profile, else DuckDB."""
        return "distributed" if self.profile == "distributed" else "embedded"

    @property
    def marts(self) -> Path:
        """Parquet exports of the dbt marts that Feast reads."""
        return self.workdir / "marts"

    def mart(self, name: str) -> Path:
        """A dbt mart's Parquet: the file dbt-duckdb exports, or on the distributed profile the
        folder of parts Spark writes."""
        return self.marts / name if self.profile == "distributed" else self.marts / f"{name}.parquet"

    @property
    def dbt_target(self) -> Path:
        """dbt's target folder (manifest, run results) for this workdir."""
        return self.workdir / "dbt" / "target"

    @property
    def feature_store_yaml(self) -> Path:
        """The Feast configuration of this workdir and profile (written by ``shoprank features``)."""
        return self.workdir / "feature_store.yaml"

    @property
    def registry(self) -> Path:
        """The Feast registry file of the embedded profile."""
        return self.workdir / "registry.db"

    @property
    def online_store(self) -> Path:
        """The SQLite online store of the embedded profile."""
        return self.workdir / "online_store.db"

    @property
    def datasets(self) -> Path:
        """Training frames built from the feature store."""
        return self.workdir / "datasets"

    @property
    def models(self) -> Path:
        """The model registry: one immutable folder per trained model version."""
        return self.workdir / "models"

    def env(self) -> dict[str, str]:
        """Environment variables that point dbt and Feast at this workdir."""
        return {"SHOPRANK_HOME": str(self.workdir.resolve())}

    def with_overrides(self, **options: Any) -> Settings:
        """Return a copy with the given CLI options applied (None means not given).

        ``preset`` and ``days`` go to the simulator options; the rest are fields.
        """
        given = {k: v for k, v in options.items() if v is not None}
        simulate = dict(self.simulate)
        simulate.update({k: given.pop(k) for k in ("preset", "days") if k in given})
        return replace(self, simulate=simulate, **_typed(given, lambda name: f"--{name}"))


def load_settings(
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve settings from defaults, a TOML file, ``SHOPRANK_*`` environment variables and options.

    Args:
        config_file: Explicit config file; when None, ``SHOPRANK_CONFIG`` or ``./shoprank.toml``
            is used if it exists.
        environ: Environment to read (defaults to ``os.environ``).
        options: Command-line options, as ``Settings.with_overrides`` takes them (None: not given).

    Returns:
        The resolved settings; the project, when none is given, is ``default_project`` of the
        workdir and profile.

    Raises:
        ConfigError: The file is missing, is not valid TOML, or holds an unknown key or bad value.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or environ.get(ENV_PREFIX + "CONFIG")
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        values.update(_read_toml(Path(path)))
    simulate = {"preset": "small", **values.pop("simulate", {})}
    train = values.pop("train", {})
    typed = _typed(values, lambda name: name)
    from_environment = {name: environ[variable] for name, variable in ENVIRONMENT.items() if variable in environ}
    typed.update(_typed(from_environment, ENVIRONMENT.get))
    if ENV_PREFIX + "PRESET" in environ:
        simulate["preset"] = environ[ENV_PREFIX + "PRESET"]
    options = options or {}
    settings = Settings(simulate=simulate, train=train, **typed).with_overrides(**options)
    if "project" in typed or options.get("project") is not None:
        return settings
    return replace(settings, project=default_project(settings.profile, settings.workdir))


def default_project(profile: str, workdir: Path) -> str:
    """The Feast project of a workdir that names none: ``shoprank`` on the embedded profile, whose
    stores are files of the workdir; on the production profile ``shoprank_`` and the first 8 hex
    digits of the workdir's id (``shoprank.workdir``), so workdirs sharing Redis and PostgreSQL,
    copies included, never touch each other's keys."""
    if profile == "embedded":
        return DEFAULT_PROJECT
    return f"{DEFAULT_PROJECT}_{identify(workdir).id[:8]}"


def _typed(values: dict[str, Any], label: Callable[[str], str]) -> dict[str, Any]:
    """Cast setting values to their field types (``label`` names a value's origin in errors)."""
    typed = {}
    for name, value in values.items():
        kind = FIELDS[name]
        typed[name] = _as_int(value, label(name)) if kind is int else kind(value)
    if typed.get("profile", "embedded") not in PROFILES:
        raise ConfigError(f'Unknown profile "{typed["profile"]}"; use one of {", ".join(PROFILES)}')
    return typed


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f'Config file "{path}" not found; create it or drop --config / SHOPRANK_CONFIG')
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f'Config file "{path}" is not valid TOML ({exc}); fix the line it names') from None
    unknown = set(values) - {*FIELDS, *TABLES}
    if unknown:
        raise ConfigError(
            f'Config file "{path}" has unknown key(s) {sorted(unknown)}; allowed: {", ".join(FIELDS)}, [simulate], [train]'
        )
    for table in TABLES:
        if not isinstance(values.get(table, {}), dict):
            raise ConfigError(f'Config file "{path}": "{table}" must be a table ([{table}])')
    return values


def _as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f'{name} must be an integer, got "{value}"') from None
