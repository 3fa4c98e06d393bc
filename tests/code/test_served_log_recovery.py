"""A served log's start takes over the hidden files of processes that are gone (their lock is
free), cut after their last whole line, and leaves alone those a live process writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from serving.served_log import ServedLog
from shoprank.config import Settings

WRITER = """
import sys
from datetime import datetime
from pathlib import Path
from serving.served_log import ServedLog
from shoprank.config import Settings

log = ServedLog(Settings(workdir=Path(sys.argv[1])))
log.record("r-live", datetime(2025, 9, 2, 8), "u1", "search", "shoe", "m/v1", {"item_id": ["a", "b"], "f": [1, 2]}, [1, 0])
log.flush()
print("written", flush=True)
sys.stdin.read()  # alive until killed
"""


def line(request_id: str, position: int) -> str:
    return json.dumps({"request_id": request_id, "item_id": f"i{position}", "position": position}) + "\n"


def dead_pid() -> int:
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(finished.stdout)


def hidden(settings: Settings) -> list[str]:
    return sorted(path.name for folder in folders(settings) for path in folder.glob(".*.jsonl"))


def visible(settings: Settings) -> dict[str, str]:
    return {path.name: path.read_text() for folder in folders(settings) for path in folder.glob("[!.]*.jsonl")}


def folders(settings: Settings) -> tuple[Path, Path]:
    return settings.landing / "requests", settings.workdir / "serving" / "features"


def test_files_of_dead_processes_are_made_visible_cut_after_their_last_whole_line(tmp_path):
    settings = Settings(workdir=tmp_path)
    requests, features = folders(settings)
    requests.mkdir(parents=True)
    features.mkdir(parents=True)
    stamp = f"20250902T080000-{dead_pid()}-000000001"
    (requests / f".requests-{stamp}.jsonl").write_text(line("r1", 0) + line("r1", 1) + line("r2", 0)[:20])
    vectors = json.dumps({"request_id": "r1", "items": ["i0", "i1"], "features": {"f": [1]}}) + "\n"
    (features / f".features-{stamp}.jsonl").write_text(vectors + vectors.replace("r1", "r2")[:30])  # r2: torn in both
    reused = f"20250902T080000-{os.getpid()}-000000002"  # a live pid, reused: no lock held, so no writer
    (requests / f".requests-{reused}.jsonl").write_text(line("r3", 0))
    (requests / f".requests-20250902T080000-{dead_pid()}-000000003.jsonl").write_text(line("r4", 0)[:15])
    (requests / ".requests-20250902T080000-1-000000004.jsonl").touch()  # empty: maybe just created, not yet locked

    ServedLog(settings).close()

    assert visible(settings) == {
        f"requests-{stamp}.jsonl": line("r1", 0) + line("r1", 1),
        f"features-{stamp}.jsonl": vectors,  # every line whole: parity reads whole lists only
        f"requests-{reused}.jsonl": line("r3", 0),
    }  # the file of only a torn line is gone
    assert hidden(settings) == [".requests-20250902T080000-1-000000004.jsonl"]


def test_the_files_of_a_live_writer_stay_hidden_until_it_dies(tmp_path):
    settings = Settings(workdir=tmp_path)
    command = [sys.executable, "-c", WRITER, str(tmp_path)]
    writer = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path.cwd())
    try:
        assert writer.stdout.readline() == "written\n"
        written = hidden(settings)
        assert len(written) == 2

        ServedLog(settings).close()  # another worker starting and stopping beside it
        assert hidden(settings) == written and visible(settings) == {}
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)

    ServedLog(settings).close()
    assert hidden(settings) == []
    recovered = visible(settings)
    assert sorted(recovered) == [name.removeprefix(".") for name in written]
    (requests,) = [text for name, text in recovered.items() if name.startswith("requests-")]
    rows = [json.loads(row) for row in requests.splitlines()]
    assert [(row["request_id"], row["item_id"], row["position"]) for row in rows] == [
        ("r-live", "b", 0),
        ("r-live", "a", 1),
    ]
    assert {datetime.fromisoformat(row["request_time"]) for row in rows} == {datetime(2025, 9, 2, 8)}
