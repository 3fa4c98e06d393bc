"""Candidate recall of the search index (``shoprank.search``) on a simulated shop and on Home Depot.

    python benchmarks/retrieval_recall.py [--preset small] [--homedepot DIR]

(a) Simulated shop (``shoprank simulate --preset PRESET``, ingest and build into
``benchmarks/work/PRESET``, reused when present): every clicked search impression (label > 0)
is a relevant (normalized query, item) pair; ``recall`` is the share of clicks whose item is
among the query's top k candidates.
(b) Home Depot relevance judgments (ingested and built into ``benchmarks/work/homedepot``):
each judged query's items with a grade of at least 2.0 on the raters' 1-3 scale, retrieved from
the whole catalog; ``query recall`` is the mean over queries of each query's share.

Rows: the anchor is title-only BM25 without backfill (the scores ``shoprank.features.bm25``
gives ``retrieval_bm25``), then title + brand + category path, each without and with the
popular-in-category backfill; seconds are those of the whole batch (``retrieve_batch`` of every
distinct query, k = 500). Times: a first ``open_index`` (read the catalog, build, save; it
includes the tokenizer's start-up), a second one (read the catalog, fingerprint, load), the
build alone, and ``retrieve`` of one query at a time (k = 100, 500 queries).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HOMEDEPOT = HERE.parents[1] / "shared" / "datasets" / "homedepot_search_relevance"
KS = (20, 100, 500)


def prepared(workdir: Path, *ingest: str) -> Path:
    """``workdir`` after ingest (of ``ingest``, or a simulated shop's landing folder) and build."""
    if not (workdir / "warehouse.duckdb").is_file():
        shoprank = [str(Path(sys.executable).with_name("shoprank")), "--workdir", str(workdir)]
        if not ingest:
            subprocess.run([*shoprank, "simulate", "--preset", workdir.name], check=True, stdout=sys.stderr)
            ingest = (str(workdir / "landing"),)
        subprocess.run([*shoprank, "ingest", *ingest], check=True, stdout=sys.stderr)
        subprocess.run([*shoprank, "build"], check=True, stdout=sys.stderr)
    return workdir


def seconds(call):
    """``call()`` and its wall time."""
    started = time.perf_counter()
    return call(), time.perf_counter() - started


def measure(name: str, workdir: Path, relevant_pairs) -> None:
    from shoprank.config import Settings
    from shoprank.search.index import (
        FIELDS,
        FOLDER,
        build_index,
        open_index,
        read_catalog,
        read_popularity,
        with_popularity,
    )
    from shoprank.search.recall import retrieval_recall
    from shoprank.search.retrieve import retrieve

    settings = Settings(workdir=workdir)
    shutil.rmtree(workdir / FOLDER, ignore_errors=True)
    _, cold = seconds(lambda: open_index(settings))
    index, warm = seconds(lambda: open_index(settings))
    catalog = read_catalog(settings)
    _, built = seconds(lambda: build_index(catalog))
    relevant = relevant_pairs(settings)
    queries = relevant["query"].unique(maintain_order=True).head(500).to_list()
    _, single = seconds(lambda: [retrieve(index, query, k=100) for query in queries])
    print(
        f"\n{name}: {catalog.height:,} items; {relevant.height:,} relevant pairs over "
        f"{relevant['query'].n_unique():,} queries"
    )
    print(
        f"open_index: first {cold:.2f} s (read, build, save), again {warm:.2f} s (fingerprint, load); "
        f"build alone {built:.2f} s; retrieve(k=100) {1000 * single / len(queries):.2f} ms a query"
    )
    title_only = with_popularity(build_index(catalog, ("title",)), read_popularity(settings))
    print(f"{'fields':<32} {'backfill':<8} " + " ".join(f"{f'R@{k}':>6} {f'qR@{k}':>6}" for k in KS) + "  seconds")
    for fields, variant in ((("title",), title_only), (FIELDS, index)):
        for backfill in (False, True):
            table, took = seconds(lambda v=variant, b=backfill: retrieval_recall(v, relevant, KS, b))
            figures = " ".join(f"{r['recall']:>6.3f} {r['query_recall']:>6.3f}" for r in table.iter_rows(named=True))
            print(f"{' + '.join(fields):<32} {'yes' if backfill else 'no':<8} {figures}  {took:.2f}")


def main(preset: str, homedepot: Path) -> None:
    from shoprank.search.recall import clicked_searches, judged_relevant

    shop = prepared(HERE / "work" / preset)
    measure(f"simulated {preset} shop, clicked searches", shop, clicked_searches)
    judged = prepared(HERE / "work" / "homedepot", str(homedepot), "--format", "homedepot")
    measure("Home Depot judgments, grade >= 2", judged, judged_relevant)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small", help="simulator preset [small]")
    parser.add_argument("--homedepot", type=Path, default=HOMEDEPOT, help="folder of the Home Depot judgments")
    arguments = parser.parse_args()
    main(arguments.preset, arguments.homedepot)
