"""An SMTP relay outage in the middle of a queue: engine CPU while it lasts, and recovery.

    python bench/smtp_outage.py [--n 2000] [--outage 25] [--cpu-window 20] [--json]

A real engine (`python -m vertex_tui --no-ui`, its own process, default settings but the
relay's address) delivers to a sink in another process (`python -m vertex_tui.sink`):

- baseline_drain_seconds: `--n` pending jobs, relay up all along: engine start -> all sent.
- idle_cpu_percent: that engine with nothing to do, over `--cpu-window` s (baseline).
- outage: `--n` + 100 jobs; once 100 are sent the sink is killed (SIGKILL). After 3 s of
  settling, outage_cpu_percent is the engine's CPU (user + system from /proc/<pid>/stat,
  every thread) over `--cpu-window` s of wall time (goal <= 5). The outage lasts `--outage` s.
- outage_recovery_seconds: a new sink on the same port -> the remaining `--n` jobs all sent.
  It includes the wait for the engine's next probe (backoff 1 s doubling to 60 s, jittered:
  after a 25 s outage the next probe is at most ~16-32 s away); reconnect_to_drained_seconds
  is the part after the first message reached the new sink.
- outage_failed_jobs: jobs `failed` at the end (goal 0); outage_max_attempts: the most
  attempts any job was charged; outage_log_lines: lines the engine logged from the kill to
  the end of the drain.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emit, free_port, load_1m, message, round_floats, sink_process

GOALS = {"outage_cpu_percent": ("<=", 5.0), "outage_failed_jobs": ("<=", 0)}
TICKS = os.sysconf("SC_CLK_TCK")


def enqueue(db_path: Path, n: int) -> None:
    import asyncio

    from _common import settings

    from vertex_tui.engine import Engine

    async def go() -> None:
        async with Engine(settings(db_path), run=[]) as engine:
            await engine.email.enqueue_many(message(i) for i in range(n))

    asyncio.run(go())


def query(db_path: Path, sql: str) -> Any:
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True,
                                            timeout=30)) as conn:
        return conn.execute(sql).fetchone()[0]


def sent(db_path: Path) -> int:
    return int(query(db_path, "SELECT n FROM email_status_counts WHERE status = 'sent'"))


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (all threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def cpu_percent(pid: int, window: float) -> float:
    cpu0, t0 = cpu_of(pid), time.monotonic()
    time.sleep(window)
    return (cpu_of(pid) - cpu0) / (time.monotonic() - t0) * 100


@contextlib.contextmanager
def engine_process(db_path: Path, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("VERTEX_", "SMTP_", "EMAIL_", "BACKUP_", "LIFECYCLE_",
                                "VIDEO_", "METRICS_", "NOTIFY_"))}
    env.update({"VERTEX_DB_PATH": str(db_path), "VERTEX_STORAGE_DIR": str(db_path.parent / "s"),
                "VERTEX_BACKUP_DIR": str(db_path.parent / "b"), "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(port), "SMTP_STARTTLS": "false",
                "EMAIL_FROM": "Bench <bench@example.com>"})
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "vertex_tui", "--no-ui"], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=out)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_sent(db_path: Path, count: int, timeout: float) -> float:
    """Seconds until `count` jobs are sent (polled every 50 ms)."""
    t0 = time.monotonic()
    while sent(db_path) < count:
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"only {sent(db_path)} of {count} sent after {timeout:g} s")
        time.sleep(0.05)
    return time.monotonic() - t0


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def run(n: int, outage: float, window: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vertex-bench-") as tmp:
        folder = Path(tmp)
        # Baseline: the same engine, relay up all along.
        base_db = folder / "base.db"
        enqueue(base_db, n)
        with sink_process() as (port, _), engine_process(base_db, port, folder / "base.log") as p:
            baseline = wait_sent(base_db, n, 600)
            idle = cpu_percent(p.pid, window)

        db = folder / "outage.db"
        head = 100
        enqueue(db, n + head)
        port = free_port()
        log = folder / "outage.log"
        with contextlib.ExitStack() as stack:
            _, sink = stack.enter_context(sink_process(port))
            proc = stack.enter_context(engine_process(db, port, log))
            wait_sent(db, head, 600)
            sink.kill()  # the relay dies mid-queue
            sink.wait()
            killed_at = time.monotonic()
            log_before = lines(log)
            time.sleep(3)
            busy = cpu_percent(proc.pid, window)
            time.sleep(max(0.0, outage - (time.monotonic() - killed_at)))
            before = sent(db)
            with sink_process(port):
                back = time.monotonic()
                while sent(db) == before:
                    time.sleep(0.05)
                reconnected = time.monotonic()
                wait_sent(db, n + head, 600)
                drained = time.monotonic()
            failed = int(query(db, "SELECT n FROM email_status_counts WHERE status = 'failed'"))
            max_attempts = int(query(db, "SELECT max(attempts) FROM email_jobs"))
            log_lines = lines(log) - log_before
    return round_floats({
        "n": n,
        "outage_seconds": outage,
        "cpu_window_seconds": window,
        "baseline_drain_seconds": baseline,
        "idle_cpu_percent": idle,
        "outage_cpu_percent": busy,
        "outage_recovery_seconds": drained - back,
        "reconnect_to_drained_seconds": drained - reconnected,
        "outage_failed_jobs": failed,
        "outage_max_attempts": max_attempts,
        "outage_log_lines": log_lines,
        "load_1m": load_1m(),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--outage", type=float, default=25.0)
    parser.add_argument("--cpu-window", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    emit(run(args.n, args.outage, args.cpu_window), args.json, GOALS)


if __name__ == "__main__":
    main()
