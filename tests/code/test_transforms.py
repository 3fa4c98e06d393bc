"""The request-time transformations behind the on-demand feature views."""

import math
import struct
from datetime import UTC, datetime
from types import SimpleNamespace

import hypothesis.strategies as st
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings

from serving.online import _values_form
from shoprank.features import transforms
from shoprank.features.bm25 import TitleIndex
from shoprank.text import normalize_query, tokens


def test_price_is_compared_with_what_the_user_pays_and_missing_without_purchases():
    out = transforms.price_to_user_mean(
        pd.DataFrame({"price": [30.0, 30.0, 5.0], "purchase_price_mean_30d": [15.0, None, 0.0]})
    )
    assert out["price_to_user_mean"][0] == 2.0
    assert math.isnan(out["price_to_user_mean"][1]) and math.isnan(out["price_to_user_mean"][2])


def test_request_context_reads_the_clock_in_utc_and_measures_recency_and_tenure():
    inputs = pd.DataFrame(
        {
            "request_time": pd.to_datetime(["2025-09-06 21:30:00+00:00"]),  # a Saturday
            "last_event_at": pd.to_datetime(["2025-09-06 18:30:00"]),  # naive = UTC
            "signup_time": [None],
        }
    )
    out = transforms.request_context(inputs)
    assert out.iloc[0][["hour_of_day", "day_of_week"]].tolist() == [21, 5]
    assert out["hours_since_last_event"][0] == 3.0
    assert math.isnan(out["days_since_signup"][0])


def test_candidate_category_affinity_is_zero_when_the_user_never_touched_it():
    out = transforms.candidate_category(pd.DataFrame({"category_affinity_30d": [0.25, None]}))
    assert out["candidate_category_affinity"].tolist() == [0.25, 0.0]


def test_query_title_match_on_normalized_words():
    inputs = pd.DataFrame(
        {
            "query": ["Water-Bottle", "acme bottle", "tent", None],
            "title": ["Acme Stainless Water Bottle 750 ml", "Acme Stainless Water Bottle", "Trail Tent", "Tent"],
            "brand": ["Acme", "Acme", None, "Trail"],
            "retrieval_bm25": [2.5, 1.0, None, float("nan")],
        }
    )
    out = transforms.query_title_match(inputs)
    assert out["title_bm25"].tolist() == [2.5, 1.0, 0.0, 0.0]
    assert out["query_words"].tolist() == [2, 2, 1, 0]
    sizes = transforms.query_title_match(
        pd.DataFrame({"query": ["drill 18 v"], "title": ["18-Volt Drill 18 V"], "brand": [None], "retrieval_bm25": [0]})
    )
    assert sizes["title_number_overlap"].tolist() == [1.0]
    assert out["title_token_overlap"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert out["title_has_query"].tolist() == [1, 0, 1, 0]
    assert out["brand_in_query"].tolist() == [0, 1, 0, 0]


def test_normalization_lowers_and_collapses_everything_but_letters_and_digits():
    assert normalize_query("  Red-Shoes, size 42!  ") == "red shoes size 42"
    assert normalize_query("Crème brûlée_pot") == "crème brûlée pot"
    assert normalize_query(" ?! ") is None and normalize_query(None) is None
    assert tokens("1/2 in. Pipe") == ["0.5", "in", "pipe"]  # fractions are decimals, units canonical


def test_stems_and_trigrams_forgive_plurals_and_typos():
    inputs = pd.DataFrame(
        {
            "query": ["cordless drills", "wrench", "ab", "door"],
            "title": ["Cordless Drill Kit", "Pipe Wrenches", "abc", "Doorbell"],
            "brand": [None] * 4,
            "retrieval_bm25": [0.0] * 4,
        }
    )
    out = transforms.query_title_match(inputs)
    assert out["title_token_overlap"].tolist() == [0.5, 0.0, 0.0, 0.0]
    assert out["title_stem_overlap"].tolist() == [1.0, 1.0, 0.0, 1.0]  # "ab" is too short to be a stem
    assert out["title_has_query_noun"].tolist() == [1, 1, 0, 1]
    assert out["title_words"].tolist() == [3, 2, 1, 1]
    # " ab " has trigrams " ab", "ab "; " abc " has " ab", "abc", "bc ": 1 shared of 4
    assert out["title_trigram_jaccard"][2] == 0.25
    assert 0 < out["title_trigram_jaccard"][1] < out["title_trigram_jaccard"][0] < 1


def test_bm25_of_titles_by_hand():
    index = TitleIndex.build(["a", "b", "c"], ["red shoe", "blue shoe shoe", None])
    # 2 titles (c has none) of 2 and 3 words, mean 2.5; "red" in 1 of them, "shoe" in both
    red, shoe = math.log(1 + 1.5 / 1.5), math.log(1 + 0.5 / 2.5)
    short, long = 1.2 * (0.25 + 0.75 * 2 / 2.5), 1.2 * (0.25 + 0.75 * 3 / 2.5)
    # a query word counts once, whatever its case; "shoes" is another word
    got = index.score(["Red shoes? RED SHOE", "shoe", "shoe", None], ["a", "b", "c", "a"])
    expected = [(red + shoe) * 2.2 / (1 + short), shoe * 2 * 2.2 / (2 + long), 0.0, 0.0]
    assert got.tolist() == pytest.approx(expected)
    assert index.score(["red"], ["missing"]).tolist() == [0.0]


def _match_one(query: str, title: str, brand: str) -> list[float]:
    """query_title_match of one row, word by word as its docstring says (the reference)."""
    q, text = " ".join(tokens(query)), " ".join(tokens(title))
    words = set(text.split())
    stems = {w[:n] for w in words for n in range(4, len(w))}
    grams = [{f" {s} "[i : i + 3] for i in range(len(s))} if s else set() for s in (q, text)]
    exact = [w in words for w in q.split()]
    stem = [w in words or w in stems or any(w[:n] in words for n in range(4, len(w))) for w in q.split()]
    numbers = [w in words for w in q.split() if w.replace(".", "", 1).replace("/", "", 1).isdigit()]
    share = [sum(found) / len(found) if found else 0.0 for found in (exact, stem, numbers)]
    jaccard = len(grams[0] & grams[1]) / len(grams[0] | grams[1]) if all(grams) else 0.0
    b = " ".join(tokens(brand))
    return [
        *share[:2],
        jaccard,
        int(bool(stem) and stem[-1]),
        share[2],
        int(bool(q) and f" {q} " in f" {text} "),
        int(bool(b) and f" {b} " in f" {q} "),
        len(q.split()),
        len(words),
    ]


WORDS = st.sampled_from(
    [
        "shoe",
        "shoes",
        "Shoe-Rack",
        "drill",
        "drills",
        "18",
        "v",
        "18v",
        "2.50",
        "1/3",
        "acme",
        "ab",
        "乐高积木",
        "积木",
        "",
        "  ",
    ]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(*[st.lists(WORDS, max_size=5).map(" ".join) | st.none()] * 3), min_size=1, max_size=12))
def test_query_title_match_equals_matching_a_row_at_a_time(rows):
    inputs = pd.DataFrame(rows, columns=["query", "title", "brand"]).assign(retrieval_bm25=1.0)
    out = transforms.query_title_match(inputs).drop(columns="title_bm25")
    expected = [_match_one(*(value or "" for value in row)) for row in rows]
    assert out.to_numpy().tolist() == expected


TIMES = st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1))
NUMBERS = st.none() | st.floats(-1e6, 1e6, allow_nan=False) | st.sampled_from([0.0, -0.0, 1e-300])
ZONES = st.sampled_from([None, UTC])  # as the service's clock gives them (naive UTC) and as stored
ROW_WISE = {
    "price_to_user_mean": {"price": NUMBERS, "purchase_price_mean_30d": NUMBERS},
    "request_context": {"request_time": TIMES.filter(bool), "last_event_at": TIMES, "signup_time": TIMES},
    "candidate_category": {"category_affinity_30d": NUMBERS},
    "query_title_match": {
        "query": st.lists(WORDS, max_size=5).map(" ".join) | st.none(),
        "title": st.lists(WORDS, max_size=6).map(" ".join) | st.none(),
        "brand": st.lists(WORDS, max_size=2).map(" ".join) | st.none(),
        "retrieval_bm25": NUMBERS,
    },
}


def test_every_row_wise_transformation_is_drawn_here():
    assert set(transforms.VALUES) == set(ROW_WISE)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_row_wise_transformations_give_serving_the_values_feast_gives(data):
    """The form over Python values (serving's) equals the DataFrame form run as Feast runs a view:
    the inputs through Arrow into pandas, the outputs back through Arrow; bit for bit."""
    name = data.draw(st.sampled_from(sorted(ROW_WISE)))
    zone = data.draw(ZONES)
    columns = {column: data.draw(st.lists(drawn, min_size=1, max_size=6)) for column, drawn in ROW_WISE[name].items()}
    length = min(map(len, columns.values()))
    columns = {
        column: [v.replace(tzinfo=UTC).astimezone(zone) if isinstance(v, datetime) and zone else v for v in values]
        for column, values in ((c, vs[:length]) for c, vs in columns.items())
    }
    table = pa.table({column: pa.array(values) for column, values in columns.items()})
    expected = pa.Table.from_pandas(getattr(transforms, name)(table.to_pandas()), preserve_index=False).to_pydict()
    served = transforms.VALUES[name](columns)
    assert _bits(served) == _bits(expected)


def _bits(columns: dict[str, list]) -> dict[str, list]:
    return {
        name: [struct.pack("<d", v) if isinstance(v, float) else v for v in values] for name, values in columns.items()
    }


def test_serving_uses_a_values_form_only_for_a_function_that_only_delegates_to_it():
    delegating = "def request_context(inputs: pd.DataFrame) -> pd.DataFrame:\n    from shoprank.features.transforms import request_context\n\n    return request_context(inputs)\n"
    changed = delegating.replace(
        "    return", "    inputs = inputs.assign(request_time=inputs['signup_time'])\n    return"
    )

    def view(udf_string: str, mode: str = "pandas") -> SimpleNamespace:
        return SimpleNamespace(mode=mode, feature_transformation=SimpleNamespace(udf_string=udf_string))

    assert _values_form(view(delegating)) is transforms.VALUES["request_context"]
    assert _values_form(view(changed)) is None
    assert _values_form(view(delegating.replace("request_context", "bm25_of_titles"))) is None  # no such form
    assert _values_form(view(delegating, mode="python")) is None
