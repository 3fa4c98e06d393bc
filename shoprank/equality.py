"""The same shop built on two profiles, compared: marts and training frames equal row for row.

Rows are compared sorted (by every column that is not a float), with the same schema; floats may
differ by 1e-9 relative (Spark and DuckDB sum in different orders). The equality test of the
distributed profile and the scale curve both judge by it.
"""

from __future__ import annotations

import polars as pl

from shoprank.config import Settings
from shoprank.warehouse import parquet

RELATIVE = 1e-9


def differences(expected: pl.DataFrame, got: pl.DataFrame) -> list[str]:
    """What differs between two tables: their schemas, heights, or the columns with unequal values
    (and how many), compared sorted."""
    if expected.is_empty() and got.is_empty():
        return []
    if expected.schema != got.schema:
        return [f"schema {dict(expected.schema)} != {dict(got.schema)}"]
    if expected.height != got.height:
        return [f"{expected.height} rows != {got.height}"]
    keys = [column for column, dtype in expected.schema.items() if not dtype.is_float()]
    left, right = expected.sort(keys, nulls_last=True), got.sort(keys, nulls_last=True)
    found = []
    for column, dtype in expected.schema.items():
        pair = pl.DataFrame({"a": left[column], "b": right[column]})
        if dtype.is_float():
            scale = pl.max_horizontal(pl.col("a").abs(), pl.col("b").abs(), pl.lit(1.0))
            far = ((pl.col("a") - pl.col("b")).abs() > RELATIVE * scale).fill_null(False)
            differ = pair.select((far | (pl.col("a").is_null() != pl.col("b").is_null())).sum()).item()
        else:
            differ = pair.select(pl.col("a").ne_missing(pl.col("b")).sum()).item()
        if differ:
            found.append(f"{column}: {differ} values")
    return found


def read_mart(settings: Settings, name: str) -> pl.DataFrame:
    """A mart as its profile's build wrote it, without the all-null row dbt-duckdb writes for an
    empty relation (the warehouse's view filters it out)."""
    frame = pl.read_parquet(parquet(settings.mart(name)))
    return frame.filter(~pl.all_horizontal(pl.all().is_null()))


def mart_differences(expected: Settings, got: Settings) -> dict[str, list[str]]:
    """Every mart of ``expected``'s build against ``got``'s, by name; only unequal ones are listed
    (a mart ``got`` lacks is listed as missing)."""
    names = sorted(path.name.removesuffix(".parquet") for path in expected.marts.iterdir() if path.name[0] != ".")
    found = {}
    for name in names:
        if not got.mart(name).exists():
            found[name] = ["missing"]
        elif unequal := differences(read_mart(expected, name), read_mart(got, name)):
            found[name] = unequal
    return found
