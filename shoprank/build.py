"""``shoprank build``: run ``dbt build`` on the workdir's warehouse, as a data engineer would.

dbt runs in a child process with ``SHOPRANK_HOME`` set, exactly like ``dbt build`` run by hand
in ``dbt_project/``; its structured results come from ``run_results.json``. The child lives and
dies with shoprank: it runs in a process group of its own, which shoprank stops when it is
interrupted or fails, and the kernel sends it SIGTERM when shoprank ends otherwise (``kill -9``).
A build holds the warehouse (``warehouse.writing``) until dbt has ended too: a second build, or an
ingest, meanwhile is refused with the holder's pid.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shoprank import warehouse
from shoprank.config import DBT_PROJECT_DIR, Settings
from shoprank.errors import BuildError, WarehouseError
from shoprank.ingest.lake import publish
from shoprank.salt import SALT_VARIABLE, pii_salt

_PROGRESS = re.compile(r"^\S+\s+(\d+) of (\d+) (OK|PASS|WARN|ERROR|FAIL|SKIP|NO-OP)\b.*?\b([\w.]+) \.+")
_DBT = "from dbt.cli.main import cli; cli()"
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent ends
STOP_SECONDS = 10.0  # how long dbt has to stop after SIGTERM before it is killed


@dataclass
class BuildResult:
    """Outcome of a ``dbt build``: statuses per resource type and the mart sizes."""

    statuses: Counter = field(default_factory=Counter)
    marts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def dbt(
    settings: Settings, args: list[str], progress: Callable[..., None] | None = None, hold: int | None = None
) -> subprocess.CompletedProcess:
    """Run a dbt command in ``dbt_project/`` against the workdir (its PII salt: ``salt.pii_salt``);
    stream progress from its log. dbt runs in a process group of its own, stopped with this call
    (an exception, Ctrl-C) or with this process; ``hold``: a file descriptor it keeps open until it
    ends (``warehouse.writing``).

    Returns:
        The finished process (stdout holds dbt's log).
    """
    target = settings.dbt_target.resolve()
    target.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-c", _DBT, *args,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(target),
        "--log-path", str(target.parent / "logs"),
        "--target", settings.dbt_target_name,
        "--no-use-colors",
    ]  # fmt: skip
    env = {**os.environ, **settings.env(), SALT_VARIABLE: pii_salt(settings), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    lines: list[str] = []
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # Ctrl-C reaches shoprank, which stops the group
        pass_fds=() if hold is None else (hold,),
        preexec_fn=_ended_with(os.getpid()),
    )
    try:
        for line in proc.stdout:
            lines.append(line)
            match = _PROGRESS.match(line)
            if progress and match:
                progress(1, match.group(4), int(match.group(2)))
        proc.wait()
    except BaseException:
        _stop(proc)
        raise
    finally:
        proc.stdout.close()
    return subprocess.CompletedProcess(command, proc.returncode, "".join(lines))


def _ended_with(parent: int) -> Callable[[], None]:
    """What a child runs before dbt: ask the kernel for SIGTERM when ``parent`` ends (Linux), and
    end at once if it already has."""

    def arrange() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if hasattr(libc, "prctl"):
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)

    return arrange


def _stop(proc: subprocess.Popen) -> None:
    """Stop ``proc``'s process group: SIGTERM, then SIGKILL after ``STOP_SECONDS``."""
    for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def dbt_build(
    settings: Settings,
    select: str | None = None,
    full_refresh: bool = False,
    progress: Callable[..., None] | None = None,
) -> BuildResult:
    """Run ``dbt build`` (models, snapshots, tests) and report what it built.

    Raises:
        WarehouseError: Nothing was ingested yet.
        BuildError: A model, snapshot or test failed; the message names each one.
    """
    if not settings.warehouse.is_file():
        raise WarehouseError(f'Warehouse "{settings.warehouse}" does not exist; run "shoprank ingest" first')
    started = time.perf_counter()
    args = ["build", *(["--select", select] if select else []), *(["--full-refresh"] if full_refresh else [])]
    with warehouse.writing(settings.warehouse, "build") as hold:
        if settings.raw_lake is not None:  # runs ingested before the profile changed, or cut off publishing
            with warehouse.connect(settings.warehouse) as con:
                publish(con, settings.raw_lake)
        (settings.dbt_target / "run_results.json").unlink(missing_ok=True)
        finished = dbt(settings, args, progress, hold)
        if settings.dbt_target_name == "distributed" and finished.returncode == 0:
            with warehouse.connect(settings.warehouse) as con:
                warehouse.attach_tables(con, "marts", settings.marts)
                warehouse.attach_tables(con, "intermediate", settings.spark_tables("intermediate"))
    results = _run_results(settings, finished)
    failed = [r for r in results if r["status"] in ("error", "fail")]
    if failed or finished.returncode != 0:
        raise BuildError(_failure_message(failed, finished, settings))
    result = BuildResult(statuses=Counter(f"{r['unique_id'].split('.')[0]} {r['status']}" for r in results))
    result.marts = mart_rows(settings)
    result.seconds = time.perf_counter() - started
    return result


def mart_rows(settings: Settings) -> dict[str, int]:
    """Rows of every mart in the warehouse (empty before the first build)."""
    con = warehouse.connect(settings.warehouse, read_only=True)
    try:
        return warehouse.table_counts(con, "marts")
    finally:
        con.close()


def _run_results(settings: Settings, finished: subprocess.CompletedProcess) -> list[dict]:
    path = settings.dbt_target / "run_results.json"
    if finished.returncode == 2 or not path.is_file():
        raise BuildError(f"dbt could not run: {_last_error(finished.stdout)}; see {_log_file(settings)}")
    return json.loads(path.read_text())["results"]


def _log_file(settings: Settings) -> Path:
    return settings.dbt_target.parent / "logs" / "dbt.log"


def _failure_message(failed: list[dict], finished: subprocess.CompletedProcess, settings: Settings) -> str:
    logs = _log_file(settings)
    if not failed:
        return f"dbt build failed: {_last_error(finished.stdout)}; see {logs}"
    shown = "; ".join(f"{_node(r)}: {_first_line(r)}" for r in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    return f"dbt build failed: {shown}{more}; see {logs}"


def _node(result: dict) -> str:
    """ "test unique_x" from "test.shoprank.unique_x.<hash>", "model y" from "model.shoprank.y"."""
    kind, _, *names = result["unique_id"].split(".")
    return f"{kind} {names[0] if kind == 'test' else names[-1]}"


def _first_line(result: dict) -> str:
    lines = [line.strip() for line in (result.get("message") or "").splitlines() if line.strip()]
    return lines[0] if lines else result["status"]


def _last_error(output: str) -> str:
    errors = [line.strip() for line in output.splitlines() if "Error" in line or "error" in line]
    return errors[-1] if errors else output.strip().splitlines()[-1] if output.strip() else "no output"
