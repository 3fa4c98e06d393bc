"""Scale curve of the main job per preset: simulate -> ingest -> dbt build -> validate, and with
``--profile distributed`` the rest of the pipeline on both profiles side by side in the same run.

Each stage runs as its own `shoprank` process, like a user would; per stage it prints the wall
time and the peak memory of the process tree, split into the Python driver (shoprank, dbt, Feast),
the JVM Spark runs in and Spark's Python workers (the distributed profile: in local mode the JVM and
the workers are the executors), sampled every 0.1 s. Beside them, the targets
of the foundation issue: small simulated in < 30 s, medium `dbt build` in < 120 s.

    python benchmarks/scale_curve.py [--profile embedded|distributed [--alone]] tiny small medium [large]

``--profile distributed`` runs every preset on the embedded profile and then on the distributed
one (Spark ``local[2]``, Redis and PostgreSQL, a Feast project per workdir, dropped after), from
the same landing files (the simulator is seeded), through ``features apply``, ``features
materialize`` and ``dataset build`` of both default services; it needs Java, Redis and PostgreSQL.
Seconds per million events close each table, then whether each preset's marts and training frames
are equal on both profiles (up to medium). ``--alone`` runs the distributed profile only (no
embedded twin, no equality check): the large shop's Spark run alone fills a working session here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import psutil  # a dependency of Feast

from shoprank.config import load_settings
from shoprank.equality import differences, mart_differences
from shoprank.features.store import drop_project, open_store
from shoprank.salt import SALT_VARIABLE

WORK = Path(__file__).resolve().parent / "work"
TARGETS = {("small", "simulate"): 30.0, ("medium", "build"): 120.0}
SERVICES = ("ranker_v2", "search_ranker_v2")  # shoprank.pipeline.SERVICES
FIRST = ("simulate", "ingest", "build", "validate")
COMPARED = ("tiny", "small", "medium")  # the large marts would not fit in memory side by side, sorted
REST = ("features apply", "materialize", *(f"dataset {service}" for service in SERVICES))


@dataclass(frozen=True)
class Stage:
    seconds: float
    driver_mb: float  # peak RSS of the Python processes of the tree but Spark's
    jvm_mb: float  # peak RSS of its Java processes (Spark's driver and executors, local mode)
    workers_mb: float  # peak RSS of Spark's Python workers (the executors' Python: our on-demand views, Redis writes)


def measured(command: list[str], env: dict[str, str]) -> Stage:
    """Run ``command``; sample its process tree's memory until it ends (raise with its output when it fails)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peaks = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
    done = threading.Event()

    def sample() -> None:
        root = psutil.Process(process.pid)
        while not done.wait(0.1):
            totals = {"driver": 0.0, "jvm": 0.0, "workers": 0.0}
            for each in [root, *root.children(recursive=True)]:
                try:
                    if kind := _kind(each):
                        totals[kind] += each.memory_info().rss / 2**20
                except psutil.Error:  # it ended between the listing and the reading
                    continue
            peaks.update({kind: max(peaks[kind], mb) for kind, mb in totals.items()})

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = process.stdout.read()
    process.wait()
    done.set()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output}")
    return Stage(time.perf_counter() - started, peaks["driver"], peaks["jvm"], peaks["workers"])


def _kind(process: psutil.Process) -> str | None:
    """``jvm``, ``workers`` (pyspark's Python workers) or ``driver`` (every other process), by the
    command line; None for a fork of the JVM that has not run its command yet (Hadoop's local file
    system forks one for each file Spark writes): it shows the JVM's own pages, under the name of
    the JVM thread that forked it (``Thread-14``), which had counted the JVM a second time."""
    command = process.cmdline()
    if "pyspark.daemon" in command:
        return "workers"
    if command and Path(command[0]).name == "java":
        parent = process.parent()
        return None if parent and parent.cmdline()[:1] == command[:1] else "jvm"
    return "driver"


def stages(workdir: Path, full: bool) -> dict[str, list[str]]:
    """Each stage's shoprank arguments (``full``: through the training frames)."""
    commands = {
        "simulate": ["simulate", "--preset", workdir.name],
        "ingest": ["ingest", str(workdir / "landing")],
        "build": ["build"],
        "validate": ["validate"],
    }
    if full:
        commands |= {"features apply": ["features", "apply"], "materialize": ["features", "materialize"]}
        commands |= {f"dataset {service}": ["dataset", "build", "--service", service] for service in SERVICES}
    return commands


def run(preset: str, profile: str, full: bool) -> dict:
    workdir = WORK / "scale" / profile / preset
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shoprank = str(Path(sys.executable).with_name("shoprank"))
    env = {**os.environ, "SHOPRANK_HOME": str(workdir), "SHOPRANK_PROFILE": profile}
    env.setdefault(SALT_VARIABLE, "scale-curve")  # the distributed profile refuses the public default
    row: dict = {"preset": preset, "profile": profile, "stages": {}}
    for stage, arguments in stages(workdir, full).items():
        got = measured([shoprank, *arguments], env)
        row["stages"][stage] = got.__dict__
        spark = f", JVM {got.jvm_mb:,.0f} MB" if got.jvm_mb else ""
        spark += f", Python workers {got.workers_mb:,.0f} MB" if got.workers_mb else ""
        print(f"{profile} {preset} {stage}: {got.seconds:.1f} s, driver {got.driver_mb:,.0f} MB{spark}", flush=True)
    with duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True) as con:
        row["events"] = con.execute("select count(*) from raw.events").fetchall()[0][0]
        row["impressions"] = con.execute("select count(*) from raw.requests").fetchall()[0][0]
    if profile == "distributed":  # its Feast project: Redis keys and registry rows
        settings = load_settings(options={"workdir": workdir, "profile": profile})
        drop_project(open_store(settings))
    return row


def compared(preset: str) -> str:
    """Whether the distributed build of a preset equals the embedded one: every mart, and the
    training frame of each default service (``shoprank.equality``)."""
    embedded, distributed = (
        load_settings(options={"workdir": WORK / "scale" / profile / preset, "profile": profile})
        for profile in ("embedded", "distributed")
    )
    marts = mart_differences(embedded, distributed)
    frames = {
        service: found
        for service in SERVICES
        if (
            found := differences(
                *(pl.read_parquet(s.datasets / service / "*.parquet") for s in (embedded, distributed))
            )
        )
    }
    count = len(list(embedded.marts.glob("*.parquet")))
    verdict = f"{preset}: {count - len(marts)} of {count} marts equal, {len(SERVICES) - len(frames)} of {len(SERVICES)} training frames"
    return verdict + "".join(f"\n  {name}: {'; '.join(found)}" for name, found in {**marts, **frames}.items())


def table(rows: list[dict]) -> None:
    """Markdown: per preset and profile, each stage's seconds and peak MB (driver / JVM / Python
    workers), then its seconds per million events."""
    names = list(rows[0]["stages"])
    print("| preset | profile | events | " + " | ".join(f"{name} s (MB)" for name in names) + " | total s |")
    print("|---|---|---:|" + "---:|" * (len(names) + 1))
    for row in rows:
        cells = []
        for name in names:
            stage = row["stages"][name]
            memory = f"{stage['driver_mb']:,.0f}" + (f" / {stage['jvm_mb']:,.0f}" if stage["jvm_mb"] else "")
            memory += f" / {stage['workers_mb']:,.0f}" if stage["workers_mb"] else ""
            cells.append(f"{stage['seconds']:.1f} ({memory})")
        total = sum(stage["seconds"] for stage in row["stages"].values())
        print(f"| {row['preset']} | {row['profile']} | {row['events']:,} | " + " | ".join(cells) + f" | {total:.1f} |")
    print("\nSeconds per million events:")
    for row in rows:
        per = {name: stage["seconds"] / max(row["events"], 1) * 1e6 for name, stage in row["stages"].items()}
        print(
            f"  {row['preset']} {row['profile']}: " + ", ".join(f"{name} {value:,.0f}" for name, value in per.items())
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["embedded", "distributed"], default="embedded")
    parser.add_argument("--alone", action="store_true", help="the distributed profile without its embedded twin")
    parser.add_argument("presets", nargs="*", default=["tiny", "small", "medium"])
    options = parser.parse_args()
    full = options.profile == "distributed"
    if options.alone and not full:
        parser.error("--alone runs the distributed profile without its twin: add --profile distributed")
    profiles = ["embedded", "distributed"] if full else ["embedded"]
    if options.alone:
        profiles.remove("embedded")
    rows, verdicts = [], []
    for preset in options.presets:
        rows += [run(preset, profile, full) for profile in profiles]
        if len(profiles) == 2 and preset in COMPARED:
            verdicts.append(compared(preset))
    table(rows)
    print(*verdicts, sep="\n")
    for (preset, stage), limit in TARGETS.items():
        for row in rows:
            if row["preset"] == preset and row["profile"] == "embedded":
                seconds = row["stages"][stage]["seconds"]
                verdict = "meets" if seconds <= limit else "MISSES"
                print(f"target: {preset} {stage} < {limit:.0f} s -> {seconds:.1f} s ({verdict})")
    (WORK / "scale_curve.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
