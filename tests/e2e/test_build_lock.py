"""One shoprank command writes the warehouse at a time, and a stopped build leaves no dbt behind:
``shoprank build`` as a real process against a second build, an ingest, Ctrl-C, SIGTERM and
``kill -9``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from shoprank import warehouse

SHOPRANK = str(Path(sys.executable).with_name("shoprank"))
WAIT_SECONDS = 60.0
STOP_SECONDS = 5.0  # a stopped dbt ends within this; an orphan would still be building (a build takes longer)
ONE_MODEL = "stg_shop__events"  # a build of one view: enough to show the warehouse is free


@pytest.fixture
def workdir(tiny_shop, tmp_path) -> Path:
    """A copy of the tiny shop, to build."""
    copy = tmp_path / "shop"
    shutil.copytree(tiny_shop.workdir, copy)
    return copy


def _shoprank(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SHOPRANK, "--workdir", str(workdir), *args], capture_output=True, text=True, timeout=600, check=False
    )


def _building(workdir: Path) -> tuple[subprocess.Popen, int]:
    """A ``shoprank build`` started, and the pid of its dbt child once dbt runs."""
    build = subprocess.Popen(
        [SHOPRANK, "--workdir", str(workdir), "build"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        for child in _children(build.pid):
            if b"dbt.cli.main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return build, child
        assert build.poll() is None, "the build ended before dbt was seen running"
        time.sleep(0.05)
    raise AssertionError("dbt did not start")


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _ended(pid: int) -> bool:
    """Whether process ``pid`` ends (or is a zombie) within ``STOP_SECONDS``."""
    deadline = time.monotonic() + STOP_SECONDS
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
def test_a_second_build_and_an_ingest_are_refused_while_a_build_runs(workdir):
    build, _ = _building(workdir)
    try:
        warehouse = workdir / "warehouse.duckdb"
        held = f'Error: another shoprank build (pid {build.pid}) holds the warehouse "{warehouse}"; '
        held += "wait for it to finish (or stop it) and retry\n"
        second = _shoprank(workdir, "build")
        assert (second.returncode, second.stdout + second.stderr) == (1, held)
        ingest = _shoprank(workdir, "ingest", str(workdir / "landing"))
        assert (ingest.returncode, ingest.stdout + ingest.stderr) == (1, held)
    finally:
        assert build.wait(600) == 0  # the first build was not disturbed
    assert _shoprank(workdir, "build", "--select", ONE_MODEL).returncode == 0  # and the warehouse is free again


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["ctrl-c", "sigterm", "kill-9"])
def test_a_stopped_build_leaves_no_dbt_behind_and_the_warehouse_free(workdir, stop):
    build, dbt = _building(workdir)
    os.kill(build.pid, stop)
    build.wait(WAIT_SECONDS)
    assert _ended(dbt), f"dbt (pid {dbt}) kept running after its build was stopped with {stop.name}"
    with warehouse.writing(workdir / "warehouse.duckdb", "test"):  # no shoprank holds it...
        duckdb.connect(str(workdir / "warehouse.duckdb")).close()  # ...and no dbt holds DuckDB's lock
