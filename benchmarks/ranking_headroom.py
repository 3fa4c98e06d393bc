"""Headroom of the recommendation ranker on a simulated shop: what its features can reach at best.

    python benchmarks/ranking_headroom.py [--preset small] [--service ranker_v2]

On the shop made by ``shoprank pipeline --preset PRESET`` (reused when present), the service's
served-list training frame is split by time as ``shoprank train`` splits it, and LightGBM
``lambdarank`` is trained with the default hyperparameters

- on the observed click grades, as ``shoprank train`` does (the anchor: our model),
- on the true relevance grades instead (what the features allow with perfect labels),
- on the clicks with one term of the true relevance logit added as a feature (what knowing that
  user or item trait exactly would add; see ``shoprank.simulate.truth``).

Every row is measured on the same test rows against the true relevance: NDCG@10 and the share of
the gap between the logging policy (the served order) and the oracle (ranking by true relevance)
that it closes. The issue's target for the ``small`` shop is 50%.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent


def main(preset: str, service: str) -> None:
    from shoprank.config import Settings
    from shoprank.simulate import truth
    from training.contracts import GROUP
    from training.dataset import build_dataset
    from training.evaluate import time_split
    from training.metrics import ranking_metrics
    from training.rankers import RankerConfig, train

    workdir = HERE / "work" / preset
    if not (workdir / "truth").is_dir():
        shoprank = str(Path(sys.executable).with_name("shoprank"))
        subprocess.run([shoprank, "--workdir", str(workdir), "pipeline", "--preset", preset], check=True)
    settings = Settings(workdir=workdir)
    dataset = build_dataset(settings, service)
    frame = pl.read_parquet(dataset.path / "*.parquet")
    users, items = (pl.read_parquet(settings.truth / f"{name}_latent.parquet") for name in ("user", "item"))
    u, i = truth._rows(users, frame, "user_id"), truth._rows(items, frame, "item_id")
    terms = truth.components(truth._arrays(users), truth._arrays(items), u, i)
    relevance = truth.score(truth._arrays(users), truth._arrays(items), u, i)
    frame = frame.with_columns(
        pl.Series("true_grade", truth.grade(relevance)),
        pl.Series("true_relevance", relevance),
        *(pl.Series(f"true_{name}", values) for name, values in terms.items()),
    )
    split = time_split(frame)
    test = split.test

    def truth_ndcg(scores: np.ndarray) -> float:
        gains = test["true_grade"].to_numpy().astype("float64")
        return ranking_metrics(gains, scores, test[GROUP].to_numpy(), (10,))["ndcg@10"]

    def fitted(label: str = "label", extra: tuple[str, ...] = ()) -> np.ndarray:
        parts = [part.with_columns(pl.col(label).alias("label")) for part in (split.train, split.valid)]
        return train(RankerConfig(seed=settings.seed), *parts, (*dataset.features, *extra)).predict(test)

    logging, oracle = truth_ndcg(-test["position"].to_numpy().astype("float64")), 1.0
    rows = [("logging policy (served order)", logging), ("oracle (true relevance)", oracle)]
    rows.append(("ours: trained on clicks", truth_ndcg(fitted())))
    rows.append(("trained on the true grades (features' ceiling)", truth_ndcg(fitted("true_grade"))))
    for name in terms:
        rows.append((f"clicks + true {name} term as a feature", truth_ndcg(fitted(extra=(f"true_{name}",)))))
    print(f"{preset} shop, {service}: {test[GROUP].n_unique():,} test lists, {test.height:,} rows")
    print(f"{'model':<50} {'truth NDCG@10':>13} {'gap closed':>10}")
    for name, value in rows:
        print(f"{name:<50} {value:>13.4f} {(value - logging) / (oracle - logging):>10.1%}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--service", default="ranker_v2")
    args = parser.parse_args()
    main(args.preset, args.service)
