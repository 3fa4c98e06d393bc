"""Shared fixtures: a tiny shop run through the whole pipeline once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from shoprank.config import Settings
from shoprank.pipeline import PipelineResult, run_pipeline
from shoprank.progress import progress_bar

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_dataset(relative: str) -> Path:
    """A file of ../shared/datasets, or skip the test when the folder is absent (a user's clone)."""
    path = SHARED_DATASETS / relative
    if not path.exists():
        pytest.skip(f"{path} is absent: the shared sample datasets are only on the project's machines")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, PipelineResult]:
    """Settings of a workdir holding the `tiny` shop after simulate -> ingest -> build -> validate."""
    settings = Settings(workdir=tmp_path_factory.mktemp("tiny-shop"), seed=7, simulate={"preset": "tiny"})
    return settings, run_pipeline(settings, progress_bar)


@pytest.fixture(scope="session")
def tiny_shop(tiny_run: tuple[Settings, PipelineResult]) -> Settings:
    """The tiny shop's settings (read it only; copy the workdir to change it)."""
    return tiny_run[0]
