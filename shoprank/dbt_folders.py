"""A dbt-duckdb plugin that creates the folders the project writes to.

dbt-duckdb's ``external`` materialization writes Parquet with DuckDB's ``COPY``, which does not
create the target folder; ``profiles.yml`` loads this plugin so that a plain ``dbt build`` works
on a fresh workdir too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin


class Plugin(BasePlugin):
    """Creates every folder listed in the plugin's ``folders`` config."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        for folder in plugin_config.get("folders", []):
            Path(folder).mkdir(parents=True, exist_ok=True)
