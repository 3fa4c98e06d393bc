"""Point-in-time training frames side by side with their anchors, in one run.

    python benchmarks/historical_features.py                      # 1M entity rows, all three paths
    python benchmarks/historical_features.py --rows 10000000 --paths ours

Entity rows come from the labels of the `medium` shop (created with `shoprank pipeline --preset
medium` when absent), sampled by whole groups or repeated (query ids suffixed) to the asked
number. Paths, each in its own process (peak memory is the process's max RSS):
  feast   FeatureStore.get_historical_features(...).to_arrow() in one call (the reference)
  asof    one hand-written DuckDB statement: the service's views chained as ASOF LEFT JOINs over
          the same Parquet, TTL applied, COPY to Parquet; no on-demand views (the limit)
  ours    training.dataset: chunked ASOF joins, Feast's on-demand views, contract, Parquet parts
"work s" is measured inside the process after its imports (Feast's import alone takes ~3 s);
"wall s" is the whole process. Values: ours and asof (its columns) against Feast's, cell by cell.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Measured, measure  # noqa: E402

HERE = Path(__file__).resolve().parent
WORK = HERE / "work" / "historical"
TARGET = 1.3  # ours within 1.3x of the asof limit (work seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--paths", default="feast,asof,ours")
    parser.add_argument("--service", default="search_ranker_v1")
    parser.add_argument("--workdir", type=Path, default=HERE / "work" / "medium")
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--run", help=argparse.SUPPRESS)  # child: run one path
    args = parser.parse_args()
    if args.run:
        _import_all()
        started = time.perf_counter()
        rows = PATHS[args.run](args)
        print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))
        return
    entities = prepare(args)
    runs = {}
    for path in args.paths.split(","):
        command = [sys.executable, __file__, "--run", path, *_common(args)]
        runs[path] = measure(command)
    report(args, entities, runs)


def prepare(args: argparse.Namespace) -> Path:
    """Create the workdir if needed, apply the feature store, write the entity rows once."""
    from shoprank.config import Settings
    from shoprank.features.store import feast, open_store
    from training.dataset import ENTITIES, default_surfaces, label_entities
    from training.labels import served
    from training.pit import CHUNK, ROW, connect
    from training.plan import resolve

    if not (args.workdir / "marts" / "fct_labels.parquet").is_file():
        shoprank = str(Path(sys.executable).with_name("shoprank"))
        subprocess.run([shoprank, "--workdir", str(args.workdir), "pipeline", "--preset", "medium"], check=True)
    settings = Settings(workdir=args.workdir)
    feast(settings, "apply")
    path = WORK / f"entities-{args.service}-{args.rows}.parquet"
    if path.is_file():
        return path
    plan = resolve(open_store(settings), args.service)
    con = connect(WORK / ".spill")
    labels = label_entities(con, settings, plan, served(default_surfaces(plan)), args.rows)
    repeats = -(-args.rows // labels)
    group = "query_id || '#' || rep"
    con.execute(
        f"""copy (
            select * exclude ({ROW}, {CHUNK}, rep) replace ({group} as query_id),
                row_number() over (order by event_timestamp, {group}, {ROW}) - 1 as {ROW}
            from (
                select * from {ENTITIES}, range({repeats}) r(rep)
                order by hash(query_id, rep), {ROW} limit {args.rows}
            )
        ) to '{path}'"""
    )
    return path


def report(args: argparse.Namespace, entities: Path, runs: dict[str, Measured]) -> None:
    """Print the table of paths, the value comparison and the verdict; save them as JSON."""
    work = {name: json.loads(run.output.strip().splitlines()[-1]) for name, run in runs.items()}
    print(f"{args.rows:,} entity rows of {args.service} from {entities.name} ({args.workdir})")
    print(f"{'path':<7}{'work s':>8}{'rows/s':>12}{'wall s':>8}{'peak MB':>9}")
    for name, run in runs.items():
        seconds = work[name]["seconds"]
        print(f"{name:<7}{seconds:>8.2f}{work[name]['rows'] / seconds:>12,.0f}{run.seconds:>8.2f}{run.peak_mb:>9,.0f}")
    results = {"rows": args.rows, "service": args.service, "runs": {}}
    for name, run in runs.items():
        results["runs"][name] = {**work[name], "wall": run.seconds, "peak_mb": run.peak_mb}
    if "feast" in runs:
        for name in ("ours", "asof"):
            if name in runs:
                verdict = compare(_output(args, name), _output(args, "feast"), name == "asof")
                results[f"{name}_vs_feast"] = verdict
                print(f"{name} vs feast: {verdict}")
    if {"ours", "asof"} <= set(runs):
        ratio = work["ours"]["seconds"] / work["asof"]["seconds"]
        results["ours_over_asof"] = ratio
        print(f"ours / asof: {ratio:.2f}x work ({'meets' if ratio <= TARGET else 'MISSES'} <= {TARGET}x)")
    (WORK / f"results-{args.service}-{args.rows}-{'-'.join(runs)}.json").write_text(json.dumps(results, indent=2))


def compare(frame: Path, reference: Path, features_only: bool) -> str:
    """ "identical" when every column of ``frame`` (or its feature columns) equals the reference's,
    row by row, NaN for NaN; else what differs."""
    import pandas as pd

    ours = pd.read_parquet(frame)
    theirs = pd.read_parquet(reference)
    if features_only:
        ours = ours.sort_values("__row").reset_index(drop=True)
        ours = ours[[c for c in ours.columns if "__" in c and not c.startswith("__")]]  # <view>__<feature>
    missing = [c for c in ours.columns if c not in theirs.columns]
    if missing or len(ours) != len(theirs):
        return f"different shape: {len(ours)} vs {len(theirs)} rows, columns absent from Feast's {missing}"
    theirs = theirs[list(ours.columns)]
    different = [c for c in ours.columns if not ours[c].equals(theirs[c])]
    return "identical" if not different else f"{len(different)} columns differ: {different[:5]}"


def _import_all() -> None:
    """Import what any path uses, so work seconds leave out imports (Feast's take ~3 s)."""
    import pandas  # noqa: F401
    import pyarrow.parquet  # noqa: F401

    import training.dataset  # noqa: F401


def _common(args: argparse.Namespace) -> list[str]:
    return [
        f"--rows={args.rows}",
        f"--service={args.service}",
        f"--workdir={args.workdir}",
        f"--chunk-rows={args.chunk_rows}",
    ]


def _output(args: argparse.Namespace, path: str) -> Path:
    suffix = "" if path == "ours" else ".parquet"
    return WORK / f"{path}-{args.service}-{args.rows}{suffix}"


def _entities(args: argparse.Namespace) -> Path:
    return WORK / f"entities-{args.service}-{args.rows}.parquet"


def run_feast(args: argparse.Namespace) -> int:
    import pandas as pd
    import pyarrow.parquet as pq

    from shoprank.config import Settings
    from shoprank.features.store import open_store

    store = open_store(Settings(workdir=args.workdir))
    rows = pd.read_parquet(_entities(args))
    service = store.get_feature_service(args.service)
    table = store.get_historical_features(rows, features=service, full_feature_names=True).to_arrow()
    pq.write_table(table.sort_by("__row").drop(["__row"]), _output(args, "feast"))
    return table.num_rows


def run_asof(args: argparse.Namespace) -> int:
    """The limit: one statement, written as anyone would, column lists from the service's views."""
    from shoprank.config import Settings
    from shoprank.features.store import open_store
    from training.pit import connect
    from training.plan import resolve

    plan = resolve(open_store(Settings(workdir=args.workdir)), args.service)
    selects, joins = ["e.*"], []
    for i, view in enumerate(plan.views):
        keys = " and ".join(f"e.{entity} = v{i}.{key}" for key, entity in view.join_keys.items())
        joins.append(
            f"asof left join read_parquet('{view.path}') v{i} on {keys} and e.event_timestamp >= v{i}.event_timestamp"
        )
        if view.ttl:
            ttl = f"v{i}.event_timestamp >= e.event_timestamp - to_microseconds({view.ttl_micros})"
            selects += [f"case when {ttl} then v{i}.{f} end as {view.name}__{f}" for f in view.features]
        else:  # no TTL: a value stays valid until the next one
            selects += [f"v{i}.{f} as {view.name}__{f}" for f in view.features]
    con = connect(WORK / ".spill")
    sql = f"select {', '.join(selects)} from read_parquet('{_entities(args)}') e {' '.join(joins)}"
    con.execute(f"copy ({sql}) to '{_output(args, 'asof')}'")
    return con.sql(f"select count(*) from '{_output(args, 'asof')}'").fetchall()[0][0]


def run_ours(args: argparse.Namespace) -> int:
    from shoprank.config import Settings
    from shoprank.features.store import open_store
    from training.dataset import ENTITIES, entity_table, write_frames
    from training.pit import connect, join_chunk
    from training.plan import resolve

    plan = resolve(open_store(Settings(workdir=args.workdir)), args.service)
    con = connect(WORK / ".spill")
    rows = entity_table(con, f"select * from read_parquet('{_entities(args)}')", args.chunk_rows)
    write_frames(con, plan, ENTITIES, _output(args, "ours"), join_chunk)
    return rows


PATHS = {"feast": run_feast, "asof": run_asof, "ours": run_ours}

if __name__ == "__main__":
    main()
