"""`shoprank evaluate-judgments`: a judgment list ranked at random, by BM25 and by the search model,
with the errors a user meets (another format, grades off the scale)."""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from serving.judgments import read_judgments
from shoprank.cli import cli
from shoprank.config import Settings
from shoprank.warehouse import read

HEADER = ["id", "product_uid", "product_title", "search_term", "relevance"]


def write(path: Path, rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as file:
        csv.writer(file).writerows([HEADER, *rows])
    return path


def invoke(settings: Settings, *args: str):
    return CliRunner().invoke(cli, ["--workdir", str(settings.workdir), *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def judgments(served_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four queries that are an item's exact title (that item graded 3, three items of other
    categories 1), and one whose best item is absent from the catalog (only the file has its title)."""
    items = read(served_shop.warehouse, "select * from marts.dim_items").unique("title", keep="none").sort("item_id")
    targets = items.unique("category_top", keep="first").sort("item_id").head(4)
    rows, n = [], 0
    for target in targets.iter_rows(named=True):
        others = items.filter(pl.col("category_top") != target["category_top"]).head(3)
        for item, grade in [(target, 3.0), *((other, 1.0) for other in others.iter_rows(named=True))]:
            n += 1
            rows.append([n, item["item_id"], item["title"], target["title"], grade])
    rows += [[n + 1, "absent-1", "zebra striped floor lamp", "zebra floor lamp", 3.0]]
    rows += [
        [n + 2 + i, item, title, "zebra floor lamp", 1.0]
        for i, (item, title) in enumerate(items.head(2).select("item_id", "title").rows())
    ]
    return write(tmp_path_factory.mktemp("judgments") / "judgments.csv", rows)


def test_bm25_ranks_exact_titles_first_and_the_model_is_measured_beside_it(served_shop, judgments):
    result = invoke(served_shop, "evaluate-judgments", str(judgments))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == (
        f"Judgments of {judgments}: 5 queries, 19 judged items (1 not in the catalog); model search_ranker_v2/v0001"
    )
    assert lines[1].split() == ["ranker", "ndcg@5", "ndcg@10", "gap@5", "gap@10"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:5]}
    assert list(rows) == ["random", "bm25", "model"]
    assert rows["random"][2:] == ["0.0%", "0.0%"]
    assert rows["bm25"] == ["1.0000", "1.0000", "100.0%", "100.0%"]  # the absent item matched on its file title
    assert 0 <= float(rows["model"][0]) <= 1
    assert lines[5] == "gap: the share of the random -> ideal NDCG gap closed"


def test_grades_cut_into_quarters_and_queries_that_normalize_alike_merge(tmp_path):
    path = write(
        tmp_path / "j.csv",
        [
            [1, "a", "A", "Red  Shoes", 1.0],
            [2, "b", "B", "red shoes!", 1.5],
            [3, "c", "C", "red shoes", 2.2],
            [4, "c", "C", "RED SHOES", 2.4],
            [5, "d", "D", "lamp", 3.0],
        ],
    )
    judged = read_judgments(path)
    assert judged.select("query_id", "item_id", "label").rows() == [
        ("lamp", "d", 3),
        ("red shoes", "a", 0),
        ("red shoes", "b", 1),
        ("red shoes", "c", 2),
    ]
    assert judged.filter(pl.col("item_id") == "c")["grade"][0] == pytest.approx(2.3)


def test_another_format_and_grades_off_the_scale_are_named(served_shop, tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("query,item,grade\nx,1,3\n")
    result = invoke(served_shop, "evaluate-judgments", str(other))
    assert result.exit_code == 1
    assert result.output == (
        f'Error: Judgment file "{other}" has header "query,item,grade"; '
        'expected "id,product_uid,product_title,search_term,relevance" (Home Depot\'s format)\n'
    )
    off = write(tmp_path / "off.csv", [[1, "a", "A", "lamp", 3.0], [2, "b", "B", "lamp", 4.0]])
    result = invoke(served_shop, "evaluate-judgments", str(off))
    assert result.output == (
        f'Error: Judgment file "{off}": 1 row(s) have a relevance outside [1, 3] (e.g. id 2: "4.0"); '
        "fix them or pass the file's scale with --scale\n"
    )
    assert invoke(served_shop, "evaluate-judgments", str(off), "--scale", "1", "4").exit_code == 0


def test_training_on_judgments_prints_each_rankers_share_of_the_random_to_ideal_gap(home_depot_shop):
    settings, _ = home_depot_shop
    assert invoke(settings, "features", "apply").exit_code == 0
    prior = "query_title_match__title_bm25"
    result = invoke(settings, "train", "--labels", "judgments", "--service", "search_ranker_v2", "--prior", prior)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    ndcg = {
        line.split()[0]: float(line.split()[1])
        for line in lines[lines.index("Test metrics against observed labels:") + 2 :][:4]
    }
    block = lines.index("Share of the random -> ideal gap closed:")
    assert lines[block + 1].split() == ["ranker", "ndcg@5", "ndcg@10"]
    shares = {line.split()[0]: line.split()[1] for line in lines[block + 2 : block + 5]}
    assert list(shares) == ["lightgbm", "popularity", "bm25"]
    expected = (ndcg["bm25"] - ndcg["random"]) / (1 - ndcg["random"])  # from the table's rounded NDCG
    assert float(shares["bm25"].removesuffix("%")) / 100 == pytest.approx(expected, abs=0.002)
