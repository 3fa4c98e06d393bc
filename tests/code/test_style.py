"""The code base keeps one style: ruff's lint rules and formatter (configured in pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE = ["shoprank", "training", "feature_repo", "tests", "benchmarks"]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")


@pytest.mark.skipif(RUFF is None, reason='ruff is not installed; pip install -e ".[dev]"')
@pytest.mark.parametrize("check", [["check"], ["format", "--check"]])
def test_ruff_is_clean(check):
    done = subprocess.run([RUFF, *check, *CODE], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
