"""`email enqueue --jsonl FILE` streams the file: lines are read, validated and inserted in
chunks inside one transaction, so memory stays flat whatever the file's size, and a bad line
anywhere (the last one too, after earlier chunks were inserted) stores nothing.

Real CLI processes over a real SQLite file; peak RSS is the child's own (wait4's ru_maxrss).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# Each test runs twice: on SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")

CHUNKS = 2_600  # lines: more than two chunks of the queue's 1,000-row enqueue_stream


def good_line(i: int) -> str:
    return json.dumps({"to": f"user{i}@example.com", "subject": f"hello {i}", "body": f"Hi {i}.\n"})


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def jobs(cli: Any) -> int:
    return int(cli.query("SELECT count(*) FROM email_jobs")[0][0])


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ('{"to": "x@example.com", "subject": ', "invalid JSON"),
        (json.dumps({"to": "not-an-address", "subject": "s", "body": "b"}), "not-an-address"),
        (json.dumps({"to": "x@example.com", "subject": "bell\x07", "body": "b"}), "control"),
    ],
    ids=["bad JSON", "bad address", "control character"],
)
def test_an_invalid_last_line_stores_nothing(cli: Any, tmp_path: Path, bad: str, says: str) -> None:
    cli.enqueue()  # already queued: must stay the only job
    lines = [good_line(i) for i in range(CHUNKS)] + [bad]
    path = write(tmp_path / "mail.jsonl", lines)
    message = cli.error("email", "enqueue", "--jsonl", str(path))  # exit 2, one line
    assert f"line {CHUNKS + 1}:" in message and says in message
    assert jobs(cli) == 1
    assert cli.stats()["pending"] == 1
    # the rolled-back chunks left the id sequence usable: the next enqueue works
    assert cli.ok("email", "enqueue", "--jsonl", str(write(tmp_path / "ok.jsonl", lines[:3])))
    assert jobs(cli) == 4


def test_a_valid_file_of_several_chunks_is_stored_whole(cli: Any, tmp_path: Path) -> None:
    lines = [good_line(i) for i in range(CHUNKS)]
    lines.insert(1500, "")  # blank lines are skipped
    path = write(tmp_path / "mail.jsonl", lines)
    assert cli.ok("email", "enqueue", "--jsonl", str(path)).strip() == str(CHUNKS)
    assert jobs(cli) == CHUNKS
    assert cli.stats()["pending"] == CHUNKS
    subjects = [row[0] for row in cli.query("SELECT subject FROM email_jobs ORDER BY id")]
    assert subjects == [f"hello {i}" for i in range(CHUNKS)]
    ids = [row[0] for row in cli.query("SELECT id FROM email_jobs ORDER BY id")]
    assert ids == list(range(ids[0], ids[0] + CHUNKS))


def test_a_file_that_is_not_utf8_is_bad_input(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "mail.jsonl"
    path.write_bytes(("\n".join(good_line(i) for i in range(CHUNKS)) + "\n").encode() + b"\xff\n")
    assert "not UTF-8" in cli.error("email", "enqueue", "--jsonl", str(path))
    assert jobs(cli) == 0


# Runs the CLI and reports its peak RSS (VmHWM) at exit. Not ru_maxrss from wait4: Linux
# carries the forking parent's peak (pytest's) over into the child's.
PEAK_RSS = """
import atexit, runpy, sys
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("peak_rss_kb " + line.split()[1] + "\\n")
atexit.register(peak)
sys.argv = ["vertex-tui", *sys.argv[1:]]
runpy.run_module("vertex_tui", run_name="__main__")
"""


def _peak_rss_mb(cli: Any, *args: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        env=cli.env(),
        cwd=cli.path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, (args, result.stderr)
    return int(result.stderr.split("peak_rss_kb ")[-1]) / 1024


def test_memory_stays_flat_whatever_the_file_size(cli: Any, tmp_path: Path) -> None:
    # A memory bound, not a timing: the old command held every line, message and row at
    # once (~1.3 MB per 1,000 lines: 200,000 lines took ~290 MB against ~32 MB for one line).
    small = write(tmp_path / "small.jsonl", [good_line(0)])
    big = write(tmp_path / "big.jsonl", [good_line(i) for i in range(30_000)])
    floor = _peak_rss_mb(cli, "email", "enqueue", "--jsonl", str(small))
    peak = _peak_rss_mb(cli, "email", "enqueue", "--jsonl", str(big))
    assert jobs(cli) == 30_001
    assert peak - floor < 12, (floor, peak)
