"""``shoprank forget``: two users erased from a pipeline-built workdir leave no trace in any
table, file or online key; the shop still builds, validates and answers; an old file does not
bring them back."""

from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import replace
from datetime import datetime
from uuid import uuid4

import duckdb
import polars as pl
import pytest
from click.testing import CliRunner

from serving.served_log import ServedLog
from shoprank.cli import cli
from shoprank.features.online_rows import key_part
from shoprank.warehouse import read
from tests.e2e.test_serve import call, start


@pytest.fixture(scope="module")
def erased(tiny_shop, tmp_path_factory):
    """A copy of the tiny shop, two users forgotten: (settings, users, their e-mail and phone
    hashes, an events file of before, the command's output)."""
    settings = replace(tiny_shop, workdir=tmp_path_factory.mktemp("forget") / "shop")
    shutil.copytree(tiny_shop.workdir, settings.workdir)
    users = read(
        settings.warehouse,
        """select u.user_id from raw.users u
           where u.email is not null and u.user_id in (select user_id from raw.events)
             and u.user_id in (select user_id from raw.requests)
           order by u.user_id limit 2""",
    )["user_id"].to_list()
    hashes = read(
        settings.warehouse, f"select email_hash, phone_hash from marts.dim_users where user_id in {tuple(users)}"
    )
    secrets = [value for value in hashes.to_series(0).to_list() + hashes.to_series(1).to_list() if value]
    log = ServedLog(settings)  # a served list of each, in the served log
    for user in users:
        log.record(f"r-{user}", datetime(2025, 1, 1), user, "search", "drill", "m/v1", {"item_id": ["i1"]}, [0])
    log.close()
    before = settings.workdir.parent / "events-before.parquet"
    pl.read_parquet(settings.landing / "events").write_parquet(before)
    result = CliRunner().invoke(cli, ["--workdir", str(settings.workdir), "forget", *users], catch_exceptions=False)
    return settings, users, secrets, before, result


def _pattern(values: list[str]) -> str:
    """Any of ``values`` as a whole word (u000012 is not found in u0000123)."""
    return r"(^|[^0-9A-Za-z_])(" + "|".join(map(re.escape, values)) + r")($|[^0-9A-Za-z_])"


def test_forget_says_what_it_removed_per_place(erased):
    _, users, _, _, result = erased
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["Erasing from the warehouse...", "Erasing from the marts..."]
    places = {line.split(":")[0].strip() for line in lines if line.startswith("  ")}
    assert {"warehouse raw.events", "warehouse raw.requests", "warehouse raw.users"} <= places
    assert any(place.startswith("file landing/events/") for place in places)
    assert any(place.startswith("file landing/requests/") for place in places)  # the served log
    assert any(place.startswith("online user_features") for place in places)
    assert lines[-2].startswith(f"Forgot {', '.join(users)}: ")
    assert lines[-1] == 'Models trained before still carry what they learned from them: run "shoprank train" to retrain'


def test_no_table_file_or_online_key_holds_the_forgotten_users(erased):
    settings, users, secrets, _, _ = erased
    pattern = _pattern(users + secrets)
    hits = []
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        columns = con.execute(
            "select table_schema, table_name, column_name from information_schema.columns where data_type = 'VARCHAR'"
        ).fetchall()
        for schema, table, column in columns:
            (found,) = con.execute(
                f'select count(*) from "{schema}"."{table}" where regexp_matches("{column}", ?)', [pattern]
            ).fetchone()
            if found:
                hits.append(f"{schema}.{table}.{column}: {found}")
    compiled = re.compile(pattern.encode())
    for path in settings.workdir.rglob("*"):
        if not path.is_file() or path.name.startswith("warehouse.duckdb"):
            continue
        if path.suffix == ".parquet":
            texts = pl.read_parquet(path).select(pl.col(pl.String))
            found = sum(texts[column].str.contains(pattern).sum() for column in texts.columns)
        else:
            found = len(compiled.findall(path.read_bytes()))
        if found:
            hits.append(f"{path.relative_to(settings.workdir)}: {found}")
    with sqlite3.connect(settings.workdir / "online_store.db") as online:
        tables = [name for (name,) in online.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            for user in users:
                (found,) = online.execute(
                    f'select count(*) from "{table}" where instr(entity_key, ?) > 0', [key_part(user)]
                ).fetchone()
                if found:
                    hits.append(f"online {table}: {user}")
    assert hits == []


def test_the_shop_still_validates_and_answers(erased):
    settings, users, _, _, _ = erased
    validated = CliRunner().invoke(cli, ["--workdir", str(settings.workdir), "validate"], catch_exceptions=False)
    assert validated.exit_code == 0, validated.output
    server = start(settings)  # the HTTP service, on the store forget changed
    base = next(server)
    try:
        status, searched = call(f"{base}/v1/search", {"query": "shoe", "user_id": users[0], "k": 5})
        assert status == 200 and searched["fallback"] is None and len(searched["items"]) == 5
        status, recommended = call(f"{base}/v1/recommend", {"user_id": users[1], "k": 5})
        assert status == 200 and recommended["fallback"] is None and len(recommended["items"]) == 5
    finally:
        server.close()


def test_an_old_file_does_not_bring_them_back(erased):
    settings, users, _, before, _ = erased
    again = CliRunner().invoke(cli, ["--workdir", str(settings.workdir), "ingest", str(before)], catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert "rows of forgotten users skipped (shoprank forget)" in again.output
    back = read(settings.warehouse, f"select count(*) as n from raw.events where user_id in {tuple(users)}")
    assert back["n"].item() == 0


def test_forget_deletes_the_users_redis_keys_on_the_production_profile(
    production_servers, tiny_shop, tmp_path, monkeypatch
):
    from shoprank.features.definitions import apply
    from shoprank.features.materialize import materialize
    from shoprank.features.store import drop_project, open_store, redis_client
    from shoprank.forget import erase_online

    workdir = tmp_path / "shop"
    shutil.copytree(tiny_shop.workdir, workdir, ignore=shutil.ignore_patterns("registry.db", "online_store.db"))
    settings = replace(tiny_shop, workdir=workdir, profile="production", project=f"t_{uuid4().hex[:8]}")
    apply(settings)
    materialize(settings)
    store = open_store(settings)
    try:
        client = redis_client(store)
        (user,) = read(settings.warehouse, "select user_id from marts.user_features_daily limit 1")["user_id"]

        def keys() -> int:
            return sum(key_part(user) in key for key in client.scan_iter(match=b"*" + store.project.encode()))

        assert keys() > 0
        removed = erase_online(settings, [user])  # the rest of forget is the same as on SQLite, tested above
        assert keys() == 0 and removed["online user_features"] == 1
    finally:
        drop_project(store)
