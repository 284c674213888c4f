"""The email queue on PostgreSQL against side-by-side baselines, in one run.

    python bench/pg_queue.py [--n 5000] [--rounds 3] [--workers 3] [--stats-rows 1000000]
        [--json]

One throwaway PostgreSQL cluster (`vertex_tui.testing.pgserver`: Debian's binaries, ports
55550-55599, data under /tmp/pgmail-bench-*, fsync off as the test cluster has; or
VERTEX_TEST_DATABASE_URL). Every queue runs in separate OS processes (children of this
script), never in the measuring process:

- null_transport_jobs_per_s_pg_1proc / _pg_2proc: N jobs enqueued (untimed) with a due
  time in the future; 1 or 2 engine processes (email service only, `--workers` workers each,
  NullTransport) start and go idle; then every job is made due at T (1.5 s ahead, so each
  idle worker has read it: they sleep exactly until the next due time). Rate = N / (last
  `finished_at` - T). `null_transport_jobs_per_s` is the 1-process figure.
- null_transport_jobs_per_s_sqlite: the same with one engine process on a SQLite file;
  ratio_pg_vs_sqlite = pg_1proc / sqlite (per round, median).
- procrastinate_noop_jobs_per_s_1proc / _2proc: procrastinate (PyPI) on the same server, its
  own schema in a database of its own, N async no-op tasks deferred beforehand with
  `schedule_at` in the future, 1 or 2 worker processes of `--workers` concurrency
  (fetch polling 0.05 s, so they start within 50 ms of T), then every job made due at T.
  Rate = N / (last 'succeeded' event - T). ratio_vs_procrastinate = pg / procrastinate at
  the same process and worker count (1 process; the 2-process ratio is reported beside it).
- claim_duplicates: 8 claimers (separate connections) take 4,000 jobs with the engine's
  claim: jobs handed out more than once (goal 0). naive_claim_duplicates /
  naive_claim_deadlocks: the SQLite claim ported as it is, same harness (why the claim is
  what it is).
- stats_ms_at_1m: `engine.email.stats()` (counts, oldest pending, next due, sent in the
  last minute, paused) on a database of `--stats-rows` jobs (90 % sent over the last day,
  10 % pending; ANALYZEd, count deltas folded as the housekeeper keeps them): median of 30.

The four throughput measurements run in turn, their order rotating between rounds (the load
of a shared machine drifts); medians reported, ratios as medians of per-round ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg
from _common import ROOT, emit, load_1m, message, round_floats, settings

from vertex_tui.engine import Engine
from vertex_tui.engine.email.transport import NullTransport
from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.settings import DatabaseUrl, Settings
from vertex_tui.engine.store import email as email_store
from vertex_tui.engine.store import status_counts
from vertex_tui.engine.store.pg import PgDatabase
from vertex_tui.testing.pgserver import PgServer

PORTS = (55550, 55599)
LEAD = 1.5  # seconds from "all idle" to the due time T (longer than the engines' poll)
CLAIMERS = 8
GOALS = {
    "ratio_vs_procrastinate": (">=", 2),
    "claim_duplicates": ("<=", 0),
    "stats_ms_at_1m": ("<=", 20),
}
NAIVE_CLAIM = (
    "UPDATE email_jobs SET status = 'sending', attempts = attempts + 1, lease_owner = ?,"
    " lease_expires_at = ?, updated_at = ?"
    " WHERE id IN (SELECT id FROM email_jobs WHERE status = 'pending' AND next_attempt_at <= ?"
    " ORDER BY next_attempt_at LIMIT ?) RETURNING id"
)


# ---- children (one engine or one procrastinate worker per process) ------------------------


def target_settings(target: str, workers: int) -> Settings:
    """Settings for a PostgreSQL URL or a SQLite file path."""
    if target.startswith("postgresql://"):
        base = settings(Path(tempfile.gettempdir()) / "pgmail-bench-unused.db", workers=workers)
        return dataclasses.replace(base, database_url=DatabaseUrl(target))
    return settings(Path(target), workers=workers)


async def _until_stdin_closes() -> None:
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def engine_child(target: str, workers: int) -> None:
    async with Engine(target_settings(target, workers), run=["email"],
                      transport_factory=NullTransport):
        print("ready", flush=True)
        await _until_stdin_closes()


def procrastinate_app(url: str) -> Any:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    return app


async def procrastinate_child(url: str, workers: int) -> None:
    app = procrastinate_app(url)
    async with app.open_async():
        worker = asyncio.create_task(app.run_worker_async(
            concurrency=workers, fetch_job_polling_interval=0.05, install_signal_handlers=False,
            update_heartbeat_interval=10.0))
        await asyncio.sleep(0.5)
        print("ready", flush=True)
        await _until_stdin_closes()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


def start_children(argv: list[str], count: int) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen([sys.executable, __file__, *argv], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE) for _ in range(count)]
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if "ready" not in line:
            stop_children(procs)
            raise RuntimeError(f"child {argv[0]} did not start: {line!r}")
    return procs


def stop_children(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.stdin is not None:
            proc.stdin.close()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- throughput -----------------------------------------------------------------------------


def wait_done(count: Callable[[], int], n: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while count() < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {count()} of {n} jobs done after {timeout} s")
        time.sleep(0.05)


class Sqlish:
    """A plain connection to run the bench's own setup SQL on either database."""

    def __init__(self, target: str) -> None:
        self.pg = target.startswith("postgresql://")
        if self.pg:
            self.conn: Any = psycopg.connect(target, autocommit=True)
        else:
            import sqlite3

            self.conn = sqlite3.connect(target, timeout=60, isolation_level=None)

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        if self.pg:
            sql = sql.replace("?", "%s")
        return self.conn.execute(sql, params).fetchone()

    def close(self) -> None:
        self.conn.close()


async def enqueue(target: str, n: int) -> None:
    async with Engine(target_settings(target, 1), run=[]) as admin:
        ids = await admin.email.enqueue_many([message(i) for i in range(n)])
    assert len(ids) == n


def engine_rate(target: str, procs: int, n: int, workers: int) -> float:
    asyncio.run(enqueue(target, n))
    db = Sqlish(target)
    try:
        db.one("UPDATE email_jobs SET next_attempt_at = ? RETURNING 1", (time.time() + 3600,))
        children = start_children(["--engine-child", target, "--workers", str(workers)], procs)
        try:
            due = time.time() + LEAD
            db.one("UPDATE email_jobs SET next_attempt_at = ? RETURNING 1", (due,))
            wait_done(lambda: int(db.one(
                "SELECT count(*) FROM email_jobs WHERE status = 'sent'")[0]), n)
            last = float(db.one("SELECT max(finished_at) FROM email_jobs")[0])
        finally:
            stop_children(children)
    finally:
        db.close()
    return n / (last - due)


def procrastinate_rate(url: str, procs: int, n: int, workers: int) -> float:
    app = procrastinate_app(url)

    async def setup() -> None:
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            task = app.tasks["noop"]
            far = time.time() + 3600
            from datetime import UTC, datetime

            deferrer = task.configure(schedule_at=datetime.fromtimestamp(far, UTC))
            for start in range(0, n, 1000):
                await deferrer.batch_defer_async(*[{} for _ in range(min(1000, n - start))])

    asyncio.run(setup())
    db = Sqlish(url)
    try:
        children = start_children(["--procrastinate-child", url, "--workers", str(workers)],
                                  procs)
        try:
            due = time.time() + LEAD
            db.one("UPDATE procrastinate_jobs SET scheduled_at = to_timestamp(?) RETURNING 1",
                   (due,))
            wait_done(lambda: int(db.one(
                "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")[0]), n)
            last = float(db.one("SELECT extract(epoch FROM max(at)) FROM procrastinate_events"
                                " WHERE type = 'succeeded'")[0])
        finally:
            stop_children(children)
    finally:
        db.close()
    return n / (last - due)


# ---- claims and stats -------------------------------------------------------------------------


async def claim_duplicates(url: str, naive: bool, jobs: int = 4000) -> tuple[int, int]:
    """(jobs handed out more than once, claims that died in a deadlock) under 8 claimers."""
    await enqueue(url, jobs)
    got: Counter[int] = Counter()
    deadlocks = 0
    dbs = [await PgDatabase.open(url, migrate=False, pool_size=2) for _ in range(CLAIMERS)]

    async def claimer(db: PgDatabase, owner: str) -> None:
        nonlocal deadlocks
        while True:
            now = time.time()
            if naive:
                try:
                    batch = [int(r[0]) for r in await db.write(
                        NAIVE_CLAIM, (owner, now + 60, now, now, 16))]
                except StoreError:
                    deadlocks += 1
                    continue
            else:
                batch = [j.id for j in await email_store.claim(
                    db, owner=owner, now=now, lease_until=now + 60, limit=16)]
            if not batch:
                return
            got.update(batch)

    try:
        await asyncio.gather(*(claimer(db, f"c{i}") for i, db in enumerate(dbs)))
    finally:
        for db in dbs:
            await db.close()
    if len(got) != jobs:
        raise RuntimeError(f"claimed {len(got)} distinct jobs of {jobs}")
    return sum(1 for n in got.values() if n > 1), deadlocks


def fill_for_stats(url: str, rows: int) -> None:
    """`rows` jobs: 90 % sent over the last day, 10 % pending; ANALYZE; deltas folded."""
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject, body,"
            " headers, status, attempts, max_attempts, created_at, updated_at, next_attempt_at,"
            " finished_at)"
            " SELECT '<b' || i || '@bench>', 's@bench', '[\"u@bench\"]', 'u' || i || '@bench',"
            " 'Your order #' || i, 'body', '{}',"
            " CASE WHEN i %% 10 = 0 THEN 'pending' ELSE 'sent' END, 1, 5,"
            " %(now)s - 86400 + i * 86400.0 / %(rows)s, %(now)s, %(now)s,"
            " CASE WHEN i %% 10 = 0 THEN NULL ELSE %(now)s - 86400 + i * 86400.0 / %(rows)s END"
            " FROM generate_series(1, %(rows)s) AS i",
            {"now": now, "rows": rows})
        conn.execute("ANALYZE email_jobs")


async def stats_ms(url: str, repeat: int = 30) -> float:
    async with Engine(target_settings(url, 1), run=[]) as engine:
        await status_counts.compact(engine.db)
        for _ in range(3):
            await engine.email.stats()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await engine.email.stats()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


# ---- the run --------------------------------------------------------------------------------


def run(n: int, rounds: int, workers: int, stats_rows: int) -> dict[str, Any]:
    server = PgServer.start(prefix="pgmail-bench-", ports=PORTS)
    results: dict[str, list[float]] = {k: [] for k in ("pg1", "pg2", "sqlite", "pc1", "pc2")}

    def pg(procs: int) -> float:
        url = server.database()
        try:
            return engine_rate(url, procs, n, workers)
        finally:
            server.drop(url)

    def pc(procs: int) -> float:
        url = server.database(migrated=False)
        try:
            return procrastinate_rate(url, procs, n, workers)
        finally:
            server.drop(url)

    def lite() -> float:
        with tempfile.TemporaryDirectory(prefix="pgmail-bench-") as tmp:
            return engine_rate(str(Path(tmp) / "q.db"), 1, n, workers)

    steps: list[tuple[str, Callable[[], float]]] = [
        ("pg1", lambda: pg(1)), ("pc1", lambda: pc(1)), ("sqlite", lite),
        ("pg2", lambda: pg(2)), ("pc2", lambda: pc(2))]
    try:
        for r in range(rounds):
            order = steps[r % len(steps):] + steps[:r % len(steps)]
            for key, step in order:
                results[key].append(step())
            print(f"round {r + 1}: " + " ".join(f"{k} {v[-1]:,.0f}/s" for k, v in
                                               results.items()), file=sys.stderr, flush=True)
        url = server.database()
        try:
            dups, _ = asyncio.run(claim_duplicates(url, naive=False))
        finally:
            server.drop(url)
        url = server.database()
        try:
            naive_dups, naive_deadlocks = asyncio.run(claim_duplicates(url, naive=True))
        finally:
            server.drop(url)
        url = server.database()
        try:
            fill_for_stats(url, stats_rows)
            stats = asyncio.run(stats_ms(url))
        finally:
            server.drop(url)
    finally:
        server.stop()
    med = statistics.median
    per_round = list(zip(results["pg1"], results["sqlite"], results["pc1"], results["pg2"],
                         results["pc2"], strict=True))
    return round_floats({
        "n": n,
        "rounds": rounds,
        "workers_per_process": workers,
        "null_transport_jobs_per_s": med(results["pg1"]),
        "null_transport_jobs_per_s_pg_1proc": med(results["pg1"]),
        "null_transport_jobs_per_s_pg_2proc": med(results["pg2"]),
        "null_transport_jobs_per_s_sqlite": med(results["sqlite"]),
        "ratio_pg_vs_sqlite": med(p / s for p, s, _, _, _ in per_round),
        "procrastinate_noop_jobs_per_s_1proc": med(results["pc1"]),
        "procrastinate_noop_jobs_per_s_2proc": med(results["pc2"]),
        "ratio_vs_procrastinate": med(p / c for p, _, c, _, _ in per_round),
        "ratio_vs_procrastinate_2proc": med(p / c for _, _, _, p, c in per_round),
        "claim_duplicates": dups,
        "naive_claim_duplicates": naive_dups,
        "naive_claim_deadlocks": naive_deadlocks,
        "stats_rows": stats_rows,
        "stats_ms_at_1m": stats,
        "load_1m": load_1m(),
    }, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=5_000, help="jobs per throughput measurement")
    p.add_argument("--rounds", type=int, default=3, help="rotating rounds (median)")
    p.add_argument("--workers", type=int, default=3, help="workers per process (both sides)")
    p.add_argument("--stats-rows", type=int, default=1_000_000, help="jobs for stats_ms_at_1m")
    p.add_argument("--json", action="store_true", help="one JSON line")
    p.add_argument("--engine-child", metavar="TARGET", help=argparse.SUPPRESS)
    p.add_argument("--procrastinate-child", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.engine_child:
        asyncio.run(engine_child(args.engine_child, args.workers))
        return
    if args.procrastinate_child:
        asyncio.run(procrastinate_child(args.procrastinate_child, args.workers))
        return
    emit(run(args.n, args.rounds, args.workers, args.stats_rows), args.json, GOALS)


if __name__ == "__main__":
    main()
