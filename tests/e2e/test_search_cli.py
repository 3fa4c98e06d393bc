"""`shoprank search`: a text query answered as serving would, on the tiny shop's index, online
store and search model, with the output a user reads."""

from __future__ import annotations

import polars as pl
from click.testing import CliRunner

from shoprank.cli import cli
from shoprank.config import Settings
from shoprank.warehouse import read

HEADER = ["rank", "item", "score", "bm25", "from", "title", "top", "contributions"]


def invoke(settings: Settings, *args: str):
    return CliRunner().invoke(cli, ["--workdir", str(settings.workdir), *args], catch_exceptions=False)


def results(output: str) -> list[list[str]]:
    lines = output.splitlines()
    assert lines[1].split() == HEADER
    return [line.split() for line in lines[2:]]


def a_title(settings: Settings) -> tuple[str, str]:
    items = read(settings.warehouse, "select item_id, title from marts.dim_items")
    item_id, title = items.filter(pl.col("title").is_unique()).sort("item_id").row(0)
    return item_id, title


def test_an_exact_title_finds_its_item_with_scores_and_reasons(served_shop):
    item_id, title = a_title(served_shop)
    result = invoke(served_shop, "search", title, "-k", "10")
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first.startswith(f'Search "{title}": ') and first.endswith("ranked by search_ranker_v2/v0001")
    rows = results(result.output)
    assert [row[0] for row in rows] == [str(rank) for rank in range(1, 11)]
    assert item_id in [row[1] for row in rows]  # the tiny shop's model weighs clicks more than the text
    assert "position" not in result.output  # a constant at serving: no reason
    scores = [float(row[2]) for row in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(row[4] in ("match", "backfill") for row in rows)


def test_a_misspelled_title_and_a_user_still_find_the_item(served_shop):
    item_id, title = a_title(served_shop)
    words = title.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    word = words[longest]
    words[longest] = word[0] + word[2] + word[1] + word[3:]  # two letters swapped
    result = invoke(served_shop, "search", " ".join(words), "--user", "u000001", "-k", "10")
    assert result.exit_code == 0, result.output
    assert item_id in [row[1] for row in results(result.output)]


def test_a_query_nothing_matches_and_a_missing_model_are_one_line_answers(served_shop):
    nothing = invoke(served_shop, "search", "qqqqzzzz")
    assert nothing.output == 'No item matches "qqqqzzzz", even with spelling corrected; try other words\n'
    missing = invoke(served_shop, "search", "shoe", "--service", "search_ranker_v1")
    assert missing.exit_code == 1
    assert missing.output.startswith('Error: No model of feature service "search_ranker_v1"')
