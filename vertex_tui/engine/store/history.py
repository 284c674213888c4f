"""SQL of the email history rollup (`email_history`, migration 0009).

`compute` does the set work for a whole range of buckets in one statement: counts grouped by
bucket from `email_jobs` (created, finished) and `email_attempts` (retries), and exact
nearest-rank p50/p95 latencies with a window function (row_number over each bucket's sorted
latencies). `upsert` is idempotent, so two engines rolling the same minute write the same row.
PostgreSQL has its own text of `compute` (the same result; see `_COMPUTE_PG`).
"""

from __future__ import annotations

from collections.abc import Sequence

from vertex_tui.engine.email.history import Bucket
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.dialect import Sql

# Both dialects: every bucket where something happened, its counts side by side.
_JOIN = """
keys AS (SELECT b FROM enq UNION SELECT b FROM fin UNION SELECT b FROM ret
         UNION SELECT b FROM dep)
SELECT keys.b, coalesce(enq.n, 0), coalesce(fin.sent, 0), coalesce(fin.failed, 0),
       coalesce(ret.n, 0), pct.p50, pct.p95, dep.depth
FROM keys LEFT JOIN enq USING (b) LEFT JOIN fin USING (b) LEFT JOIN ret USING (b)
          LEFT JOIN pct USING (b) LEFT JOIN dep USING (b)
ORDER BY keys.b
"""

# PostgreSQL: floor(...)::bigint for CAST(... AS INTEGER) (PostgreSQL rounds; the values are
# never negative, so floor is SQLite's truncation), floor(x + 0.5) for SQLite's round() (half
# away from zero; PostgreSQL's round(double) is half to even), FILTER for sum(boolean),
# greatest for the two-argument max, DISTINCT ON for SQLite's bare column of max(), aliases
# on subqueries, no INDEXED BY.
_COMPUTE_PG = """
WITH
enq AS (
    SELECT floor((created_at - :s) / :g)::bigint AS b, count(*) AS n
    FROM email_jobs
    WHERE created_at >= :s AND created_at < :e GROUP BY b),
fin AS (
    SELECT floor((finished_at - :s) / :g)::bigint AS b,
           count(*) FILTER (WHERE status = 'sent') AS sent,
           count(*) FILTER (WHERE status = 'failed') AS failed
    FROM email_jobs
    WHERE finished_at >= :s AND finished_at < :e GROUP BY b),
ret AS (
    SELECT floor((at - :s) / :g)::bigint AS b, count(*) AS n
    FROM email_attempts
    WHERE at >= :s AND at < :e AND (attempt > 1 OR round > 1) GROUP BY b),
lat AS (
    SELECT b, ms, row_number() OVER (PARTITION BY b ORDER BY ms) AS rn,
           count(*) OVER (PARTITION BY b) AS n
    FROM (SELECT floor((finished_at - :s) / :g)::bigint AS b,
                 floor((finished_at - created_at) * 1000 + 0.5)::bigint AS ms
          FROM email_jobs
          WHERE finished_at >= :s AND finished_at < :e AND status = 'sent') AS sent_jobs),
pct AS (
    SELECT b, max(CASE WHEN rn = greatest(1, (n * 50 + 99) / 100) THEN ms END) AS p50,
              max(CASE WHEN rn = greatest(1, (n * 95 + 99) / 100) THEN ms END) AS p95
    FROM lat GROUP BY b),
dep AS (  -- the last depth sampled in each bucket (minute rows)
    SELECT DISTINCT ON (b) b, depth
    FROM (SELECT floor((at - :s) / :g)::bigint AS b, depth, at
          FROM email_history
          WHERE grain = 60 AND at >= :s AND at < :e AND depth IS NOT NULL) AS sampled
    ORDER BY b, at DESC),
""" + _JOIN
COMPUTE = Sql("history.compute", postgresql=_COMPUTE_PG, sqlite="""
WITH
enq AS (
    SELECT CAST((created_at - :s) / :g AS INTEGER) AS b, count(*) AS n
    FROM email_jobs INDEXED BY ix_email_jobs_created
    WHERE created_at >= :s AND created_at < :e GROUP BY b),
fin AS (
    SELECT CAST((finished_at - :s) / :g AS INTEGER) AS b,
           sum(status = 'sent') AS sent, sum(status = 'failed') AS failed
    FROM email_jobs INDEXED BY ix_email_jobs_finished
    WHERE finished_at >= :s AND finished_at < :e GROUP BY b),
ret AS (
    SELECT CAST((at - :s) / :g AS INTEGER) AS b, count(*) AS n
    FROM email_attempts INDEXED BY ix_email_attempts_at
    WHERE at >= :s AND at < :e AND (attempt > 1 OR round > 1) GROUP BY b),
lat AS (
    SELECT b, ms, row_number() OVER (PARTITION BY b ORDER BY ms) AS rn,
           count(*) OVER (PARTITION BY b) AS n
    FROM (SELECT CAST((finished_at - :s) / :g AS INTEGER) AS b,
                 CAST(round((finished_at - created_at) * 1000) AS INTEGER) AS ms
          FROM email_jobs INDEXED BY ix_email_jobs_finished
          WHERE finished_at >= :s AND finished_at < :e AND status = 'sent')),
pct AS (
    SELECT b, max(CASE WHEN rn = max(1, (n * 50 + 99) / 100) THEN ms END) AS p50,
              max(CASE WHEN rn = max(1, (n * 95 + 99) / 100) THEN ms END) AS p95
    FROM lat GROUP BY b),
dep AS (  -- the last depth sampled in each bucket (minute rows; SQLite's bare column of max)
    SELECT CAST((at - :s) / :g AS INTEGER) AS b, depth, max(at)
    FROM email_history
    WHERE grain = 60 AND at >= :s AND at < :e AND depth IS NOT NULL GROUP BY b),
""" + _JOIN)

_COLUMNS = "at, enqueued, sent, failed, retried, p50_ms, p95_ms, depth"


async def compute(db: Database, grain: int, start: float, end: float) -> list[Bucket]:
    """The buckets of `grain` in [start, end) computed from the jobs (start on a bucket
    boundary); only buckets where something happened or a depth was sampled."""
    rows = await db.read(COMPUTE, {"s": start, "e": end, "g": grain})
    return [Bucket(at=start + int(r[0]) * grain, enqueued=int(r[1]), sent=int(r[2]),
                   failed=int(r[3]), retried=int(r[4]), p50_ms=r[5], p95_ms=r[6], depth=r[7])
            for r in rows]


async def upsert(db: Database, grain: int, buckets: Sequence[Bucket]) -> None:
    """Write rolled-up buckets; a depth already sampled is kept unless a new one is given."""
    if not buckets:
        return
    await db.write_many(
        f"INSERT INTO email_history (grain, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (grain, at) DO UPDATE SET enqueued = excluded.enqueued,"
        " sent = excluded.sent, failed = excluded.failed, retried = excluded.retried,"
        " p50_ms = excluded.p50_ms, p95_ms = excluded.p95_ms,"
        " depth = coalesce(excluded.depth, email_history.depth)",
        [(grain, b.at, b.enqueued, b.sent, b.failed, b.retried, b.p50_ms, b.p95_ms, b.depth)
         for b in buckets],
    )


async def prune(db: Database, grain: int, before: float) -> int:
    rows = await db.write(
        "DELETE FROM email_history WHERE grain = ? AND at < ? RETURNING at", (grain, before))
    return len(rows)


async def last_rolled(db: Database, grain: int) -> float | None:
    """The start of the newest rolled-up bucket of `grain` (None: none yet)."""
    row = await db.read_one("SELECT max(at) FROM email_history WHERE grain = ?", (grain,))
    return None if row is None or row[0] is None else float(row[0])


async def read(db: Database, grain: int, start: float, end: float) -> list[Bucket]:
    """Rolled-up buckets of `grain` starting in [start, end), oldest first."""
    rows = await db.read(
        f"SELECT {_COLUMNS} FROM email_history WHERE grain = ? AND at >= ? AND at < ?"
        " ORDER BY at", (grain, start, end))
    return [Bucket(at=float(r[0]), enqueued=int(r[1]), sent=int(r[2]), failed=int(r[3]),
                   retried=int(r[4]), p50_ms=r[5], p95_ms=r[6], depth=r[7]) for r in rows]


async def depth(db: Database) -> int:
    """The queue depth now: pending + sending (kept by triggers, O(1))."""
    row = await db.read_one(
        "SELECT coalesce(sum(n), 0) FROM email_status_counts"
        " WHERE status IN ('pending', 'sending')")
    return 0 if row is None else int(row[0])
