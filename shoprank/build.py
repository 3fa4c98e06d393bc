"""``shoprank build``: run ``dbt build`` on the workdir's warehouse, as a data engineer would.

dbt runs in a child process with ``SHOPRANK_HOME`` set, exactly like ``dbt build`` run by hand
in ``dbt_project/``; its structured results come from ``run_results.json``.
"""

from __future__ import annotations

import json
import os
import re
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

_PROGRESS = re.compile(r"^\S+\s+(\d+) of (\d+) (OK|PASS|WARN|ERROR|FAIL|SKIP|NO-OP)\b.*?\b([\w.]+) \.+")
_DBT = "from dbt.cli.main import cli; cli()"


@dataclass
class BuildResult:
    """Outcome of a ``dbt build``: statuses per resource type and the mart sizes."""

    statuses: Counter = field(default_factory=Counter)
    marts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def dbt(
    settings: Settings, args: list[str], progress: Callable[..., None] | None = None
) -> subprocess.CompletedProcess:
    """Run a dbt command in ``dbt_project/`` against the workdir; stream progress from its log.

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
        "--no-use-colors",
    ]  # fmt: skip
    env = {**os.environ, **settings.env(), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    lines: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as proc:
        for line in proc.stdout:
            lines.append(line)
            match = _PROGRESS.match(line)
            if progress and match:
                progress(1, match.group(4), int(match.group(2)))
    return subprocess.CompletedProcess(command, proc.returncode, "".join(lines))


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
    (settings.dbt_target / "run_results.json").unlink(missing_ok=True)
    finished = dbt(settings, args, progress)
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
