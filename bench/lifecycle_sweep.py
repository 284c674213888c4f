"""Lifecycle and video passes over a million rows: set-wise SQL against a per-row Python loop.

    python bench/lifecycle_sweep.py [--portraits 1000000] [--videos 1000000] [--json]

Lifecycle (one database, built through `Database.open` so the migrations apply):
- `--portraits` portraits, subscription ends (whole seconds) uniform over -30 ... +365 days
  around a fixed `now` (a FakeClock), lifecycle_status NULL (never computed), inserted with
  executemany in 200k-row transactions (the insert trigger marks each one dirty, as the
  platform's inserts would).
- first_pass_seconds: `engine.lifecycle.check()` at `now`: every status, every notice and its
  email job (outbox), in one engine whose connection then runs the hourly pass. Goal <= 1.0.
- per_row_first_pass_seconds: the same first pass as the per-row loop below, on a byte copy of
  the database as built; counts, statuses, notices and the mail (Message-ID, recipients,
  subject) are asserted equal. first_pass_ratio_vs_per_row = per_row / ours, goal >= 1.7 (the
  issue's 1.0 s was set where such a loop took ~1.7 s).
- hourly_pass_seconds: `engine.lifecycle.check()` at now + 3600 s: only the rows whose ends
  crossed a threshold in that hour. Goal <= 0.05. hourly_pass_median_[cpu_]seconds: the
  median of the next 5 hourly passes (+2 h ... +6 h), for the noise.
- per_row_hourly_seconds: the same hourly pass as a per-row Python loop on a byte copy of the
  database taken after the first pass (plain sqlite3, one transaction, every portrait read in
  id order, `status_for`/`notice_for` per row, one UPDATE per changed status, one INSERT per
  notice and per email job). ratio_vs_per_row = per_row / ours, goal >= 20. Both must do the
  same work: rows changed, notices, emails, the resulting statuses, notices and the
  Message-IDs of the mail are asserted equal.

Videos (a second database): portraits (ends as above) with 1-8 videos each, `--videos` in
all; one rotation mode per portrait (none/sequential/cyclic/random), 25% without start or
end, starts -30 ... +30 days around `now`, ends 1 h ... 60 days after the start.
- video_first_pass_seconds, video_hourly_pass_seconds: `engine.video.check()` at `now` and
  at now + 3600 s with the default settings, whose rotation interval is 3600 s: in that hour
  every rotating portrait activated by the first pass is due, and most rotate.
- video_per_row_hourly_seconds: that hourly pass as a per-row loop (every portrait and its
  videos, `next_video()` per due rotation, one UPDATE per change) on a copy; counts and the
  resulting status counts are asserted equal. video_ratio_vs_per_row = per_row / ours.
- video_tick_pass_seconds: the next scheduled pass (+300 s, the default interval): crossings
  and the due rotations that cannot move (sequential at its end, nothing else eligible).

`*_cpu_seconds` is this process's CPU time over the same call (all threads): steadier than
wall time on a shared machine. `load_1m` is the load average at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parseaddr
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_1m, settings

from vertex_tui.engine import Engine, FakeClock, Settings
from vertex_tui.engine.lifecycle import notice_for, status_for
from vertex_tui.engine.store import lifecycle as lstore
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.email import INSERT_JOB
from vertex_tui.engine.videos import ROTATIONS, next_video

NOW = 1_800_000_000.0
HOUR = 3600.0
DAY = 86_400.0
CHUNK = 200_000
SEED = 20_260_101
ADMIN = "admin@example.com"
EXTRA_HOURS = 5
GOALS = {
    "first_pass_seconds": ("<=", 1.0),
    # The 1.0 s was set where a per-row loop took ~1.7 s: the same ratio, measured
    # side by side here (the loop doing the same work, notices and mail included).
    "first_pass_ratio_vs_per_row": (">=", 1.7),
    "hourly_pass_seconds": ("<=", 0.05),
    "ratio_vs_per_row": (">=", 20),
}


def bench_settings(path: Path) -> Settings:
    return replace(settings(path), notify_admin_email=ADMIN)


def connect(path: Path, cache_mib: int = 0) -> sqlite3.Connection:
    """A plain connection with the engine's pragmas (WAL, synchronous=NORMAL); the build
    asks for a large page cache (random index inserts thrash SQLite's default 2 MiB)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    if cache_mib:
        conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")
    return conn


async def _migrate(path: Path) -> None:
    db = await Database.open(path)
    await db.close()


def _insert(conn: sqlite3.Connection, sql: str, rows: list[tuple[Any, ...]]) -> None:
    for start in range(0, len(rows), CHUNK):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[start:start + CHUNK])
        conn.execute("COMMIT")


def sub_end(rng: random.Random) -> float:
    return NOW + rng.randint(-30 * 86_400, 365 * 86_400)


def build_portraits(path: Path, n: int) -> float:
    t0 = time.perf_counter()
    asyncio.run(_migrate(path))
    rng = random.Random(SEED)
    rows = [(f"Portrait {i}", f"owner{i}@example.com", sub_end(rng), NOW - DAY)
            for i in range(n)]
    conn = connect(path, cache_mib=1024)
    try:
        _insert(conn, "INSERT INTO portraits (title, owner_email, subscription_end, created_at)"
                      " VALUES (?, ?, ?, ?)", rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


def build_videos(path: Path, m: int) -> tuple[float, int]:
    """Portraits with 1-8 videos each, `m` videos in all; returns (seconds, portraits)."""
    t0 = time.perf_counter()
    asyncio.run(_migrate(path))
    rng = random.Random(SEED + 1)
    portraits: list[tuple[Any, ...]] = []
    videos: list[tuple[Any, ...]] = []
    pid = 0
    while len(videos) < m:
        pid += 1
        portraits.append((pid, f"Portrait {pid}", f"owner{pid}@example.com", sub_end(rng),
                          NOW - DAY))
        rotation = rng.choice(ROTATIONS)
        for pos in range(min(rng.randint(1, 8), m - len(videos))):
            start = None if rng.random() < 0.25 else NOW + rng.uniform(-30 * DAY, 30 * DAY)
            end = None if rng.random() < 0.25 else (
                (start if start is not None else NOW - 30 * DAY) + rng.uniform(HOUR, 60 * DAY))
            videos.append((pid, f"Video {pid}.{pos}", start, end, rotation, pos, NOW - DAY))
    conn = connect(path, cache_mib=1024)
    try:
        _insert(conn, "INSERT INTO portraits (id, title, owner_email, subscription_end,"
                      " created_at) VALUES (?, ?, ?, ?, ?)", portraits)
        _insert(conn, "INSERT INTO videos (portrait_id, title, start_at, end_at, rotation,"
                      " position, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", videos)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0, pid


# ---- the engine's passes --------------------------------------------------------------------


async def timed_check(periodic: Any) -> tuple[float, float, dict[str, Any]]:
    """(wall seconds, CPU seconds, result) of one `check()`."""
    t0, c0 = time.perf_counter(), time.process_time()
    result = await periodic.check()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if result.get("status") != "ok":
        raise RuntimeError(f"{periodic.name} pass failed: {result}")
    return wall, cpu, result


async def engine_passes(path: Path, service: str, at: list[float],
                        copies: dict[int, Path]) -> list[Any]:
    """In one engine (no services started), a pass at each time of `at`; after pass i the
    database is copied to `copies[i]` (untimed; checkpointed first, so the file is whole)."""
    clock = FakeClock(at[0])
    out = []
    async with Engine(bench_settings(path), clock=clock, run=[]) as engine:
        periodic = engine.lifecycle if service == "lifecycle" else engine.video
        for i, when in enumerate(at):
            clock.set(when)
            out.append(await timed_check(periodic))
            if i in copies:
                await engine.db.write("PRAGMA wal_checkpoint(TRUNCATE)")
                shutil.copyfile(path, copies[i])
    return out


def lifecycle_counts(result: dict[str, Any]) -> dict[str, int]:
    changed = sum(n for kind in result["changes"].values() for n in kind.values())
    notices = sum(result["sent"].values()) + result["skipped"]
    return {"changed": changed, "notices": notices, "emails": result["emails"]}


def video_counts(result: dict[str, Any]) -> dict[str, int]:
    return {k: result[k] for k in ("activated", "deactivated", "rotated", "archived")}


# ---- per-row baselines ----------------------------------------------------------------------


def scan(conn: sqlite3.Connection, sql: str, batch: int = 50_000) -> Iterator[Any]:
    """Rows of `sql` (id first, `WHERE id > ?`, ordered by id, `LIMIT ?`), read in batches
    (keyset pages, so the loop's own UPDATEs never disturb an open cursor)."""
    last = 0
    while True:
        rows = conn.execute(sql, (last, batch)).fetchall()
        if not rows:
            return
        yield from rows
        last = rows[-1][0]


def period_text(end: float) -> str:
    """The period in a notice's Message-ID (store.lifecycle.PERIOD_TEXT, whole seconds)."""
    if end != int(end):
        raise ValueError("the bench builds whole-second ends")
    return str(int(end))


def per_row_lifecycle(path: Path, now: float, s: Settings) -> tuple[float, float, dict[str, int]]:
    """A lifecycle pass (the first or an hourly one), one portrait at a time, in one
    transaction."""
    domain = parseaddr(s.email_from)[1].rpartition("@")[2] or "localhost"
    headers = json.dumps({"X-Vertex-Notice": "lifecycle"})
    counts = {"changed": 0, "notices": 0, "emails": 0}
    conn = connect(path)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        conn.execute("BEGIN IMMEDIATE")
        for pid, end, status, title, owner in scan(
                conn, "SELECT id, subscription_end, lifecycle_status, title, owner_email"
                      " FROM portraits WHERE id > ? ORDER BY id LIMIT ?"):
            new = status_for(end, now)
            if new != status:
                conn.execute("UPDATE portraits SET lifecycle_status = ?, status_changed_at = ?"
                             " WHERE id = ?", (new, now, pid))
                counts["changed"] += 1
            notice = notice_for(end, now)
            if notice is None:
                continue
            kind, mailed = notice
            message_id = f"<lifecycle.portrait.{pid}.{kind}.{period_text(end)}@{domain}>"
            cur = conn.execute(
                "INSERT INTO lifecycle_notifications (entity_kind, entity_id, kind, period_end,"
                " status, message_id, created_at) VALUES ('portrait', ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (pid, kind, end, "sent" if mailed else "skipped",
                 message_id if mailed else None, now))
            if cur.rowcount != 1:
                continue
            counts["notices"] += 1
            if mailed:
                when = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
                conn.execute(INSERT_JOB, (
                    message_id, s.email_from, json.dumps([owner]), owner,
                    lstore.SUBJECTS[kind] % title, lstore.BODIES[kind] % (title, when), None,
                    headers, s.email_retry_max_attempts, now, now, now))
                counts["emails"] += 1
        conn.execute("DELETE FROM lifecycle_dirty")
        conn.execute("INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)"
                     " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                     " updated_at = excluded.updated_at", (lstore.LAST_PASS_FLAG, repr(now), now))
        conn.execute("COMMIT")
        return time.perf_counter() - t0, time.process_time() - c0, counts
    finally:
        conn.close()


def per_row_videos(path: Path, now: float, s: Settings) -> tuple[float, float, dict[str, int]]:
    """The hourly video pass, one portrait (and its videos) at a time, in one transaction."""
    archive_before = now - s.video_archive_after_hours * 3600.0
    due_before = now - float(s.video_rotation_interval)
    rand = random.Random(SEED + 2)
    counts = {"activated": 0, "deactivated": 0, "rotated": 0, "archived": 0}
    conn = connect(path)

    def set_status(vid: int, status: str, column: str) -> None:
        conn.execute(f"UPDATE videos SET status = ?, {column} = ? WHERE id = ?",
                     (status, now, vid))

    try:
        t0, c0 = time.perf_counter(), time.process_time()
        conn.execute("BEGIN IMMEDIATE")
        for pid, end in scan(conn, "SELECT id, subscription_end FROM portraits WHERE id > ?"
                                   " ORDER BY id LIMIT ?"):
            videos = [list(r) for r in conn.execute(
                "SELECT id, position, status, start_at, end_at, rotation, activated_at"
                " FROM videos WHERE portrait_id = ? ORDER BY position, id", (pid,))]
            if not videos:
                continue
            live = end is None or end > now
            for v in videos:  # deactivate: the video's end, or the subscription's, passed
                if v[2] == "active" and ((v[4] is not None and v[4] <= now) or not live):
                    set_status(v[0], "inactive", "deactivated_at")
                    v[2] = "inactive"
                    counts["deactivated"] += 1
            for v in videos:  # archive
                if v[2] in ("scheduled", "inactive") and v[4] is not None \
                        and v[4] <= archive_before:
                    set_status(v[0], "archived", "archived_at")
                    v[2] = "archived"
                    counts["archived"] += 1
            eligible = [(v[1], v[0]) for v in videos if v[2] in ("scheduled", "inactive")
                        and (v[3] is None or v[3] <= now) and (v[4] is None or v[4] > now)]
            active = next((v for v in videos if v[2] == "active"), None)
            if active is not None:
                if active[5] != "none" and active[6] <= due_before:
                    target = next_video(active[5], (active[1], active[0]), eligible, rand)
                    if target is not None:
                        set_status(active[0], "inactive", "deactivated_at")
                        set_status(target, "active", "activated_at")
                        counts["rotated"] += 1
            elif live and eligible:
                set_status(eligible[0][1], "active", "activated_at")
                counts["activated"] += 1
        if counts["activated"] + counts["deactivated"] + counts["rotated"]:
            conn.execute(INSERT_JOB, (
                f"<bench.video.{now}@example.com>", s.email_from, json.dumps([ADMIN]), ADMIN,
                f"Video schedule: {counts['activated']} activated", "(digest)", None, "{}",
                s.email_retry_max_attempts, now, now, now))
        conn.execute("DELETE FROM video_dirty")
        conn.execute("COMMIT")
        return time.perf_counter() - t0, time.process_time() - c0, counts
    finally:
        conn.close()


def table_state(path: Path, queries: list[str]) -> list[Any]:
    conn = sqlite3.connect(path)
    try:
        return [sorted(conn.execute(q).fetchall()) for q in queries]
    finally:
        conn.close()


def lifecycle_state(at: float) -> list[str]:
    """What a lifecycle pass at `at` leaves behind, for comparing two ways of doing it."""
    return [
        "SELECT lifecycle_status, count(*) FROM portraits GROUP BY 1",
        "SELECT kind, status, count(*) FROM lifecycle_notifications GROUP BY 1, 2",
        f"SELECT message_id, recipients, subject FROM email_jobs WHERE created_at = {at!r}",
    ]


VIDEO_STATE = [
    "SELECT status, count(*) FROM videos GROUP BY 1",
    "SELECT count(DISTINCT portrait_id) FROM videos WHERE status = 'active'",
]


# ---- the runs -------------------------------------------------------------------------------


def run_lifecycle(folder: Path, n: int) -> dict[str, Any]:
    path = folder / "lifecycle.db"
    per_row_db, after_hour = folder / "lifecycle-per-row.db", folder / "lifecycle-1h.db"
    before_first = folder / "lifecycle-per-row-first.db"
    build_s = build_portraits(path, n)
    shutil.copyfile(path, before_first)  # checkpointed by the build: the file is whole
    hours = [NOW + h * HOUR for h in range(2 + EXTRA_HOURS)]
    passes = asyncio.run(engine_passes(path, "lifecycle", hours,
                                       {0: per_row_db, 1: after_hour}))
    (first_s, first_cpu, first), (hourly_s, hourly_cpu, hourly) = passes[:2]
    path.unlink()
    # The first pass as a per-row loop, on the database as built: same counts, same state.
    pr_first_s, pr_first_cpu, pr_first = per_row_lifecycle(before_first, NOW,
                                                           bench_settings(before_first))
    assert lifecycle_counts(first) == pr_first, (
        f"first lifecycle passes disagree: {lifecycle_counts(first)} vs per-row {pr_first}")
    assert (table_state(per_row_db, lifecycle_state(NOW))
            == table_state(before_first, lifecycle_state(NOW))), (
        "the first lifecycle passes left different states")
    before_first.unlink()
    per_row_s, per_row_cpu, per_row = per_row_lifecycle(per_row_db, NOW + HOUR,
                                                        bench_settings(per_row_db))
    ours = lifecycle_counts(hourly)
    assert ours == per_row, f"hourly lifecycle passes disagree: {ours} vs per-row {per_row}"
    state = lifecycle_state(NOW + HOUR)
    a, b = table_state(after_hour, state), table_state(per_row_db, state)
    assert a == b, "the hourly lifecycle passes left different states"
    firsts = lifecycle_counts(first)
    return {
        "portraits": n,
        "build_seconds": build_s,
        "first_pass_seconds": first_s,
        "first_pass_cpu_seconds": first_cpu,
        "first_pass_changed": firsts["changed"],
        "first_pass_notices": firsts["notices"],
        "first_pass_emails": firsts["emails"],
        "per_row_first_pass_seconds": pr_first_s,
        "per_row_first_pass_cpu_seconds": pr_first_cpu,
        "first_pass_ratio_vs_per_row": pr_first_s / first_s,
        "first_pass_cpu_ratio_vs_per_row": pr_first_cpu / first_cpu,
        "hourly_pass_seconds": hourly_s,
        "hourly_pass_cpu_seconds": hourly_cpu,
        "hourly_pass_median_seconds": statistics.median(p[0] for p in passes[2:]),
        "hourly_pass_median_cpu_seconds": statistics.median(p[1] for p in passes[2:]),
        "per_row_hourly_seconds": per_row_s,
        "per_row_hourly_cpu_seconds": per_row_cpu,
        "ratio_vs_per_row": per_row_s / hourly_s,
        "cpu_ratio_vs_per_row": per_row_cpu / hourly_cpu,
        "hourly_changed": ours["changed"],
        "hourly_notices": ours["notices"],
        "hourly_emails": ours["emails"],
        "per_row_changed": per_row["changed"],
        "per_row_notices": per_row["notices"],
        "per_row_emails": per_row["emails"],
    }


def run_videos(folder: Path, m: int) -> dict[str, Any]:
    path = folder / "videos.db"
    per_row_db, after_hour = folder / "videos-per-row.db", folder / "videos-1h.db"
    build_s, portraits = build_videos(path, m)
    passes = asyncio.run(engine_passes(path, "video", [NOW, NOW + HOUR, NOW + HOUR + 300],
                                       {0: per_row_db, 1: after_hour}))
    (first_s, first_cpu, first), (hourly_s, hourly_cpu, hourly), (tick_s, tick_cpu, tick) = passes
    path.unlink()
    per_row_s, per_row_cpu, per_row = per_row_videos(per_row_db, NOW + HOUR,
                                                     bench_settings(per_row_db))
    ours = video_counts(hourly)
    assert ours == per_row, f"hourly video passes disagree: {ours} vs per-row {per_row}"
    a, b = table_state(after_hour, VIDEO_STATE), table_state(per_row_db, VIDEO_STATE)
    assert a == b, f"the hourly video passes left different states: {a} vs per-row {b}"
    doc: dict[str, Any] = {
        "videos": m,
        "video_portraits": portraits,
        "video_build_seconds": build_s,
        "video_first_pass_seconds": first_s,
        "video_first_pass_cpu_seconds": first_cpu,
    }
    doc.update({f"video_first_{k}": v for k, v in video_counts(first).items()})
    doc.update({
        "video_hourly_pass_seconds": hourly_s,
        "video_hourly_pass_cpu_seconds": hourly_cpu,
        "video_per_row_hourly_seconds": per_row_s,
        "video_per_row_hourly_cpu_seconds": per_row_cpu,
        "video_ratio_vs_per_row": per_row_s / hourly_s,
        "video_cpu_ratio_vs_per_row": per_row_cpu / hourly_cpu,
    })
    doc.update({f"video_hourly_{k}": v for k, v in ours.items()})
    doc.update({f"video_per_row_{k}": v for k, v in per_row.items()})
    doc["video_tick_pass_seconds"] = tick_s
    doc["video_tick_pass_cpu_seconds"] = tick_cpu
    doc.update({f"video_tick_{k}": v for k, v in video_counts(tick).items()})
    return doc


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--portraits", type=int, default=1_000_000)
    parser.add_argument("--videos", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lifecycle-sweep-") as tmp:
        folder = Path(tmp)
        doc: dict[str, Any] = {"benchmark": "lifecycle_sweep", "sqlite": sqlite3.sqlite_version,
                               "cpus": os.cpu_count()}
        doc.update(run_lifecycle(folder, args.portraits))
        doc.update(run_videos(folder, args.videos))
    doc["load_1m"] = load_1m()
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in doc.items()}
    rounded["goals_met"] = {k: (rounded[k] >= t if op == ">=" else rounded[k] <= t)
                            for k, (op, t) in GOALS.items()}
    emit(rounded, args.json, GOALS)


if __name__ == "__main__":
    main()
