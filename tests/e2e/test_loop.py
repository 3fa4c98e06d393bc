"""`shoprank loop`: the simulator's users live for a day against a real service on a copy of the tiny
shop; what they did is ingested once, and new models trained on it are compared with the served ones."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from shoprank.cli import cli
from shoprank.config import Settings
from shoprank.features.definitions import apply
from shoprank.features.materialize import materialize
from shoprank.features.store import open_store, source_file
from shoprank.warehouse import read
from training.registry import get

SIMULATED = "_source like '%part-%'"
COUNTS = f"select count(*) filter ({SIMULATED}) as simulated, count(*) filter (not {SIMULATED}) as live from raw."


def invoke(settings: Settings, *args: str):
    command = ["--workdir", str(settings.workdir), "--seed", str(settings.seed), "loop", *args]
    return CliRunner().invoke(cli, command, catch_exceptions=False)


def utc(moment: str) -> datetime:
    """A card's time (ISO, with or without an offset) as naive UTC."""
    parsed = datetime.fromisoformat(moment)
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def copy(shop: Settings, workdir: Path, *ignored: str) -> Settings:
    shutil.copytree(shop.workdir, workdir, ignore=shutil.ignore_patterns(*ignored))
    return dataclasses.replace(shop, workdir=workdir)


@pytest.fixture(scope="module")
def looped(tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, str]:
    """A copy of the tiny shop, registered anew, after `shoprank loop --days 1` at 7,200x (a day in
    12 s), and what the command printed."""
    settings = copy(tiny_shop, tmp_path_factory.mktemp("loop") / "shop", "registry.db", "online_store.db")
    apply(settings)
    materialize(settings)
    result = invoke(settings, "--days", "1", "--speed", "7200")
    assert result.exit_code == 0, result.output
    return settings, result.output


def test_help_names_the_options_with_an_example():
    result = CliRunner().invoke(cli, ["loop", "-h"])
    assert result.exit_code == 0
    assert "--days" in result.output and "--speed" in result.output and "Example:" in result.output


def test_a_copied_registry_is_refused_naming_the_fix(tiny_shop, tmp_path):
    copied = copy(tiny_shop, tmp_path / "shop")
    store = open_store(copied)  # as registries were before sources were relative: the original's marts by path
    views = store.list_feature_views()
    for view in views:
        view.batch_source.file_options.uri = str(source_file(view.batch_source, tiny_shop.workdir.resolve()))
    store.apply(views)
    result = invoke(copied, "--days", "1")
    assert result.exit_code == 1
    assert f"reads the marts in {tiny_shop.marts.resolve()}, not {copied.marts.resolve()}" in result.output
    assert f'Delete {copied.registry} and {copied.online_store}, then run "shoprank features apply"' in result.output


def test_a_shop_of_another_seed_is_refused_naming_the_fix(tiny_shop):
    result = invoke(dataclasses.replace(tiny_shop, seed=8))
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith(f"Error: The shop in {tiny_shop.workdir} (250 users) is not the simulator's preset")
    assert 'give the preset, options and seed it was simulated with, e.g. "shoprank --seed 7 loop --preset tiny"' in (
        result.output
    )


def test_a_workdir_without_models_is_refused_naming_the_fix(tmp_path):
    result = invoke(Settings(workdir=tmp_path))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output == (
        f'Error: No model of "ranker_v2" in {tmp_path}/models: the loop serves a workdir "shoprank pipeline" ran on; '
        f'run "shoprank --workdir {tmp_path} pipeline" first\n'
    )


def test_served_lists_and_their_events_are_ingested_once(looped, tiny_shop):
    settings, output = looped
    served = {
        json.loads(line)["request_id"]
        for path in (settings.landing / "requests").glob("requests-*.jsonl")
        for line in path.read_text().splitlines()
    }
    assert served and all(re.fullmatch("[0-9a-f]{32}", r) for r in served)
    requests = read(settings.warehouse, f"select distinct request_id from raw.requests where not {SIMULATED}")
    assert set(requests["request_id"]) == served
    lists = int(re.search(r"  all +([\d,]+) ", output).group(1).replace(",", ""))
    assert lists == len(served)
    clicks = read(
        settings.warehouse, f"select request_id from raw.events where not {SIMULATED} and event_type = 'click'"
    )
    assert clicks.height > 0 and set(clicks["request_id"]) <= served
    for table in ("events", "requests"):
        before = read(tiny_shop.warehouse, COUNTS + table).row(0)
        after = read(settings.warehouse, COUNTS + table).row(0)
        assert before[0] == after[0] and before[1] == 0 < after[1], table
    assert re.search(r"  events +([\d,]+) +\1 +0 +0\n  requests +([\d,]+) +\2 +0 +0\n", output)  # read = accepted
    labels = read(settings.warehouse, "select query_id, label from marts.fct_labels where label > 0")
    assert set(labels["query_id"]) & served
    # the loop's build passed with lists served up to the end of the live day: those whose
    # 30 minutes of label window end after the data horizon wait, none is labelled before its time
    early = read(
        settings.warehouse,
        """select count(*) as n from marts.fct_labels where event_timestamp + interval 30 minute >
           (select cast(max(as_of_date) as timestamp) from intermediate.int_calendar)""",
    )
    assert early["n"].item() == 0


def test_new_versions_train_on_the_live_day_and_are_compared_with_the_served_ones(looped):
    settings, output = looped
    start = datetime.fromisoformat(re.search(r"Live (\S+ \S+) \.\. ", output).group(1))
    for service in ("ranker_v2", "search_ranker_v2"):
        served, retrained = get(settings, service, "v0001").card, get(settings, service, "v0002").card
        assert utc(served["window"]["test"][1]) < start
        assert start <= utc(retrained["window"]["test"][1])  # trained and tested on data of the live day
        assert f"{service}: v0001 (served live) vs v0002 (retrained) on the same" in output
        assert f"{service}/v0001 (" in output  # served the live lists
    table = output.split("ranker_v2: v0001 (served live)")[1]
    assert re.search(r"ndcg@10 +truth +0\.\d{4} +0\.\d{4} +[+-]0\.\d{4}", table)


def test_landing_files_never_ingested_are_refused_before_going_live(looped):
    settings, _ = looped
    stray = settings.landing / "events" / "events-stray.parquet"
    shutil.copy(next((settings.landing / "events").glob("part-*.parquet")), stray)
    try:
        result = invoke(settings, "--days", "1")
    finally:
        stray.unlink()
    assert result.exit_code == 1
    assert f"Error: 1 file(s) in {settings.landing} were never ingested (e.g. {stray}); run " in result.output
