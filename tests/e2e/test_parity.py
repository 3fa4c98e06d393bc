"""`shoprank parity`: what a real server on the tiny shop logged, recomputed by the training path.

It found one skew, fixed since: Feast keeps a ``UnixTimestamp`` online in whole seconds, so
``request_context__hours_since_last_event`` was served from ``last_event_at`` cut to the second
while training read it to the microsecond; ``user_features_daily`` now keeps it in whole seconds.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner

from serving.parity import HINT
from shoprank.cli import cli
from shoprank.config import Settings
from shoprank.warehouse import read
from tests.e2e.test_serve import call, start

USERS = ["u000001", "u000002", "u000003", None, "u000005"]


@pytest.fixture(scope="module")
def parity_shop(tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A copy of the tiny shop whose server (on the materialized clock) answered 20 requests and
    stopped, so its served log is visible."""
    workdir = tmp_path_factory.mktemp("parity") / "shop"
    shutil.copytree(tiny_shop.workdir, workdir)
    settings = dataclasses.replace(tiny_shop, workdir=workdir)
    items = read(settings.warehouse, "select item_id, title, category_top from marts.dim_items order by item_id")
    server = start(settings, "--as-of", "materialized")
    base = next(server)
    try:
        for path, body in _requests(items.rows()):
            status, answer = call(f"{base}{path}", body)
            assert status == 200 and answer["fallback"] is None, answer
    finally:
        server.close()  # stops the service: its log files are renamed visible
    return settings


def _requests(items: list[tuple[str, str, str]]) -> Iterator[tuple[str, dict]]:
    """20 requests: searches, reranks (one with an item the catalog lacks: shown, not ranked, so not
    in the feature log) and recommendations."""
    for n, query in enumerate(["shoe", "drill", "cereal", "pillow", *(title for _, title, _ in items[:4])]):
        yield "/v1/search", {"query": query, "k": 10, "user_id": USERS[n % len(USERS)]}
    ids = [item_id for item_id, _, _ in items]
    for n in range(5):
        chosen = [*ids[n * 7 : n * 7 + 6], "i999999"] if n == 4 else ids[n * 7 : n * 7 + 6]
        yield "/v1/rerank", {"item_ids": chosen, "query": items[n][1] if n % 2 else None, "user_id": USERS[n]}
    for n in range(7):
        context = {"session_item_ids": ids[n * 3 : n * 3 + 2] if n < 5 else [], "category": items[n][2]}
        yield "/v1/recommend", {"user_id": USERS[n % len(USERS)], "k": 10, "context": context}


def parity(settings: Settings, *options: str):
    return CliRunner().invoke(cli, ["--workdir", str(settings.workdir), "parity", *options])


def services_table(search_mismatches: int = 0) -> str:
    return (
        "  service           models                  requests  items  features  values  mismatches\n"
        "  ranker_v2         ranker_v2/v0001                7     70        36   2,520           0\n"
        f"  search_ranker_v2  search_ranker_v2/v0001        13     88        49   4,312  {search_mismatches:>10}\n"
    )


def head(engine: str = "duckdb") -> str:
    return f"Parity of 20 served requests (of 20 logged), recomputed by the {engine} engine at their request times:\n"


def exact(engine: str) -> str:
    no_mismatch = "No mismatch: every served value equals its offline value (floats within a relative 1e-9).\n"
    return head(engine) + services_table() + no_mismatch


@pytest.mark.parametrize("engine", ["duckdb", "feast"])
def test_served_vectors_equal_the_training_path(parity_shop, engine):
    result = parity(parity_shop, "--engine", engine)
    assert (result.exit_code, result.output) == (0, exact(engine))


@contextmanager
def edited_log(settings: Settings, edit: Callable[[list[dict]], None]) -> Iterator[None]:
    """The served log with ``edit`` applied to its lists, restored afterwards."""
    (path,) = (settings.workdir / "serving" / "features").glob("features-*.jsonl")
    logged = path.read_text()
    lists = [json.loads(line) for line in logged.splitlines()]
    edit(lists)
    path.write_text("".join(json.dumps(served) + "\n" for served in lists))
    try:
        yield
    finally:
        path.write_text(logged)


def test_a_wrong_served_value_is_one_mismatch_of_its_feature(parity_shop):
    feature, served = "item_features__price", {}

    def overprice(lists: list[dict]) -> None:
        served.update(lists[0], price=lists[0]["features"][feature][0])
        lists[0]["features"][feature][0] = 12345.5  # of the first item served

    with edited_log(parity_shop, overprice):
        result = parity(parity_shop)
    assert served["model_version"] == "search_ranker_v2/v0001"
    request_id, item_id, price = served["request_id"], served["items"][0], served["price"]
    assert (result.exit_code, result.output) == (
        1,
        head()
        + services_table(1)
        + (
            "1 mismatching value(s) in 1 feature(s): serving and training disagree.\n"
            "Features with most mismatches:\n"
            "  service           feature               mismatches  rows\n"
            "  search_ranker_v2  item_features__price           1    88\n"
            "First mismatch of each:\n"
            f"  service           feature               {'request_id':32}  item_id  served   offline\n"
            f"  search_ranker_v2  item_features__price  {request_id}  {item_id}  12345.5  {price}\n"
        ),
    )


def test_a_clock_past_the_data_reads_expired_values_online_and_gets_the_hint(parity_shop):
    def later(lists: list[dict]) -> None:  # as if served on the wall clock, long after the shop's data
        for served in lists:
            moment = (datetime.fromisoformat(served["request_time"]) + timedelta(days=60)).isoformat()
            served["request_time"] = moment
            served["entities"]["request_time"] = [moment] * len(served["items"])

    with edited_log(parity_shop, later):
        result = parity(parity_shop)
    assert result.exit_code == 1
    assert result.output.startswith(head()) and result.output.endswith(HINT + "\n")


def test_no_served_log_names_the_folder_and_the_fix(tmp_path):
    folder = tmp_path / "serving" / "features"
    folder.mkdir(parents=True)
    (folder / ".features-20250101T000000-1-000000001.jsonl").write_text("{}\n")  # still being written
    result = parity(Settings(workdir=tmp_path))
    assert result.exit_code == 1
    assert result.output == (
        f"Error: No served feature log in {folder} (files features-*.jsonl); serve some requests with "
        "`shoprank serve` first (its log becomes visible when rotated or when the service stops)\n"
    )


def test_an_item_logged_per_line_names_the_request_and_the_fix(tmp_path):
    folder = tmp_path / "serving" / "features"
    folder.mkdir(parents=True)
    item = {"request_id": "r1", "request_time": "2025-01-01T00:00:00", "item_id": "i1", "position": 0, "features": {}}
    (folder / "features-20250101T000000-1-000000001.jsonl").write_text(json.dumps(item) + "\n")
    result = parity(Settings(workdir=tmp_path))
    assert (result.exit_code, result.output) == (
        1,
        "Error: Served request r1 is logged without entities, items, model_version, user_id: not a served list "
        "as this version logs them; move its file out of the served log\n",
    )
