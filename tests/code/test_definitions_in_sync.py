"""Definitions that must agree across tools: every feature view column is declared by its dbt
mart with the same type, and the Pandera mart contracts restate the dbt declarations."""

from __future__ import annotations

import importlib
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from feast.types import Float64, Int64, String, UnixTimestamp

from shoprank.config import DBT_PROJECT_DIR, FEATURE_REPO_DIR
from shoprank.contracts.marts import mart_contracts

FEAST_TO_DBT = {Int64: "bigint", Float64: "double", String: "varchar", UnixTimestamp: "timestamp"}
POLARS_TO_DBT = {
    "Int64": "bigint",
    "Float64": "double",
    "String": "varchar",
    "DateTime": "timestamp",
    "Int32": "integer",
}


def _declared() -> dict[str, dict[str, str]]:
    """Columns and types of every mart, as its yml declares them."""
    marts = yaml.safe_load((DBT_PROJECT_DIR / "models" / "marts" / "_marts__models.yml").read_text())["models"]
    return {m["name"]: {c["name"]: c.get("data_type") for c in m.get("columns", [])} for m in marts}


@pytest.fixture(scope="module")
def feature_views():
    sys.path.insert(0, str(FEATURE_REPO_DIR))
    try:
        return importlib.import_module("feature_views")
    finally:
        sys.path.remove(str(FEATURE_REPO_DIR))


def test_every_feature_view_reads_columns_its_mart_declares_with_the_same_type(feature_views):
    declared = _declared()
    views = [v for v in vars(feature_views).values() if type(v).__name__ == "FeatureView"]
    assert len(views) == 10
    for view in views:
        model = view.tags["dbt.model"]
        assert view.batch_source.tags["dbt.model"] == model
        assert Path(view.batch_source.path).name == f"{model}.parquet"
        columns = declared[model]
        for key in view.join_keys:
            assert columns.get(key) == "varchar", f"{view.name}: join key {key} not declared by {model}"
        assert columns.get(view.batch_source.timestamp_field) == "timestamp"
        for field in view.schema:
            if field.name in view.join_keys:
                continue
            assert field.name in columns, f"{view.name}.{field.name} is not declared by {model}"
            assert FEAST_TO_DBT[field.dtype] == columns[field.name], f"{view.name}.{field.name}: {field.dtype}"


def test_mart_contracts_restate_the_dbt_declarations():
    declared = _declared()
    for name, contract in mart_contracts(horizon=datetime(2030, 1, 1)).items():
        restated = {c: POLARS_TO_DBT[type(col.dtype).__name__] for c, col in contract.schema.columns.items()}
        assert restated == declared[name], name
        assert list(restated) == list(declared[name]), f"{name}: column order"
