"""A property-based fuzz of the service's OpenAPI (schemathesis): requests generated from
``/openapi.json``, valid and invalid, on every endpoint of a real ``shoprank serve`` holding the
API key (so the keyed endpoints are reached), none answered by a server error, and no exception in
the server's log (work after the answer, such as the served log's, fails there unseen by clients).

Schemathesis sends JSON only, and its text has no lone surrogates (it excludes them); a hostile
client sends both, and JSON parsers (Python's included) take ``NaN`` and ``Infinity``. So one
value of a generated body, drawn at random, is sometimes replaced by such a value.

Each operation gets its own Hypothesis run (schemathesis' pytest plugin cannot parametrize over a
fixture's schema on this pytest), derandomized so CI sees the same requests every time."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.schemas import APIOperation

from serving.http import KEY_HEADER
from shoprank.config import Settings
from tests.e2e.test_serve import KEY, start

EXAMPLES = 60  # per operation and mode
HEADER = KEY_HEADER.model.name
HOSTILE = st.none() | st.sampled_from([float("nan"), float("inf"), float("-inf"), "dr\ud800ill", "\udfff"])


@pytest.fixture(scope="module")
def server_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzzed-output") / "serve.log"


@pytest.fixture(scope="module")
def fuzzed(tiny_shop: Settings, tmp_path_factory: pytest.TempPathFactory, server_output: Path):
    """A server on a copy of the tiny shop of its own (the fuzz lands events and rejects rows)."""
    workdir = tmp_path_factory.mktemp("fuzzed") / "shop"
    shutil.copytree(tiny_shop.workdir, workdir)
    yield from start(dataclasses.replace(tiny_shop, workdir=workdir), log=server_output)


def leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """The paths to the values of a JSON document that are neither objects nor lists."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value) for leaf in leaves(item, (*path, index))]
    return [path]


def replaced(document: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    copy = dict(document) if isinstance(document, dict) else list(document)
    copy[path[0]] = replaced(document[path[0]], path[1:], value)
    return copy


@pytest.mark.parametrize("mode", list(GenerationMode))
def test_no_request_is_answered_by_a_server_error(fuzzed: str, server_output: Path, mode: GenerationMode):
    api = schemathesis.openapi.from_url(f"{fuzzed}/openapi.json")
    api.config.generation.update(codec=None)  # any text schemathesis makes
    operations = [result.ok() for result in api.get_all_operations()]
    if mode is GenerationMode.NEGATIVE:  # only an operation with inputs (but the key, given) has invalid requests
        operations = [each for each in operations if each.body or any(p.name != HEADER for p in each.iter_parameters())]
    failures = [report for operation in operations if (report := fuzz(operation, mode, fuzzed))]
    assert not failures, "\n".join(failures)
    assert "Traceback" not in server_output.read_text(), server_output.read_text()[-5000:]


def fuzz(operation: APIOperation, mode: GenerationMode, base: str) -> str | None:
    """A Hypothesis run of requests to ``operation``: the report of its server errors, or None."""

    @given(case=operation.as_strategy(mode, headers={HEADER: KEY}), hostile=HOSTILE, at=st.integers(0, 10**6))
    @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case, hostile, at: int) -> None:
        if hostile is not None and operation.body and (paths := leaves(case.body)):
            case.body = json.dumps(replaced(case.body, paths[at % len(paths)], hostile)).encode()
        case.call_and_validate(base_url=base, checks=[not_a_server_error], timeout=30)

    try:
        call()
    except FailureGroup as failure:
        return f"{operation.label}: {failure}"
    return None
