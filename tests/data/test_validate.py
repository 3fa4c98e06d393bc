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
        "user_features_daily", "item_features_daily", "user_category_features_daily", "user_top_category_features_daily",
        "user_brand_features_daily",
        "item_pair_features_weekly", "query_item_features_daily", "query_features_daily",
        "query_category_features_daily", "fct_labels", "fct_judgments", "item_catalog_features",
    }  # fmt: skip
    assert reports.pop("fct_judgments").rows == 0  # a simulated shop has no human judgments
    assert all(r.rows > 0 for r in reports.values())


def _validate_broken(settings, mart: str, select: str, tmp_path) -> str:
    """Validate with ``mart``'s file replaced by ``select`` over the original (``{good}``);
    restore it after; return the error message."""
    path = settings.marts / f"{mart}.parquet"
    good = tmp_path / "good.parquet"
    shutil.copy(path, good)
    try:
        con = duckdb.connect()
        con.execute(f"copy ({select.format(good=good)}) to '{path}' (format parquet)")
        con.close()
        with pytest.raises(ContractError) as error:
            validate_marts(settings)
    finally:
        shutil.copy(good, path)
    return str(error.value)


def test_a_mart_that_breaks_its_contract_is_named_with_the_failed_check(tiny_shop, tmp_path):
    message = _validate_broken(
        tiny_shop,
        "user_features_daily",
        "select * replace (case when row_number() over () = 1 then -5 else views_1d end as views_1d) from '{good}'",
        tmp_path,
    )
    assert message.startswith(
        'Mart "user_features_daily" breaks its contract: views_1d: greater_than_or_equal_to(0) (1 rows, e.g. -5)'
    )
    assert message.endswith('fix the dbt model (dbt_project/models/marts) and run "shoprank build"')


def test_a_mart_with_a_repeated_key_is_named_with_an_example(tiny_shop, tmp_path):
    message = _validate_broken(
        tiny_shop, "fct_labels", "select * from '{good}' union all (select * from '{good}' limit 1)", tmp_path
    )
    assert message.startswith('Mart "fct_labels" breaks its contract: key (query_id, item_id) is not unique, e.g. (')
    assert "appears 2 times" in message
