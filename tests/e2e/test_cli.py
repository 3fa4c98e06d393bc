"""Every command from the command line: exit codes, exact one-line errors, and summaries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from shoprank.cli import cli
from shoprank.warehouse import MEMORY_VARIABLE
from tests.conftest import shared_dataset

COMMANDS = [
    ["simulate"], ["ingest"], ["build"], ["validate"], ["pipeline"], ["status"],
    ["features", "apply"], ["features", "materialize"], ["features", "status"], ["dataset", "build"],
    ["train"], ["report"], ["forget"], ["models", "list"], ["models", "show"], ["models", "promote"], ["models", "compare"],
]  # fmt: skip


def invoke(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_every_command_has_help_with_an_example():
    top = invoke("-h")
    assert top.exit_code == 0
    for command in COMMANDS:
        assert command[0] in top.output
        result = invoke(*command, "--help")
        assert result.exit_code == 0, command
        assert "Example:" in result.output, command


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "nowhere.csv"], 'Error: Input "nowhere.csv" does not exist; check the path'),
        (
            ["ingest", "--format", "excel", "x.csv"],
            'Error: Unknown format "excel"; use one of contract, taobao, diginetica, retailrocket, homedepot, or --mapping FILE',
        ),
        (
            ["simulate", "--preset", "huge"],
            'Error: Unknown simulator preset "huge"; allowed: tiny, small, medium, large',
        ),
        (["build"], 'Error: Warehouse "{w}/warehouse.duckdb" does not exist; run "shoprank ingest" first'),
        (
            ["validate"],
            'Error: Warehouse "{w}/warehouse.duckdb" does not exist; run "shoprank ingest" or "shoprank pipeline" first',
        ),
        (
            ["status"],
            'Error: Warehouse "{w}/warehouse.duckdb" does not exist; run "shoprank ingest" or "shoprank pipeline" first',
        ),
        (
            ["--profile", "distributed", "serve"],
            'Error: "shoprank serve" does not run on the distributed profile yet (only simulate, ingest, build, '
            "validate, features, dataset, train, report, models, pipeline, status do); run it on the embedded or "
            "production profile",
        ),
        (
            ["--config", "missing.toml", "status"],
            'Error: Config file "missing.toml" not found; create it or drop --config / SHOPRANK_CONFIG',
        ),
    ],
)
def test_user_mistakes_are_one_line_errors_without_traceback(tmp_path, args, message):
    workdir = tmp_path / "w"
    result = invoke("--workdir", str(workdir), *args)
    assert result.exit_code == 1
    assert result.output == message.format(w=workdir) + "\n"


def test_the_distributed_profile_caps_the_drivers_duckdb_at_2gb_unless_told(tmp_path, monkeypatch):
    monkeypatch.setenv(MEMORY_VARIABLE, "3GB")
    assert invoke("--workdir", str(tmp_path), "--profile", "distributed", "status").exit_code == 1  # no warehouse
    assert os.environ[MEMORY_VARIABLE] == "3GB"
    monkeypatch.delenv(MEMORY_VARIABLE)
    invoke("--workdir", str(tmp_path), "status")
    assert MEMORY_VARIABLE not in os.environ
    invoke("--workdir", str(tmp_path), "--profile", "distributed", "status")
    assert os.environ[MEMORY_VARIABLE] == "2GB"


def test_simulate_prints_rows_per_table_and_the_dirt(tmp_path):
    result = invoke("--workdir", str(tmp_path), "simulate", "--preset", "tiny", "--days", "3")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("Simulated preset tiny (seed 7) in ")
    assert lines[0].endswith(f" s into {tmp_path}/landing")
    assert lines[1].split() == ["table", "rows"]
    assert [line.split()[0] for line in lines[2:6]] == ["events", "items", "requests", "users"]
    assert lines[6].startswith("Dirt injected: duplicate same id ")
    assert lines[7] == f"Ground truth, for evaluation only: {tmp_path}/truth"
    assert (tmp_path / "landing" / "items.parquet").is_file()


def test_ingest_a_real_taobao_sample_explains_what_it_kept(tmp_path):
    sample = shared_dataset("taobao_userbehavior/usercomplete_head_43users.csv")
    result = invoke("--workdir", str(tmp_path), "ingest", str(sample), "--format", "taobao")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].startswith("Ingested 1 file(s) in ")
    assert lines[1].split() == ["table", "read", "accepted", "quarantined", "duplicates"]
    assert lines[2].split() == ["events", "4,321", "4,321", "0", "0"]
    assert lines[3].split()[0] == "items"
    assert lines[4].startswith("Note: 1 of 4321 Taobao events")
    again = invoke("--workdir", str(tmp_path), "ingest", str(sample), "--format", "taobao")
    assert again.output.splitlines()[2].split() == ["events", "4,321", "0", "0", "4,321"]


def test_feature_store_commands_on_a_built_shop(tiny_shop):
    status = invoke("--workdir", str(tiny_shop.workdir), "features", "status")
    assert status.exit_code == 0
    lines = status.output.splitlines()
    assert lines[0] == f"Online store of {tiny_shop.workdir} (profile embedded, project shoprank)"
    assert lines[1].split() == [
        "view", "materialized", "until", "newest", "value", "entities", "online", "sampled", "pending", "rows",
    ]  # fmt: skip
    rows = [line.split() for line in lines[2:-1]]
    assert [row[0] for row in rows] == [
        "item_catalog", "item_features", "item_pair_features", "query_category_features", "query_features",
        "query_item_features", "user_brand_features", "user_category_features", "user_features",
        "user_top_category_features",
    ]  # fmt: skip
    assert all(row[-1] == "0" for row in rows)  # the pipeline materialized everything
    assert all(row[-4] == row[-3] and row[-2] in ("50/50", f"{row[-4]}/{row[-4]}") for row in rows)  # and it is there
    assert lines[-1] == "The online store holds what the registry says was materialized."
    unknown = invoke("--workdir", str(tiny_shop.workdir), "dataset", "build", "--service", "ranker_v9")
    assert unknown.exit_code == 1
    assert (
        unknown.output
        == f'Error: Feature service "ranker_v9" not found in {tiny_shop.registry.resolve()}; run "shoprank features apply"\n'
    )


def test_status_build_and_validate_on_a_built_shop(tiny_shop):
    status = invoke("--workdir", str(tiny_shop.workdir), "status")
    assert status.exit_code == 0
    lines = status.output.splitlines()
    assert lines[0] == f"Warehouse {tiny_shop.warehouse}"
    assert lines[1].split() == ["schema", "table", "rows"]
    tables = {tuple(line.split()[:2]) for line in lines[2:]}
    assert {("raw", "events"), ("quarantine", "events"), ("marts", "fct_labels")} <= tables
    validate = invoke("--workdir", str(tiny_shop.workdir), "validate")
    assert validate.exit_code == 0
    assert validate.output.splitlines()[0] == "All 12 marts meet their contracts"


@pytest.mark.slow
def test_the_installed_script_runs_the_main_job(tmp_path):
    script = Path(sys.executable).with_name("shoprank")
    done = subprocess.run(
        [str(script), "pipeline", "--preset", "tiny"],
        cwd=tmp_path,
        env={**os.environ, "SHOPRANK_HOME": str(tmp_path / "shop")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("Pipeline finished in ") and last.endswith(f"workdir {tmp_path / 'shop'}")
    assert "All 12 marts meet their contracts" in done.stdout
    assert "ndcg@10 against true relevance: model " in done.stdout
    for service in ("ranker_v2", "search_ranker_v2"):  # the recommendation and the search ranker
        assert f"Trained {service}/v0001: lightgbm on " in done.stdout
        assert f"Report: {tmp_path / 'shop' / 'models' / service / 'v0001' / 'report.html'}" in done.stdout
    assert "Traceback" not in done.stderr
    assert (tmp_path / "shop" / "marts" / "user_features_daily.parquet").is_file()


@pytest.mark.slow
def test_plain_dbt_build_works_in_dbt_project_on_a_pipeline_warehouse(tiny_shop, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_shop.workdir, workdir)
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dbt")), "build"],
        cwd=Path(__file__).resolve().parents[2] / "dbt_project",
        env={**os.environ, "SHOPRANK_HOME": str(workdir), "DBT_TARGET_PATH": str(tmp_path / "target"),
             "DBT_LOG_PATH": str(tmp_path / "logs")},
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    assert "Completed successfully" in done.stdout
    assert (workdir / "marts" / "fct_labels.parquet").stat().st_mtime > (
        tiny_shop.marts / "fct_labels.parquet"
    ).stat().st_mtime


@pytest.mark.slow
def test_a_failing_dbt_test_stops_the_build_with_its_name(tiny_shop, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(tiny_shop.workdir, workdir)
    con = duckdb.connect(str(workdir / "warehouse.duckdb"))
    con.execute("insert into raw.events select * from raw.events limit 1")  # the same event_id twice
    con.close()
    result = invoke("--workdir", str(workdir), "build", "--select", "stg_shop__events")
    assert result.exit_code == 1
    assert result.output.startswith("Error: dbt build failed: test unique_stg_shop__events_event_id: Got 1 result")
    assert result.output.rstrip().endswith(f"see {workdir}/dbt/logs/dbt.log")
    assert len(result.output.splitlines()) == 1
