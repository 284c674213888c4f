"""Database backup speed against side-by-side baselines, all in one run.

    python bench/backup_speed.py [--mb 320] [--rounds 5] [--keep] [--with-writer] [--json]

A SQLite database of `--mb` MiB in WAL mode (the project's schema, created by opening it once
with vertex_tui's `Database`, plus a table of random blobs with an index) is built in a temp
folder; with `--keep` it is cached there and reused by the next run.

Measured, in each round, in this order (the output of each is removed before the next):

- seconds: `manager.copy_database(src, dst)`, our online backup without the check.
- verify_seconds: `manager.check_database(dst)` on that copy (integrity_check).
- sqlite3_cli_seconds: `sqlite3 SRC ".backup DST"` in a subprocess (process start included).
- cp_seconds: `cp SRC DST`, the physical limit (source file only; its WAL is empty).
- full_backup_seconds: `manager.backup_database(src, final)`: copy + check + sha256 + fsync +
  rename.

Medians over `--rounds` rounds (>= 3) are reported; ratio_vs_sqlite3_cli =
sqlite3_cli_seconds / seconds, the ratio of the medians (goal >= 0.9); ratio_median_of_rounds
is the median of the per-round ratios (each round's pair ran back to back). Both sides do the
same SQLite work (same libsqlite3, both fsync the copy at commit), so wall time is dominated by
the shared disk; cpu_seconds / sqlite3_cli_cpu_seconds (user+sys of our process / of the
sqlite3 child) are steadier under noise. The page cache is not dropped: the source is read
once before the first round so every run reads it from memory; `sync` runs (untimed) after
each output is removed so one run's writeback does not land on the next, and an untimed
`.backup` before the first round puts that round in the same state as the others.

`--with-writer` also copies a cp of the database while another process commits small write
transactions continuously, and reports the copy's time, integrity_check, whether it is a
consistent snapshot (a counter row equals the number of rows written by the same
transactions), and how many commits the writer made during the copy and its longest stall.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, emit, round_floats

from vertex_tui.engine.backup import manager
from vertex_tui.engine.store.db import Database

GOALS = {"ratio_vs_sqlite3_cli": (">=", 0.9)}
MiB = 1 << 20
BATCH_BYTES = 32 * MiB  # one transaction per ~32 MiB of blobs while building

WRITER = r"""
import json, sqlite3, sys, time
from pathlib import Path
db, stop = sys.argv[1], Path(sys.argv[2])
conn = sqlite3.connect(db, isolation_level=None, timeout=30)
conn.execute("PRAGMA busy_timeout=30000")
conn.execute("PRAGMA synchronous=NORMAL")
stamps = []
print("writing", flush=True)
while not stop.exists():
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO bench_writer (data) VALUES (randomblob(2000))")
    conn.execute("UPDATE bench_counter SET n = n + 1 WHERE id = 1")
    conn.execute("COMMIT")
    stamps.append(time.time())
conn.close()
print(json.dumps(stamps), flush=True)
"""


# ---- building the database ------------------------------------------------------------------


def build(path: Path, mb: int) -> None:
    for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        p.unlink(missing_ok=True)

    async def schema() -> None:
        db = await Database.open(path)
        await db.close()

    asyncio.run(schema())
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("CREATE TABLE bench_blobs (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                     " data BLOB NOT NULL)")
        conn.execute("CREATE INDEX bench_blobs_name ON bench_blobs (name)")
        rng = random.Random(1)
        target, i = mb * MiB, 0
        while (have := path.stat().st_size + _wal_size(path)) < target:
            rows, batch = [], 0
            limit = min(BATCH_BYTES, max(MiB, (target - have) * 3 // 4))  # rows carry overhead
            while batch < limit:
                size = rng.randint(200, 4000)
                rows.append((i, f"item-{rng.getrandbits(64):016x}", os.urandom(size)))
                batch += size + 40
                i += 1
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO bench_blobs VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def usable(path: Path, mb: int) -> bool:
    """A cached database from an earlier `--keep` run that can be reused as it is."""
    try:
        with path.open("rb") as fh:
            header = fh.read(20)
    except OSError:
        return False
    return (header[:16] == b"SQLite format 3\x00" and header[18:20] == b"\x02\x02"
            and path.stat().st_size >= mb * MiB and _wal_size(path) == 0)


def read_once(path: Path) -> None:
    with path.open("rb") as fh:
        while fh.read(8 * MiB):
            pass


# ---- the timed runs -------------------------------------------------------------------------


def clean(*paths: Path) -> None:
    for p in paths:
        for q in (p, Path(f"{p}-journal"), Path(f"{p}-wal"), Path(f"{p}-shm")):
            if q.is_dir():
                shutil.rmtree(q)
            else:
                q.unlink(missing_ok=True)
    os.sync()


def timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run_cmd(args: list[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)


def cpu(who: int) -> float:
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def one_round(src: Path, out: Path) -> dict[str, float]:
    dst = out / "ours.db"
    r: dict[str, float] = {}
    c0 = cpu(resource.RUSAGE_SELF)
    r["seconds"] = timed(lambda: manager.copy_database(src, dst))
    r["cpu_seconds"] = cpu(resource.RUSAGE_SELF) - c0
    problem: list[str | None] = []
    r["verify_seconds"] = timed(lambda: problem.append(manager.check_database(dst)))
    if problem[0] is not None:
        raise SystemExit(f"our copy failed its check: {problem[0]}")
    clean(dst)
    cli = out / "cli.db"
    c0 = cpu(resource.RUSAGE_CHILDREN)
    r["sqlite3_cli_seconds"] = timed(lambda: run_cmd(["sqlite3", str(src), f".backup {cli}"]))
    r["sqlite3_cli_cpu_seconds"] = cpu(resource.RUSAGE_CHILDREN) - c0
    clean(cli)
    cp = out / "cp.db"
    r["cp_seconds"] = timed(lambda: run_cmd(["cp", str(src), str(cp)]))
    clean(cp)
    final = out / "full" / "database-bench.db"
    r["full_backup_seconds"] = timed(lambda: manager.backup_database(src, final))
    clean(final.parent)
    return r


# ---- copy under a concurrent writer ---------------------------------------------------------


def writer_check(src: Path, out: Path) -> dict[str, Any]:
    db = out / "concurrent.db"
    copy = out / "concurrent-copy.db"
    stop = out / "writer.stop"
    clean(db, copy, stop)
    run_cmd(["cp", str(src), str(db)])
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript("CREATE TABLE bench_writer (id INTEGER PRIMARY KEY, data BLOB);"
                       "CREATE TABLE bench_counter (id INTEGER PRIMARY KEY, n INTEGER);"
                       "INSERT INTO bench_counter VALUES (1, 0);")
    conn.close()
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(stop)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "writing":
            raise SystemExit("writer did not start")
        time.sleep(0.3)
        t0 = time.time()
        seconds = manager.copy_database(db, copy)
        t1 = time.time()
        time.sleep(0.3)
        stop.touch()
        stamps = json.loads(proc.stdout.readline())
    finally:
        stop.touch()
        proc.wait(60)
    problem = manager.check_database(copy)
    c = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        rows = c.execute("SELECT count(*) FROM bench_writer").fetchone()[0]
        counter = c.execute("SELECT n FROM bench_counter").fetchone()[0]
        journal = c.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        c.close()
    during = [s for s in stamps if t0 <= s <= t1]
    edges = [t0, *during, t1]
    clean(db, copy, stop)
    return {
        "concurrent_copy_seconds": seconds,
        "concurrent_copy_integrity": problem or "ok",
        "concurrent_copy_consistent": rows == counter,
        "concurrent_copy_rows_in_snapshot": rows,
        "concurrent_copy_journal_mode": journal,
        "writer_commits_during_copy": len(during),
        "writer_commits_total": len(stamps),
        "writer_max_stall_ms": max(b - a for a, b in itertools.pairwise(edges)) * 1000,
    }


# ---- main -----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=320, help="database size in MiB (default 320)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (>= 3)")
    ap.add_argument("--keep", action="store_true",
                    help="cache the database in the temp folder and reuse it next time")
    ap.add_argument("--with-writer", action="store_true",
                    help="also copy while another process writes continuously")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()
    rounds = max(3, args.rounds)

    base = Path(tempfile.gettempdir())
    if args.keep:
        work = base / "vertex-bench-backup"
        work.mkdir(exist_ok=True, mode=0o700)
    else:
        work = Path(tempfile.mkdtemp(prefix="vertex-bench-backup-"))
    src = work / f"src-{args.mb}mb.db"
    out = work / "out"
    try:
        t0 = time.perf_counter()
        rebuilt = not (args.keep and usable(src, args.mb))
        if rebuilt:
            build(src, args.mb)
        build_seconds = time.perf_counter() - t0
        if out.exists():
            shutil.rmtree(out)
        out.mkdir()
        read_once(src)
        # Untimed: every timed run, the first included, follows the removal of a copy that
        # reached the disk (on a `discard` mount that removal costs the next run's I/O).
        warm = out / "warm.db"
        run_cmd(["sqlite3", str(src), f".backup {warm}"])
        clean(warm)
        runs = [one_round(src, out) for _ in range(rounds)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        paired = [r["sqlite3_cli_seconds"] / r["seconds"] for r in runs]
        doc: dict[str, Any] = {
            "db_mb": round(src.stat().st_size / MiB, 1),
            "seconds": med["seconds"],
            "verify_seconds": med["verify_seconds"],
            "full_backup_seconds": med["full_backup_seconds"],
            "sqlite3_cli_seconds": med["sqlite3_cli_seconds"],
            "cp_seconds": med["cp_seconds"],
            "ratio_vs_sqlite3_cli": med["sqlite3_cli_seconds"] / med["seconds"],
            "ratio_vs_cp": med["cp_seconds"] / med["seconds"],
            "rounds": rounds,
            "ratio_median_of_rounds": statistics.median(paired),
            "ratio_per_round": [round(x, 3) for x in paired],
            "cpu_seconds": med["cpu_seconds"],
            "sqlite3_cli_cpu_seconds": med["sqlite3_cli_cpu_seconds"],
            "cpu_ratio_vs_sqlite3_cli": med["sqlite3_cli_cpu_seconds"] / med["cpu_seconds"],
            "seconds_per_round": [round(r["seconds"], 3) for r in runs],
            "sqlite3_cli_per_round": [round(r["sqlite3_cli_seconds"], 3) for r in runs],
            "step_pages": manager.STEP_PAGES,
            "sqlite_version": sqlite3.sqlite_version,
            "built_seconds" if rebuilt else "reused_cached_db": (
                round(build_seconds, 1) if rebuilt else str(src)),
        }
        if args.with_writer:
            doc.update(writer_check(src, out))
        emit(round_floats(doc, 3), args.json, GOALS)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
