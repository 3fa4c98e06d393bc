"""Typed settings: defaults < config file < environment < CLI options.

The config file is TOML (``shoprank.toml`` in the current directory, or ``--config`` /
``SHOPRANK_CONFIG``)::

    workdir = "data"
    seed = 7

    [simulate]
    preset = "small"
    days = 21
    bot_user_rate = 0.002

Everything a run writes lives under ``workdir`` (``SHOPRANK_HOME``), so deleting that one folder
starts over and two workdirs never collide.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shoprank.errors import ConfigError

DEFAULT_CONFIG_FILE = "shoprank.toml"
ENV_PREFIX = "SHOPRANK_"
REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one run.

    Attributes:
        workdir: Folder that holds everything the run writes.
        seed: Seed of every random choice (simulator, splits, models).
        simulate: Simulator options: ``preset`` plus overrides of the preset's fields.
    """

    workdir: Path = Path("data")
    seed: int = 7
    simulate: Mapping[str, Any] = field(default_factory=lambda: {"preset": "small"})

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
    def marts(self) -> Path:
        """Parquet exports of the dbt marts that Feast reads."""
        return self.workdir / "marts"

    @property
    def dbt_target(self) -> Path:
        """dbt's target folder (manifest, run results) for this workdir."""
        return self.workdir / "dbt" / "target"

    def env(self) -> dict[str, str]:
        """Environment variables that point dbt and Feast at this workdir."""
        return {"SHOPRANK_HOME": str(self.workdir.resolve())}

    def with_overrides(
        self,
        workdir: str | Path | None = None,
        seed: int | None = None,
        preset: str | None = None,
        days: int | None = None,
    ) -> Settings:
        """Return a copy with the given (non-None) CLI options applied."""
        simulate = dict(self.simulate)
        simulate.update({k: v for k, v in (("preset", preset), ("days", days)) if v is not None})
        return replace(
            self,
            workdir=self.workdir if workdir is None else Path(workdir),
            seed=self.seed if seed is None else seed,
            simulate=simulate,
        )


def load_settings(config_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve settings from defaults, a TOML file and ``SHOPRANK_*`` environment variables.

    Args:
        config_file: Explicit config file; when None, ``SHOPRANK_CONFIG`` or ``./shoprank.toml``
            is used if it exists.
        environ: Environment to read (defaults to ``os.environ``).

    Returns:
        The resolved settings (CLI options are applied afterwards with ``with_overrides``).

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
    if ENV_PREFIX + "HOME" in environ:
        values["workdir"] = environ[ENV_PREFIX + "HOME"]
    if ENV_PREFIX + "SEED" in environ:
        values["seed"] = _as_int(environ[ENV_PREFIX + "SEED"], ENV_PREFIX + "SEED")
    simulate = {"preset": "small", **values.pop("simulate", {})}
    if ENV_PREFIX + "PRESET" in environ:
        simulate["preset"] = environ[ENV_PREFIX + "PRESET"]
    settings = Settings(simulate=simulate)
    if "workdir" in values:
        settings = replace(settings, workdir=Path(values["workdir"]))
    if "seed" in values:
        settings = replace(settings, seed=_as_int(values["seed"], "seed"))
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f'Config file "{path}" not found; create it or drop --config / SHOPRANK_CONFIG')
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f'Config file "{path}" is not valid TOML ({exc}); fix the line it names') from None
    unknown = set(values) - {"workdir", "seed", "simulate"}
    if unknown:
        raise ConfigError(
            f'Config file "{path}" has unknown key(s) {sorted(unknown)}; allowed: workdir, seed, [simulate]'
        )
    if not isinstance(values.get("simulate", {}), dict):
        raise ConfigError(f'Config file "{path}": "simulate" must be a table ([simulate])')
    return values


def _as_int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f'{name} must be an integer, got "{value}"') from None
