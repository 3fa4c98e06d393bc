"""Scale curve of the main job: simulate -> ingest -> dbt build -> validate per preset.

Prints, per preset, the events and impressions, and the wall time and peak memory of each stage
(each run as its own `shoprank` process, like a user would), beside the targets of the
foundation issue: small simulated in < 30 s, medium `dbt build` in < 120 s.

    python benchmarks/scale_curve.py tiny small medium [large]
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import measure  # noqa: E402

WORK = Path(__file__).resolve().parent / "work"
TARGETS = {("small", "simulate"): 30.0, ("medium", "build"): 120.0}
STAGES = {
    "simulate": lambda preset: ["simulate", "--preset", preset],
    "ingest": lambda preset: ["ingest", "landing"],
    "build": lambda preset: ["build"],
    "validate": lambda preset: ["validate"],
}


def run(preset: str) -> dict:
    workdir = WORK / preset
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    shoprank = str(Path(sys.executable).with_name("shoprank"))
    env = {**os.environ, "SHOPRANK_HOME": str(workdir)}
    row = {"preset": preset}
    for stage, args in STAGES.items():
        arguments = args(preset)
        if arguments[:1] == ["ingest"]:
            arguments = ["ingest", str(workdir / "landing")]
        measured = measure([shoprank, *arguments], env)
        row[stage] = (measured.seconds, measured.peak_mb)
        print(f"{preset} {stage}: {measured.seconds:.1f} s, {measured.peak_mb:.0f} MB", flush=True)
    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    row["events"] = con.execute("select count(*) from raw.events").fetchall()[0][0]
    row["impressions"] = con.execute("select count(*) from raw.requests").fetchall()[0][0]
    con.close()
    return row


def main(presets: list[str]) -> None:
    rows = [run(preset) for preset in presets]
    header = f"{'preset':<8}{'events':>12}{'impressions':>13}" + "".join(f"{s + ' s':>12}{'MB':>8}" for s in STAGES)
    print(header)
    for row in rows:
        cells = "".join(f"{row[s][0]:>12.1f}{row[s][1]:>8.0f}" for s in STAGES)
        print(f"{row['preset']:<8}{row['events']:>12,}{row['impressions']:>13,}{cells}")
    for (preset, stage), limit in TARGETS.items():
        for row in rows:
            if row["preset"] == preset:
                seconds = row[stage][0]
                verdict = "meets" if seconds <= limit else "MISSES"
                print(f"target: {preset} {stage} < {limit:.0f} s -> {seconds:.1f} s ({verdict})")
    (WORK / "scale_curve.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main(sys.argv[1:] or ["tiny", "small", "medium"])
