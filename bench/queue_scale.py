"""The email queue with a million pending jobs: stats latency and engine memory.

    python bench/queue_scale.py [--jobs 1000000] [--db PATH] [--run-seconds 10] [--json]

- Builds a database of `--jobs` pending jobs (schema by `Database.open`, rows with the store's
  own INSERT_JOB in chunked transactions, so the status-count triggers stay exact). With
  `--db PATH` an existing database of the right size is reused, else built there and kept.
- stats_ms_at_1m: median of several `engine.email.stats()` calls (goal <= 20). Baseline:
  `SELECT status, count(*) FROM email_jobs GROUP BY status` on the same reader connection.
- rss_mb_at_1m_pending: VmRSS of a real headless engine (`python -m vertex_tui --no-ui`,
  3 workers, SMTP to a sink in another process) after `--run-seconds` of delivering over
  that database (goal <= 120). Baselines: a bare `import vertex_tui.engine` process, and the
  same headless engine over an empty database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, SENDER, emit, load_1m, message, rss_mb, settings, sink_process

from vertex_tui.engine import Engine
from vertex_tui.engine.store import email as store
from vertex_tui.engine.store.db import Database

CHUNK = 100_000
STATS_CALLS = 7
GOALS = {"stats_ms_at_1m": ("<=", 20), "rss_mb_at_1m_pending": ("<=", 120)}


# ---- the database -------------------------------------------------------------------------


def pending_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT n FROM email_status_counts WHERE status = 'pending'").fetchone()
    return int(row[0]) if row else 0


def build(path: Path, jobs: int) -> float:
    """Create the schema and insert `jobs` pending rows; returns seconds taken."""
    t0 = time.perf_counter()
    asyncio.run(_migrate(path))
    prefix = f"<{uuid.uuid4().hex}."
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        for start in range(0, jobs, CHUNK):
            rows = []
            for i in range(start, min(jobs, start + CHUNK)):
                m = message(i)
                rows.append(
                    (
                        f"{prefix}{i}@example.com>",
                        SENDER,
                        json.dumps([m["to"]]),
                        m["to"],
                        m["subject"],
                        m["body"],
                        None,
                        "{}",
                        5,
                        now,
                        now,
                        now,
                    )
                )
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(store.INSERT_JOB, rows)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


# ---- stats --------------------------------------------------------------------------------


async def stats_timing(path: Path) -> dict[str, Any]:
    async with Engine(settings(path), run=[]) as engine:
        await engine.email.stats()  # warm the page cache like a console that is open

        async def median_ms(call: Any) -> float:
            times = []
            for _ in range(STATS_CALLS):
                t0 = time.perf_counter()
                await call()
                times.append((time.perf_counter() - t0) * 1000)
            return statistics.median(times)

        db, now = engine.db, time.time()
        group_by = "SELECT status, count(*) FROM email_jobs GROUP BY status"
        parts = {
            "status_counts": lambda: store.status_counts(db),
            "oldest_pending_created": lambda: store.oldest_pending_created(db),
            "next_attempt_at": lambda: store.next_attempt_at(db),
            "sent_since": lambda: store.sent_since(db, now - 60),
            "is_paused": lambda: store.is_paused(db),
        }
        stats = await engine.email.stats()
        return {
            "pending": stats.pending,
            "stats_ms": await median_ms(engine.email.stats),
            "group_by_ms": await median_ms(lambda: db.read(group_by)),
            "parts": {name: round(await median_ms(call), 2) for name, call in parts.items()},
        }


# ---- memory -------------------------------------------------------------------------------


def engine_env(path: Path, smtp_port: int) -> dict[str, str]:
    env = dict(os.environ)
    # This checkout's vertex_tui, whatever is installed (the process runs in the db folder).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        VERTEX_DB_PATH=str(path),
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp_port),
        SMTP_STARTTLS="false",
        EMAIL_QUEUE_WORKERS="3",
        EMAIL_FROM=SENDER,
        VERTEX_STORAGE_DIR=str(path.parent / "storage"),
        VERTEX_BACKUP_DIR=str(path.parent / "backups"),
    )
    return env


def engine_rss(path: Path, smtp_port: int, seconds: float) -> tuple[float, float, int]:
    """Run a headless engine for `seconds`; returns (RSS at the end, peak RSS, jobs sent)."""
    before = sent_count(path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "vertex_tui", "--no-ui", "--log-level", "warning"],
        cwd=path.parent,
        env=engine_env(path, smtp_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak = last = 0.0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.25)
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"engine exited with {proc.returncode}: {err[-2000:]}")
            last = rss_mb(proc.pid)
            peak = max(peak, last)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return last, peak, sent_count(path) - before


def sent_count(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT n FROM email_status_counts WHERE status = 'sent'").fetchone()
    return int(row[0]) if row else 0


def bare_import_rss() -> float:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, vertex_tui.engine; print('ready', flush=True); sys.stdin.read()",
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return rss_mb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


# ---- the run ------------------------------------------------------------------------------


def run(jobs: int, db: Path | None, seconds: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vertex-scale-"))
    try:
        path = db or tmp / "scale.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        built = None
        if not (path.exists() and pending_count(path) >= jobs * 0.99):
            if path.exists():
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)
            print(f"building {path} with {jobs:,} pending jobs", file=sys.stderr)
            built = build(path, jobs)
        timing = asyncio.run(stats_timing(path))
        with sink_process() as (port, _):
            rss, peak, sent = engine_rss(path, port, seconds)
            asyncio.run(_migrate(tmp / "empty.db"))
            empty_rss, _, _ = engine_rss(tmp / "empty.db", port, min(seconds, 5.0))
        doc: dict[str, Any] = {
            "jobs_pending": timing["pending"],
            "build_s": None if built is None else round(built, 1),
            "stats_ms_at_1m": round(timing["stats_ms"], 2),
            "group_by_count_ms_at_1m": round(timing["group_by_ms"], 2),
            "speedup_vs_group_by": round(timing["group_by_ms"] / timing["stats_ms"], 1),
            "stats_parts_ms": timing["parts"],
            "rss_mb_at_1m_pending": round(rss, 1),
            "rss_mb_peak": round(peak, 1),
            "engine_sent_during_rss_run": sent,
            "rss_mb_engine_empty_db": round(empty_rss, 1),
            "rss_mb_bare_import": round(bare_import_rss(), 1),
            "load_1m": load_1m(),
        }
        return doc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--db", type=Path, help="reuse (or build and keep) this database")
    p.add_argument("--run-seconds", type=float, default=10.0)
    p.add_argument("--json", action="store_true", help="one JSON line")
    args = p.parse_args()
    doc = run(args.jobs, args.db, args.run_seconds)
    if args.json:
        emit(doc, True, GOALS)
    else:
        emit({k: v for k, v in doc.items() if not isinstance(v, dict)}, False, GOALS)
        for name, ms in doc["stats_parts_ms"].items():
            print(f"  stats part {name:<24} {ms:>10,.2f} ms")


if __name__ == "__main__":
    main()
