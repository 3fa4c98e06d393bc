"""Training and the model registry from the command line: train, list, show, promote, compare,
report, and the errors a user meets (unknown version, a service that changed since training)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from shoprank.cli import cli
from shoprank.config import Settings
from shoprank.errors import ModelError
from training.registry import features_hash, load_ranker


@pytest.fixture(scope="module")
def shop(tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the tiny shop (its pipeline registered ranker_v2/v0001), plus an XGBoost v0002."""
    workdir = tmp_path_factory.mktemp("models") / "shop"
    shutil.copytree(tiny_shop.workdir, workdir)
    settings = Settings(workdir=workdir, seed=tiny_shop.seed)
    trained = invoke(settings, "train", "--algorithm", "xgboost", "--position", "none")
    assert trained.exit_code == 0, trained.output
    return settings


def invoke(settings: Settings, *args: str):
    return CliRunner().invoke(cli, ["--workdir", str(settings.workdir), *args], catch_exceptions=False)


def test_train_prints_the_headline_and_both_metric_tables(shop):
    card = json.loads((shop.models / "ranker_v2" / "v0002" / "card.json").read_text())
    assert card["algorithm"] == "xgboost" and card["config"]["position"] == "none"
    assert card["label_source"] == "served"
    assert "position" not in card["features"] and len(card["features"]) == 36
    assert (
        card["window"]["train"][1]
        < card["window"]["valid"][0]
        <= card["window"]["valid"][1]
        < card["window"]["test"][0]
    )
    assert (shop.models / "ranker_v2" / "v0002" / "model.xgb.json").is_file()
    assert (shop.models / "ranker_v2" / "v0002" / "report.html").is_file()


def test_list_promote_show_compare(shop):
    promoted = invoke(shop, "models", "promote", "ranker_v2", "v0001")
    assert promoted.output == "Promoted ranker_v2/v0001 to production\n"
    listed = invoke(shop, "models", "list").output.splitlines()
    assert listed[0].split() == [
        "service",
        "version",
        "algorithm",
        "labels",
        "ndcg@10",
        "best",
        "baseline",
        "trained",
        "at",
    ]
    assert [line.split()[:5] for line in listed[1:3]] == [
        ["ranker_v2", "v0001", "*", "lightgbm", "served"],
        ["ranker_v2", "v0002", "xgboost", "served", listed[2].split()[4]],
    ]
    assert listed[-1] == "  * production"
    shown = invoke(shop, "models", "show", "ranker_v2").output  # the promoted version by default
    assert shown.startswith("ranker_v2/v0001  lightgbm  trained ")
    assert "features      37 (hash " in shown and "position" in shown
    compared = invoke(shop, "models", "compare", "ranker_v2", "v0001", "v0002").output.splitlines()
    assert compared[0].split() == ["test", "metric", "v0001", "lightgbm", "v0002", "xgboost"]
    assert [line.split()[0] for line in compared[1:]] == [
        "ndcg@5",
        "ndcg@10",
        "ndcg@20",
        "map",
        "mrr",
        "recall@20",
        "auc",
    ]


def test_report_writes_a_self_contained_html_file(shop, tmp_path):
    output = tmp_path / "report.html"
    result = invoke(shop, "report", "--version", "v0002", "--output", str(output))
    assert result.output == f"Report of ranker_v2/v0002: {output}\n"
    html = output.read_text()
    assert "data:image/png;base64," in html and "xgboost" in html and 'src="http' not in html


def test_unknown_versions_and_services_are_one_line_errors(shop):
    missing = invoke(shop, "models", "show", "ranker_v2", "v0009")
    assert missing.exit_code == 1
    assert missing.output == f'Error: Model "ranker_v2/v0009" not found in {shop.models}; versions: v0001, v0002\n'
    none = invoke(shop, "models", "show", "search_ranker_v1")
    assert none.output == (
        f'Error: No model of feature service "search_ranker_v1" in {shop.models}; '
        'run "shoprank train --service search_ranker_v1"\n'
    )


def test_loading_reproduces_predictions_and_refuses_a_changed_service(shop, tmp_path):
    ranker, model = load_ranker(shop, "ranker_v2", "v0002")
    test = pl.read_parquet(shop.datasets / "ranker_v2" / "*.parquet").tail(500)
    again, _ = load_ranker(shop, "ranker_v2", "v0002")
    np.testing.assert_array_equal(ranker.predict(test), again.predict(test))
    changed = shop.models / "ranker_v2" / "v0003"
    shutil.copytree(model.path, changed)
    card = json.loads((changed / "card.json").read_text())
    card["service_features"].pop("item_features__price")
    card["features_hash"] = features_hash(card["service_features"])
    card["version"] = "v0003"
    (changed / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match=r"ranker_v2/v0003.*added \['item_features__price'\].*train a new model"):
        load_ranker(shop, "ranker_v2", "v0003")
    shutil.rmtree(changed)
