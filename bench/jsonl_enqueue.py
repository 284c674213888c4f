"""Peak memory of `vertex-tui email enqueue --jsonl FILE`: flat whatever the file's size?

    python bench/jsonl_enqueue.py [--lines 200000] [--baseline-lines 20000] [--json]

Each run is a real CLI process (`vertex_tui` run as `python -m vertex_tui` would, `email enqueue
--jsonl FILE`) over a fresh database in a temp folder; it reports its own peak RSS (VmHWM) at
exit. (Not ru_maxrss from wait4: Linux carries the forking parent's peak into the child's.)

- jsonl_enqueue_rss_mb: peak RSS enqueuing `--lines` messages (200,000: the issue measured
  281 MB before streaming).
- jsonl_enqueue_rss_mb_baseline: the same for `--baseline-lines` (20,000), run side by side.
- jsonl_rss_ratio: the two divided (goal <= 1.2: flat; 10x the lines may not cost 10x memory).
- rss_mb_one_message: `email enqueue --to/--subject/--body` (one message): the CLI's floor.
- jsonl_enqueue_lines_per_s: lines stored per second on the big file (context, not a goal).
- jsonl_bad_last_line_rss_mb: the big file with an invalid last line (exit 2, nothing stored).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emit, load_1m, message, round_floats

GOALS = {"jsonl_rss_ratio": ("<=", 1.2)}


def write_jsonl(path: Path, lines: int, *, bad_last: bool = False) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(json.dumps(message(i)) + "\n")
        if bad_last:
            f.write('{"to": "x@example.com", "subject": \n')


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


def run_cli(folder: Path, *args: str) -> tuple[int, float, float, str]:
    """(exit code, peak RSS MiB, seconds, stdout) of one CLI process over folder/v.db."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VERTEX_", "SMTP_", "EMAIL_"))}
    env["VERTEX_DB_PATH"] = str(folder / "v.db")
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - t0
    if result.returncode not in (0, 2) or "peak_rss_kb " not in result.stderr:
        raise RuntimeError(f"{args}: exit {result.returncode}: {result.stderr[-500:]}")
    peak = int(result.stderr.split("peak_rss_kb ")[-1]) / 1024
    return result.returncode, peak, seconds, result.stdout.strip()


def enqueue(lines: int, *, bad_last: bool = False) -> tuple[int, float, float, str]:
    with tempfile.TemporaryDirectory(prefix="vertex-jsonl-") as tmp:
        folder = Path(tmp)
        path = folder / "mail.jsonl"
        write_jsonl(path, lines, bad_last=bad_last)
        return run_cli(folder, "email", "enqueue", "--jsonl", str(path))


def run(lines: int, baseline_lines: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vertex-jsonl-") as tmp:
        code, one_rss, _, _ = run_cli(
            Path(tmp), "email", "enqueue", "--to", "a@example.com", "--subject", "s", "--body", "b"
        )
        assert code == 0
    code, base_rss, _, out = enqueue(baseline_lines)
    assert code == 0 and out == str(baseline_lines), (code, out)
    code, big_rss, seconds, out = enqueue(lines)
    assert code == 0 and out == str(lines), (code, out)
    code, bad_rss, _, _ = enqueue(lines, bad_last=True)
    assert code == 2, code
    return round_floats(
        {
            "jsonl_lines": lines,
            "jsonl_enqueue_rss_mb": big_rss,
            "jsonl_baseline_lines": baseline_lines,
            "jsonl_enqueue_rss_mb_baseline": base_rss,
            "jsonl_rss_ratio": big_rss / base_rss,
            "rss_mb_one_message": one_rss,
            "jsonl_enqueue_lines_per_s": lines / seconds,
            "jsonl_bad_last_line_rss_mb": bad_rss,
            "load_1m": load_1m(),
        }
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=200_000)
    p.add_argument("--baseline-lines", type=int, default=20_000)
    p.add_argument("--json", action="store_true", help="one JSON line")
    args = p.parse_args()
    emit(run(args.lines, args.baseline_lines), args.json, GOALS)


if __name__ == "__main__":
    assert ROOT.is_dir()
    main()
