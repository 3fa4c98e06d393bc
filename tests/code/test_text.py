"""Query and title text: the normalization rule gives the same words in Python and in the dbt macro
(compiled by dbt, run by DuckDB) on a shared table of cases and on every character; tokens of
English and Chinese; spelling correction of the simulator's typos."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from shoprank.build import dbt
from shoprank.config import Settings
from shoprank.errors import ConfigError
from shoprank.simulate.text import Vocabulary, make_typo
from shoprank.text import Speller, normalize_query, scrub_pii, tokens
from shoprank.text.normalize import COMPATIBILITY, FRACTION_DENOMINATORS, UNITS

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "text_cases.csv"
MACRO_QUERY = "select {{ normalize_query('text') }} as normalized from texts order by position"
UNITS_QUERY = "select '{{ tojson(text_units()) }}' as units"


def _cases() -> list[dict[str, str]]:
    with CASES.open(encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def macro(tmp_path_factory: pytest.TempPathFactory) -> Callable[[list[str]], list[str | None]]:
    """The dbt macro ``normalize_query`` as dbt compiles it, run by DuckDB over a list of texts."""
    settings = Settings(workdir=tmp_path_factory.mktemp("text-macro"))
    done = dbt(settings, ["--quiet", "compile", "--output", "json", "--inline", MACRO_QUERY])
    assert done.returncode == 0, done.stdout
    query = json.loads(done.stdout[done.stdout.index("{") :])["compiled"]

    def run(texts: list[str]) -> list[str | None]:
        texts_table = pa.table({"position": np.arange(len(texts)), "text": pa.array(texts, pa.string())})
        with duckdb.connect() as con:
            con.register("texts", texts_table)
            return [normalized for (normalized,) in con.execute(query).fetchall()]

    return run


def test_the_macro_and_python_read_units_from_the_same_table(tmp_path):
    done = dbt(Settings(workdir=tmp_path), ["--quiet", "compile", "--output", "json", "--inline", UNITS_QUERY])
    assert done.returncode == 0, done.stdout
    compiled = json.loads(done.stdout[done.stdout.index("{") :])["compiled"]
    table = json.loads(compiled.removeprefix("select '").removesuffix("' as units"))
    assert {unit: tuple(others) for unit, others in table.items()} == UNITS


@pytest.fixture(scope="module")
def macro_cases(macro: Callable[[list[str]], list[str | None]]) -> dict[str, str | None]:
    texts = [case["text"] for case in _cases()]
    return dict(zip(texts, macro(texts), strict=True))


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case["text"])
def test_python_and_the_dbt_macro_normalize_the_shared_cases(case, macro_cases):
    expected = case["normalized"] or None
    assert normalize_query(case["text"]) == expected, case["note"]
    assert macro_cases[case["text"]] == expected, case["note"]


def test_missing_text_normalizes_to_none():
    assert normalize_query(None) is None and tokens(None) == [] and tokens(" ?! ") == []


def _assert_agree(macro: Callable[[list[str]], list[str | None]], texts: list[str]) -> None:
    got = macro(texts)
    different = [(text, sql, normalize_query(text)) for text, sql in zip(texts, got, strict=True)]
    different = [row for row in different if row[1] != row[2]]
    assert not different, f"{len(different)} texts (text, dbt, python), e.g. {different[:5]}"


def test_the_macro_agrees_with_python_on_every_character(macro):
    """Every assigned code point of planes 0 and 1 (Python's Unicode), next to letters and digits."""
    characters = [chr(c) for c in range(0x20000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    _assert_agree(macro, [f"A{c}1{c}b {c}" for c in characters])


def test_the_macro_agrees_with_python_on_units_numbers_and_random_text(macro):
    spellings = [s for unit, others in UNITS.items() for s in (unit, *others)]
    spellings += [s.upper() for s in spellings]
    units = [form.format(s) for s in spellings for form in ("2 {}", "2{}.", "x {}")]
    fractions = [f"{whole}{n}/{d}" for whole in ("", "3 ", "3-", "999999 ") for d in range(1, 70) for n in range(70)]
    compatibility = [f"1{c}2 a{c}b" for c in map(chr, COMPATIBILITY)]
    pieces = ["1", "2", "12", "1/2", "3/4", "15/16", "2.50", ".5", "0", "in", "Inch", '"', "'", "s", "ft", "x", "-"]
    pieces += [" ", " ", ".", "/", "..", ",", "½", "１", "Ａ", "ﬁ", "²", "乐高", "积木", "é", "e\u0301", "İ", "Σ"]
    pieces += ["_", "lb", "V", "volts", "1234567", "a", "3岁", "™", "\u00a0", "\n"]
    rng = np.random.default_rng(7)
    random = ["".join(rng.choice(pieces, rng.integers(1, 12))) for _ in range(5000)]
    _assert_agree(macro, units + fractions + compatibility + random)


SCRUB_QUERY = "select {{ scrub_pii('text') }} as scrubbed from texts order by position"


def test_the_scrub_macro_agrees_with_python_on_personal_data_and_random_text(tmp_path):
    done = dbt(Settings(workdir=tmp_path), ["--quiet", "compile", "--output", "json", "--inline", SCRUB_QUERY])
    assert done.returncode == 0, done.stdout
    query = json.loads(done.stdout[done.stdout.index("{") :])["compiled"]
    pieces = ["1", "23", "4567", "555", " ", "-", ".", "(", ")", "+", "@", "a", "jane.roe", "example.org", "x"]
    pieces += ["_", "%", "é", "1234567", "0612345678", ",", "/", "\n"]
    rng = np.random.default_rng(11)
    texts = ["".join(rng.choice(pieces, rng.integers(1, 16))) for _ in range(5000)]
    texts += ["jane.roe@example.org", "+1 (555) 123-4567", "555123456 555123457", "a1234567890", "123456789012345678"]
    with duckdb.connect() as con:
        con.register("texts", pa.table({"position": np.arange(len(texts)), "text": pa.array(texts, pa.string())}))
        got = [scrubbed for (scrubbed,) in con.execute(query).fetchall()]
    different = [(text, sql, scrub_pii(text)) for text, sql in zip(texts, got, strict=True) if sql != scrub_pii(text)]
    assert not different, f"{len(different)} texts (text, dbt, python), e.g. {different[:5]}"
    assert got[-5:] == ["EMAIL", "PHONE", "PHONE PHONE", "a1234567890", "123456789012345678"]


def test_numbers_and_units_read_alike():
    same = ["1/2 in.", "0.5 inch", '1/2"', ".50 In", "½ inch", "１／２ｉｎ", "0.5-in"]
    assert {normalize_query(text) for text in same} == {"0.5 in"}
    assert normalize_query("18V") == normalize_query("18-Volt") == normalize_query("18 volts") == "18 volt"
    assert [normalize_query(f"{n}/{d}") for n, d in [(1, 64), (63, 64)]] == ["0.015625", "0.984375"]
    assert FRACTION_DENOMINATORS == (2, 4, 8, 16, 32, 64)


def test_tokens_of_english_split_on_blanks():
    assert tokens("DEWALT 20V MAX Cordless 1/2 in. Drill/Driver") == [
        "dewalt", "20", "volt", "max", "cordless", "0.5", "in", "drill", "driver",
    ]  # fmt: skip


def test_tokens_of_chinese_are_segmented():
    assert tokens("无线蓝牙耳机 降噪") == ["无线", "蓝牙", "耳机", "降噪"]
    assert tokens("乐高 LEGO积木 3岁") == ["乐高", "lego", "积木", "3", "岁"]
    assert tokens("不锈钢保温杯500ML") == ["不锈钢", "保温杯", "500", "ml"]


def test_jieba_loads_on_the_first_chinese_word_and_logs_nothing():
    code = (
        "from shoprank.text import segment, tokens\n"
        "tokens('cordless drill')\n"
        "assert segment._jieba.cache_info().currsize == 0, 'jieba loaded for English text'\n"
        "print(' '.join(tokens('乐高积木儿童玩具')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "乐高 积木 儿童玩具\n")


def test_speller_prefers_the_most_frequent_word_one_edit_away():
    speller = Speller({"drill": 50, "drip": 5, "grill": 20, "brass": 3, "glass": 3, "lego": 9, "积木": 4})
    typos = ["dril", "drlil", "drilll", "grlil", "crass", "legoo", "drill", "2.5", "x", "lgo", "积朩", "zzzz"]
    assert speller.correct(typos) == [
        "drill", "drill", "drill", "grill", "brass", "lego", "drill", "2.5", "x", "lgo", "积朩", "zzzz",
    ]  # fmt: skip
    assert Speller.from_texts(["Cordless Drill", "Drill bits", None]).correct(["drils", "bist"]) == ["drill", "bits"]
    with pytest.raises(ConfigError, match="min_length=1"):
        Speller({}, min_length=1)


def test_speller_undoes_the_simulators_typos():
    """Typos of every word of the simulated shop's terms, made as the simulator makes them: most come
    back; any other correction is a vocabulary word one edit away (the rule picks the most frequent)."""
    vocabulary = Vocabulary.build(np.random.default_rng(0))
    texts = vocabulary.text.to_list()
    counts = Counter(w for i, text in enumerate(texts) if vocabulary.canonical[i] == i for w in tokens(text))
    speller, rng = Speller(counts), np.random.default_rng(1)
    words = [word for word in counts if len(word) >= 5 and word.isalpha() and word.isascii()]
    typos = [(word, make_typo(word, rng)) for word in words for _ in range(3)]
    typos = [(word, typo) for word, typo in typos if typo not in counts]
    fixed = speller.correct([typo for _, typo in typos])
    assert sum(got == word for (word, _), got in zip(typos, fixed, strict=True)) >= 0.9 * len(typos)
    assert all(got in counts for got in fixed)
