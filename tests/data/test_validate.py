"""`shoprank validate`: the marts of a clean build pass; a broken mart stops with its name and check."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from shoprank.errors import ContractError
from shoprank.validate import validate_marts


def test_a_clean_build_meets_every_contract(tiny_shop):
    reports = {r.name: r for r in validate_marts(tiny_shop)}
    assert set(reports) == {
        "user_features_daily", "item_features_daily", "user_category_features_daily",
        "item_pair_features_weekly", "query_item_features_daily", "fct_labels",
    }  # fmt: skip
    assert all(r.rows > 0 for r in reports.values())


def test_a_mart_that_breaks_its_contract_is_named_with_the_failed_check(tiny_shop, tmp_path):
    mart = tiny_shop.marts / "user_features_daily.parquet"
    backup = tmp_path / "backup.parquet"
    shutil.copy(mart, backup)
    try:
        con = duckdb.connect()
        con.execute(
            f"""copy (select * replace (case when row_number() over () = 1 then -5 else views_1d end as views_1d)
                      from '{backup}') to '{mart}' (format parquet)"""
        )
        con.close()
        with pytest.raises(ContractError) as error:
            validate_marts(tiny_shop)
    finally:
        shutil.copy(backup, mart)
    message = str(error.value)
    assert message.startswith(
        'Mart "user_features_daily" breaks its contract: views_1d: greater_than_or_equal_to(0) (1 rows, e.g. -5)'
    )
    assert message.endswith('fix the dbt model (dbt_project/models/marts) and run "shoprank build"')


def test_a_mart_with_a_repeated_key_is_named_with_an_example(tiny_shop, tmp_path):
    mart = tiny_shop.marts / "fct_labels.parquet"
    backup = tmp_path / "backup.parquet"
    shutil.copy(mart, backup)
    try:
        con = duckdb.connect()
        con.execute(
            f"copy (select * from '{backup}' union all (select * from '{backup}' limit 1)) to '{mart}' (format parquet)"
        )
        con.close()
        with pytest.raises(ContractError) as error:
            validate_marts(tiny_shop)
    finally:
        shutil.copy(backup, mart)
    assert str(error.value).startswith(
        'Mart "fct_labels" breaks its contract: key (query_id, item_id) is not unique, e.g. ('
    )
    assert "appears 2 times" in str(error.value)
