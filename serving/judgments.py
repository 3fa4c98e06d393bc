"""A shop's own relevance judgments against its search model: each judged query's items ranked at
random, by BM25 and by the model as serving ranks them (online features of the promoted version),
with NDCG@5 and NDCG@10 and the share of the random -> ideal gap each closes.

The judgment list is in Home Depot's format (``id,product_uid,product_title,search_term,relevance``).
Judged items may be absent from the catalog: they are ranked on the file's titles, with no
catalog or behavior features. Grades cut into labels 0..3 by quarters of their scale, as
``fct_judgments`` cuts them; raw queries that normalize alike form one group.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from serving.features import online_features, request_rows
from shoprank.config import Settings
from shoprank.errors import InputError
from shoprank.features.bm25 import TitleIndex
from shoprank.features.store import open_store
from shoprank.features.transforms import query_title_match
from shoprank.ingest.readers import first_row
from shoprank.text import normalize_query
from shoprank.warehouse import read
from training.dataset import RETRIEVAL
from training.metrics import gap_closed, ranking_metrics
from training.plan import resolve
from training.registry import load_ranker

HEADER = ("id", "product_uid", "product_title", "search_term", "relevance")
KS = (5, 10)
RANDOM_DRAWS = 20  # random orders averaged
TEXT_VIEW = "query_title_match"  # the on-demand view that reads the title (transforms.query_title_match)


@dataclass(frozen=True)
class JudgmentCheck:
    """NDCG of each ranker on a judgment list.

    Attributes:
        model: The model version ranked with (``service/version``).
        queries: Query groups (normalized queries).
        rows: Judged (query, item) pairs.
        unknown_items: Judged items the catalog lacks (ranked on the file's titles).
        table: ``ranker``, ``ndcg@5``, ``ndcg@10``, ``gap@5``, ``gap@10`` (shares of the random ->
            ideal gap; random's is 0 by definition).
    """

    model: str
    queries: int
    rows: int
    unknown_items: int
    table: pl.DataFrame


def read_judgments(path: Path, scale: tuple[float, float] = (1.0, 3.0)) -> pl.DataFrame:
    """The judgments of a file: ``query_id`` (normalized), ``query``, ``item_id``, ``title``, ``grade``
    and ``label``, one row per (query_id, item_id) with the mean grade; groups contiguous.

    Raises:
        InputError: The file is missing, not UTF-8 CSV, lacks the header or has a grade outside ``scale``.
    """
    header = tuple(first_row(path))
    if header != HEADER:
        raise InputError(
            f'Judgment file "{path}" has header "{",".join(header)}"; expected "{",".join(HEADER)}" '
            "(Home Depot's format)"
        )
    try:
        frame = pl.read_csv(path, infer_schema=False)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f'Judgment file "{path}" is not a well-formed CSV ({str(exc).splitlines()[0]})') from None
    low, high = scale
    grades = frame["relevance"].cast(pl.Float64, strict=False)
    bad = frame.filter(grades.is_null() | (grades < low) | (grades > high))
    if bad.height:
        raise InputError(
            f'Judgment file "{path}": {bad.height} row(s) have a relevance outside [{low:g}, {high:g}] '
            f'(e.g. id {bad["id"][0]}: "{bad["relevance"][0]}"); fix them or pass the file\'s scale with --scale'
        )
    norms = {query: normalize_query(query) for query in frame["search_term"].unique()}
    judged = (
        frame.select(
            pl.col("search_term").replace_strict(norms, return_dtype=pl.Utf8).alias("query_id"),
            pl.col("search_term").alias("query"),
            pl.col("product_uid").alias("item_id"),
            pl.col("product_title").alias("title"),
            grades.alias("grade"),
        )
        .drop_nulls("query_id")
        .group_by("query_id", "item_id", maintain_order=True)
        .agg(pl.col("query", "title").first(), pl.col("grade").mean())
        .sort("query_id", maintain_order=True)
    )
    quarter = (high - low) / 4
    label = ((pl.col("grade") - low) / quarter).floor().clip(0, 3).cast(pl.Int32)
    return judged.with_columns(label.alias("label"))


def check_judgments(
    settings: Settings,
    path: Path,
    service: str = "search_ranker_v2",
    version: str | None = None,
    scale: tuple[float, float] = (1.0, 3.0),
) -> JudgmentCheck:
    """Rank every judged query's items at random, by BM25 and by the model; measure each.

    Raises:
        ShoprankError: A bad file, no model of ``service``, or no feature store or warehouse.
    """
    judged = read_judgments(path, scale)
    ranker, model = load_ranker(settings, service, version)
    store = open_store(settings)
    catalog = read(settings.warehouse, "select * from marts.dim_items")
    known = judged["item_id"].is_in(catalog["item_id"].implode())
    titles = pl.concat(
        [catalog.select("item_id", "title"), judged.filter(~known).select("item_id", "title").unique("item_id")]
    )
    index = TitleIndex.build(titles["item_id"].to_list(), titles["title"].to_list())
    candidates = judged.select(
        "item_id", "query", pl.Series(RETRIEVAL, index.score(judged["query"].to_list(), judged["item_id"].to_list()))
    )
    rows = request_rows(catalog, candidates, datetime.now(UTC).replace(tzinfo=None))
    frame = online_features(store, resolve(store, service), rows)
    frame = _file_titles(frame, judged, known)
    labels, groups = judged["label"].to_numpy().astype("float64"), judged["query_id"].to_numpy()
    scores = {"bm25": frame[RETRIEVAL].to_numpy(), "model": ranker.predict(frame)}
    results = {name: ranking_metrics(labels, values, groups, KS) for name, values in scores.items()}
    rng = np.random.default_rng(settings.seed)
    draws = [ranking_metrics(labels, rng.random(len(labels)), groups, KS) for _ in range(RANDOM_DRAWS)]
    results = {"random": {key: float(np.mean([d[key] for d in draws])) for key in draws[0]}, **results}
    table = pl.DataFrame(
        [
            {
                "ranker": name,
                **{f"ndcg@{k}": values[f"ndcg@{k}"] for k in KS},
                **{f"gap@{k}": gap_closed(values[f"ndcg@{k}"], results["random"][f"ndcg@{k}"]) for k in KS},
            }
            for name, values in results.items()
        ]
    )
    return JudgmentCheck(model.name, judged["query_id"].n_unique(), judged.height, int((~known).sum()), table)


def _file_titles(frame: pl.DataFrame, judged: pl.DataFrame, known: pl.Series) -> pl.DataFrame:
    """The text-match features of items the catalog lacks, computed on the file's titles by the
    on-demand view's transformation (the online store has no title for them)."""
    columns = [c for c in frame.columns if c.startswith(f"{TEXT_VIEW}__")]
    if known.all() or not columns:
        return frame
    inputs = pl.DataFrame(
        {"query": judged["query"], "title": judged["title"], "brand": None, RETRIEVAL: frame[RETRIEVAL]},
        schema_overrides={"brand": pl.Utf8},
    ).filter(~known)
    computed = pl.from_pandas(query_title_match(inputs.to_pandas()))
    unknown = pl.Series(np.flatnonzero(~known.to_numpy()))
    replaced = {c: frame[c].scatter(unknown, computed[c.removeprefix(f"{TEXT_VIEW}__")]) for c in columns}
    return frame.with_columns(**replaced)
