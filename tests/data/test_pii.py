"""No personal data in clear past the raw layer: the simulator's e-mail addresses and phone
numbers (``raw.users``) appear in no table or view outside ``raw`` and ``quarantine``, and in no
file of the workdir but the raw inputs: marts, training frames, the online store, models and
reports, served logs."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl

RAW_INPUTS = ("landing",)  # the simulator's files and landed events: the raw layer (served lists are checked apart)
SERVED_LOGS = (("landing", "requests"), ("serving", "features"))


def _personal_data(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute("select email from raw.users union select phone from raw.users").fetchall()
    return sorted({value.strip() for (value,) in rows if value and value.strip()})


def _files(workdir: Path) -> list[Path]:
    """Every file past the raw layer: all but the warehouse (scanned by SQL) and the raw inputs."""
    files = []
    for path in workdir.rglob("*"):
        parts = path.relative_to(workdir).parts
        raw = parts[0] in RAW_INPUTS and not any(parts[: len(log)] == log for log in SERVED_LOGS)
        if path.is_file() and not raw and not path.name.startswith("warehouse.duckdb"):
            files.append(path)
    return files


def _found_in_file(path: Path, values: list[str]) -> set[str]:
    if path.suffix == ".parquet":  # compressed: read its values
        texts = pl.read_parquet(path).select(pl.col(pl.String))
        text = "\n".join(texts.unpivot()["value"].drop_nulls().to_list()) if texts.width else ""
        return {value for value in values if value in text}
    data = path.read_bytes()
    return {value for value in values if value.encode() in data}


def test_no_personal_data_in_clear_past_the_raw_layer(tiny_shop):
    values = _personal_data(tiny_shop.warehouse)
    assert len(values) > 10 and any("@" in value for value in values)  # the simulator wrote some
    hits = []
    with duckdb.connect(str(tiny_shop.warehouse), read_only=True) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns "
            "where table_schema not in ('raw', 'quarantine') and data_type = 'VARCHAR'"
        ).fetchall()
        assert {schema for schema, _, _ in columns} >= {"staging", "intermediate", "marts"}
        con.execute("create temp table personal as select unnest(?::varchar[]) as value", [values])
        for schema, table, column in columns:
            found = con.execute(
                f'select distinct p.value from "{schema}"."{table}" t join personal p on contains(t."{column}", p.value)'
            ).fetchall()
            hits += [f"{schema}.{table}.{column}: {value}" for (value,) in found]
    files = _files(tiny_shop.workdir)
    assert {path.suffix for path in files} >= {".parquet", ".db", ".html"}  # frames and marts, online store, reports
    hits += [f"{path}: {value}" for path in files for value in _found_in_file(path, values)]
    assert hits == []
