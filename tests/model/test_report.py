"""The HTML report of a registry version: self-contained, complete, ordered, escaped."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import polars as pl
import pytest

from shoprank.errors import InputError
from training.report import write_report

# ranker -> (kind, ndcg@10); baselines deliberately not in NDCG order here
RANKERS = {
    "random": ("baseline", 0.1111),
    "oracle": ("oracle", 0.9999),
    "popularity": ("baseline", 0.3333),
    "lightgbm": ("model", 0.5555),
    "logging_policy": ("baseline", 0.2222),
}
ORDER = ["lightgbm", "popularity", "logging_policy", "random", "oracle"]
EVIL = "<script>alert(1)</script>"


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    """A fake version directory to change."""
    return _write_version(tmp_path / "models" / "search" / "v0003")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The report of an unchanged fake version directory, rendered once."""
    root = _write_version(tmp_path_factory.mktemp("models") / "v0003")
    path = write_report(root)
    assert path == root / "report.html"
    return path.read_text()


def _write_version(root: Path) -> Path:
    """A fake version directory with every file of the design's layout."""
    (root / "evaluation").mkdir(parents=True)
    metrics = [
        (ranker, kind, metric, value, "labels")
        for ranker, (kind, ndcg) in RANKERS.items()
        for metric, value in (("ndcg@10", ndcg), ("mrr", 0.123456), ("groups", 12345.0))
    ]
    metrics += [(ranker, kind, "ndcg@10", ndcg + 0.1, "truth") for ranker, (kind, ndcg) in RANKERS.items()]
    pl.DataFrame(metrics, schema=["ranker", "kind", "metric", "value", "against"], orient="row").write_parquet(
        root / "evaluation" / "metrics.parquet"
    )
    pl.DataFrame(
        [(ranker, k, ndcg * k / 20) for ranker, (_, ndcg) in RANKERS.items() for k in range(1, 21)],
        schema=["ranker", "k", "ndcg"],
        orient="row",
    ).write_parquet(root / "evaluation" / "ndcg_curve.parquet")
    pl.DataFrame(
        [
            ("surface", surface, ranker, "ndcg@10", ndcg, groups)
            for surface, groups in (("search", 4321), ("recommend", 987))
            for ranker, (_, ndcg) in RANKERS.items()
        ],
        schema=["slice", "slice_value", "ranker", "metric", "score", "groups"],
        orient="row",
    ).write_parquet(root / "evaluation" / "slices.parquet")
    features = [EVIL, *(f"view__feature_{i}" for i in range(30))]
    pl.DataFrame(
        {"feature": features, "gain": [1000.0 - i for i in range(31)], "splits": list(range(31, 0, -1))}
    ).write_parquet(root / "importance.parquet")
    pl.DataFrame(
        [
            (i, dataset, "ndcg@10", shift + i / 100)
            for i in range(1, 11)
            for dataset, shift in (("train", 0.4), ("valid", 0.3))
        ],
        schema=["iteration", "dataset", "metric", "value"],
        orient="row",
    ).write_parquet(root / "learning_curve.parquet")
    card = {
        "service": "search",
        "version": "v0003",
        "algorithm": "lightgbm",
        "features": features,
        "features_hash": "f00dfeed",
        "label_source": "impressions",
        "window": {
            "train": ["2024-01-01T00:00:00+00:00", "2024-02-01T00:00:00+00:00"],
            "valid": ["2024-02-01T00:00:00+00:00", "2024-02-08T00:00:00+00:00"],
            "test": ["2024-02-08T00:00:00+00:00", "2024-02-15T00:00:00+00:00"],
        },
        "rows": {"train": 1234567, "valid": 23456, "test": 34567},
        "groups": {"train": 50000, "valid": 2000, "test": 3000},
        "lineage": {"dbt_manifest_hash": "abc123", "warehouse": {"snapshot": "s1"}, "code_version": "deadbeef"},
        "seed": 7,
        "config": {"learning_rate": 0.05, "num_leaves": 31},
        "best_iteration": 8,
        "metrics": {"valid": {"ndcg@10": 0.5}, "test": {"ndcg@10": 0.5555}},
        "headline": {
            "metric": "ndcg@10",
            "model": 0.5555,
            "best_baseline": "popularity",
            "baseline": 0.3333,
            "lift": 66.66,
            "gap_closed": 42.0,
        },
        "trained_at": "2024-03-01T12:00:00+00:00",
        "train_seconds": 12.5,
    }
    (root / "card.json").write_text(json.dumps(card))
    return root


def _section(page: str, title: str) -> str:
    """The HTML of the section whose heading starts with ``title``."""
    match = re.search(rf"<section><h2>{re.escape(title)}.*?</section>", page, re.S)
    assert match, f"no section {title!r}"
    return match.group(0)


def _first_cells(table: str) -> list[str]:
    return re.findall(r"<tr><td>([^<]*)</td>", table)


def test_report_is_self_contained_with_every_section(page: str):
    assert 'src="http' not in page and "<link" not in page and "<script" not in page
    for title in ("NDCG@k", "Feature importance", "Learning curves (ndcg@10)"):
        assert 'src="data:image/png;base64,' in _section(page, title)
    assert "lift <b>+66.7%</b>" in page and "closes <b>42.0%</b> of the gap" in page
    lineage = _section(page, "Data window and lineage")
    for text in (
        "1,234,567",
        "2024-02-08T00:00:00+00:00",
        "f00dfeed",
        "impressions",
        "abc123",
        "deadbeef",
        "2024-03-01",
    ):
        assert text in lineage


def test_metric_table_orders_rankers_and_formats_values(page: str):
    table = _section(page, "Test metrics against logged labels")
    assert _first_cells(table) == ORDER
    assert '<td>lightgbm</td><td class="n">0.5555</td><td class="n">0.1235</td><td class="n">12,345</td>' in table
    assert _first_cells(_section(page, "Test metrics against true relevance")) == ORDER
    slices = _section(page, "Slices")
    assert '<td>surface</td><td>search</td><td class="n">4,321</td><td class="n">0.5555</td>' in slices


def test_text_is_escaped(page: str):
    assert EVIL not in page
    assert html.escape(EVIL) in _section(page, "Feature importance")


def test_absent_optional_files_omit_their_sections(version_dir: Path):
    (version_dir / "evaluation" / "slices.parquet").unlink()
    metrics = pl.read_parquet(version_dir / "evaluation" / "metrics.parquet")
    metrics.filter(pl.col("against") == "labels").write_parquet(version_dir / "evaluation" / "metrics.parquet")

    page = write_report(version_dir, version_dir.parent / "elsewhere.html").read_text()

    assert "Slices" not in page and "true relevance" not in page
    assert "Test metrics against logged labels" in page


def test_a_directory_without_card_is_rejected(version_dir: Path):
    (version_dir / "card.json").unlink()

    with pytest.raises(InputError, match="card.json"):
        write_report(version_dir)
