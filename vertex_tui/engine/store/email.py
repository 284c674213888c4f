"""SQL of the email queue. Set-wise statements; the queue module decides what to call when."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

from vertex_tui.engine.email.models import ClaimedJob, EmailAttempt, EmailJob, EmailJobDetail
from vertex_tui.engine.errors import NotFound
from vertex_tui.engine.store import audit, email_pg
from vertex_tui.engine.store.conn import SyncConnection
from vertex_tui.engine.store.db import Connection, Database
from vertex_tui.engine.store.dialect import Sql

PAUSED_FLAG = "email.paused"
CLEANUP_CHUNK = 5_000

INSERT_JOB = (
    "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject, body, html,"
    " headers, status, attempts, max_attempts, created_at, updated_at, next_attempt_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"
)

# INDEXED BY: without ANALYZE statistics the planner picks ix_email_jobs_status for
# "status = 'pending'" and then reads and sorts every pending row (O(pending) per claim or
# stats call: ~0.5-1 s with 1M pending). The partial indexes answer in O(log n).
# PostgreSQL has no INDEXED BY (its planner has statistics): these are `Sql` pairs.
_CLAIM = Sql(
    "email.claim",
    sqlite="UPDATE email_jobs SET status = 'sending', attempts = attempts + 1, lease_owner = ?,"
    " lease_expires_at = ?, updated_at = ?"
    " WHERE id IN (SELECT id FROM email_jobs INDEXED BY ix_email_jobs_due"
    " WHERE status = 'pending' AND next_attempt_at <= ?"
    "              ORDER BY next_attempt_at LIMIT ?)"
    f" RETURNING {ClaimedJob.CLAIM_COLUMNS}",
    postgresql=email_pg.CLAIM,
)

_FENCE = "id = ? AND status = 'sending' AND lease_owner = ? AND attempts = ?"

# Writes are one statement per batch (a multi-row VALUES list), not `executemany`: SQLite
# sets up the status-count trigger once per statement execution, and per row that setup
# costs more than the row itself (executemany: ~42 us/row; one statement: ~15 us/row).
STATEMENT_ROWS = 500  # rows per statement: at most 12 parameters each, far below 32,766
_JOB_VALUES = "(?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"

# VALUES columns: job_id, owner, attempt | at, outcome, code, error, encrypted
_RECORD_ATTEMPTS = (
    "INSERT INTO email_attempts"
    " (job_id, round, attempt, owner, at, outcome, code, error, encrypted)"
    " SELECT j.id, j.round, j.attempts, j.lease_owner, v.column4, v.column5, v.column6,"
    " v.column7, v.column8"
    " FROM (VALUES {values}) AS v CROSS JOIN email_jobs AS j ON j.id = v.column1"
    " WHERE j.status = 'sending' AND j.lease_owner = v.column2 AND j.attempts = v.column3"
    " RETURNING job_id, owner, attempt"
)

# VALUES columns: job_id, owner, attempt | status, retry_at, at, finished_at, error, code
_COMPLETE = (
    "UPDATE email_jobs SET status = v.column4,"
    " next_attempt_at = coalesce(v.column5, email_jobs.next_attempt_at), lease_owner = NULL,"
    " lease_expires_at = NULL, updated_at = v.column6, finished_at = v.column7,"
    " last_error = v.column8, last_code = v.column9 FROM (VALUES {values}) AS v"
    " WHERE email_jobs.id = v.column1 AND email_jobs.status = 'sending'"
    " AND email_jobs.lease_owner = v.column2 AND email_jobs.attempts = v.column3"
)


def _values(row: str, count: int) -> str:
    return ", ".join([row] * count)


def _flat(rows: Sequence[Sequence[Any]]) -> list[Any]:
    return [value for row in rows for value in row]


class Completion(NamedTuple):
    """The result of one attempt, to be written if the worker still holds the job.

    Immutable like the records, but a named tuple: one is built per delivery on the queue's
    hot path, and a frozen dataclass of 13 fields costs ~1.5 us more to build (each field
    set through `object.__setattr__`). Build it with keywords."""

    job_id: int
    owner: str
    attempt: int
    at: float
    outcome: str
    status: str
    retry_at: float | None
    code: int | None
    error: str | None
    message_id: str = ""
    encrypted: bool | None = None  # the SMTP session's TLS; None: no session
    created_at: float | None = None  # when the job was enqueued (for the latency metric)
    relay: bool = False  # the relay failed, not the message (logged once per outage)


class JobWriter:
    """Inserts job rows, chunk after chunk, into one open write transaction (`job_writer`)."""

    def __init__(self, conn: Connection, first: int) -> None:
        self._conn = conn
        self._first = first
        self._count = 0

    async def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        for start in range(0, len(rows), STATEMENT_ROWS):
            chunk = rows[start : start + STATEMENT_ROWS]
            await self._conn.execute(
                f"{INSERT_JOB}, {_values(_JOB_VALUES, len(chunk) - 1)}"
                if len(chunk) > 1
                else INSERT_JOB,
                _flat(chunk),
            )
        self._count += len(rows)

    @property
    def ids(self) -> Sequence[int]:
        """The ids of the rows added so far, in order."""
        # AUTOINCREMENT gives seq + 1, seq + 2, ... to the inserts of one write transaction.
        return range(self._first, self._first + self._count)


class PgJobWriter(JobWriter):
    """`JobWriter` on PostgreSQL: ids from RETURNING (concurrent inserters interleave)."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn, 0)
        self._returned: list[int] = []

    async def add(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._returned += await email_pg.insert_rows(self._conn, rows)

    @property
    def ids(self) -> Sequence[int]:
        return list(self._returned)


@asynccontextmanager
async def job_writer(db: Database) -> AsyncIterator[JobWriter]:
    """One write transaction for inserting jobs in chunks: committed when the block ends,
    rolled back (nothing stored) if it raises."""
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            yield PgJobWriter(conn)
            return
        seq = await conn.execute_fetchall(
            "SELECT seq FROM sqlite_sequence WHERE name = 'email_jobs'"
        )
        yield JobWriter(conn, (next(iter(seq))[0] if seq else 0) + 1)


async def insert_job(conn: Connection, row: tuple[Any, ...]) -> None:
    """Insert one prepared row inside the caller's transaction (another service's outbox)."""
    await conn.execute(_INSERT_ONE, row)


_INSERT_ONE = Sql("email.insert_job", sqlite=INSERT_JOB, postgresql=email_pg.INSERT_ONE)


async def insert_jobs(db: Database, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Insert prepared rows in one transaction; returns their ids in order."""
    if db.dialect == "postgresql":
        async with db.transaction() as conn:
            return await email_pg.insert_rows(conn, rows)
    if len(rows) == 1:
        # One statement is its own transaction (committed before `write` returns): one
        # round trip to the writer thread instead of three (BEGIN, INSERT, COMMIT).
        inserted = await db.write(f"{INSERT_JOB} RETURNING id", rows[0])
        return [int(inserted[0][0])]
    async with job_writer(db) as writer:
        await writer.add(rows)
    return list(writer.ids)


async def claim(
    db: Database, *, owner: str, now: float, lease_until: float, limit: int
) -> list[ClaimedJob]:
    if db.dialect == "postgresql":  # the limit comes first there (its CTE)
        rows = await db.write(_CLAIM, (limit, owner, lease_until, now, now))
    else:
        rows = await db.write(_CLAIM, (owner, lease_until, now, now, limit))
    return [ClaimedJob.from_row(r, owner) for r in rows]


async def complete(db: Database, items: Sequence[Completion]) -> list[Completion]:
    """Write outcomes for jobs still leased to their worker; returns the refused ones.

    The whole group commit is one hop to the writer thread (`run_transaction`): over SMTP
    outcomes commit a few at a time, and four round trips (BEGIN, INSERT, UPDATE, COMMIT)
    cost more of this process's CPU than the rows themselves."""
    if db.dialect == "postgresql":
        return await email_pg.complete(db, items)
    return await db.run_transaction(lambda conn: _complete(conn, items))


def _complete(conn: SyncConnection, items: Sequence[Completion]) -> list[Completion]:
    held: set[tuple[int, str, int]] = set()
    for start in range(0, len(items), STATEMENT_ROWS):
        chunk = items[start : start + STATEMENT_ROWS]
        # The fenced INSERT returns exactly the attempts whose lease is still held.
        recorded = conn.execute(
            _RECORD_ATTEMPTS.format(values=_values("(?, ?, ?, ?, ?, ?, ?, ?)", len(chunk))),
            _flat(
                [
                    (i.job_id, i.owner, i.attempt, i.at, i.outcome, i.code, i.error,
                     None if i.encrypted is None else int(i.encrypted))
                    for i in chunk
                ]
            ),
        ).fetchall()
        held.update((r[0], r[1], r[2]) for r in recorded)
        valid = [i for i in chunk if (i.job_id, i.owner, i.attempt) in held]
        if not valid:
            continue
        conn.execute(
            _COMPLETE.format(values=_values("(?, ?, ?, ?, ?, ?, ?, ?, ?)", len(valid))),
            _flat(
                [
                    (
                        i.job_id,
                        i.owner,
                        i.attempt,
                        i.status,
                        i.retry_at,
                        i.at,
                        i.at if i.status in ("sent", "failed") else None,
                        i.error,
                        i.code,
                    )
                    for i in valid
                ]
            ),
        )
    return [i for i in items if (i.job_id, i.owner, i.attempt) not in held]


async def release(db: Database, jobs: Sequence[ClaimedJob], now: float) -> None:
    """Hand back claimed jobs that were never tried (shutdown): the attempt does not count."""
    if not jobs:
        return
    async with db.transaction() as conn:
        await conn.executemany(
            "UPDATE email_jobs SET status = 'pending', attempts = attempts - 1,"
            " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
            f" WHERE {_FENCE}",
            [(now, j.id, j.owner, j.attempt) for j in jobs],
        )


async def extend_leases(
    db: Database, jobs: Sequence[ClaimedJob], until: float, now: float | None = None
) -> int:
    """Extend the leases still held by their worker; returns how many were.

    PostgreSQL, given the caller's `now`: until the server's now + (until - now)."""
    if not jobs:
        return 0
    if db.dialect == "postgresql" and now is not None:
        return await email_pg.extend_leases(db, [(j.id, j.owner, j.attempt) for j in jobs],
                                            until - now)
    async with db.transaction() as conn:
        cursor = await conn.executemany(
            f"UPDATE email_jobs SET lease_expires_at = ? WHERE {_FENCE}",
            [(until, j.id, j.owner, j.attempt) for j in jobs],
        )
        return cursor.rowcount


async def reap_expired(db: Database, now: float, held: Sequence[int] = ()) -> int:
    """Jobs whose worker died (lease expired while sending) become due again.

    The lost attempt is recorded; a job that has used all its attempts fails. `held`: ids the
    calling process's own workers still hold in memory (alive, only late: a stalled database
    delays their renewals and outcomes), never reaped by that process.
    """
    if db.dialect == "postgresql":
        return await email_pg.reap_expired(db, now, held)
    keep = json.dumps(list(held))
    found = await db.read(
        "SELECT 1 FROM email_jobs WHERE status = 'sending' AND lease_expires_at <= ?"
        " AND id NOT IN (SELECT value FROM json_each(?)) LIMIT 1",
        (now, keep),
    )
    if not found:
        return 0
    error = "worker lost its lease (process died or stalled); outcome unknown"
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO email_attempts (job_id, round, attempt, owner, at, outcome, error)"
            " SELECT id, round, attempts, lease_owner, ?, 'lost', ? FROM email_jobs"
            " WHERE status = 'sending' AND lease_expires_at <= ?"
            " AND id NOT IN (SELECT value FROM json_each(?))",
            (now, error, now, keep),
        )
        cursor = await conn.execute(
            "UPDATE email_jobs SET"
            " status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,"
            " finished_at = CASE WHEN attempts >= max_attempts THEN ? END,"
            " next_attempt_at = ?, lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ?, last_error = ?, last_code = NULL"
            " WHERE status = 'sending' AND lease_expires_at <= ?"
            " AND id NOT IN (SELECT value FROM json_each(?))",
            (now, now, now, error, now, keep),
        )
        return cursor.rowcount


async def status_counts(db: Database) -> dict[str, int]:
    rows = await db.read("SELECT status, n FROM email_status_counts")
    return {str(r[0]): int(r[1]) for r in rows}


_NEXT_ATTEMPT = Sql(
    "email.next_attempt_at",
    sqlite="SELECT min(next_attempt_at) FROM email_jobs INDEXED BY ix_email_jobs_due"
    " WHERE status = 'pending'",
    postgresql="SELECT min(next_attempt_at) FROM email_jobs WHERE status = 'pending'",
)
_LAST_FINISHED = Sql(
    "email.last_finished_at",
    sqlite="SELECT max(finished_at) FROM email_jobs INDEXED BY ix_email_jobs_finished"
    " WHERE finished_at IS NOT NULL",
    postgresql="SELECT max(finished_at) FROM email_jobs WHERE finished_at IS NOT NULL",
)
_SENT_SINCE = Sql(
    "email.sent_since",
    sqlite="SELECT count(*) FROM email_jobs INDEXED BY ix_email_jobs_finished"
    " WHERE finished_at >= ? AND status = 'sent'",
    postgresql="SELECT count(*) FROM email_jobs WHERE finished_at >= ? AND status = 'sent'",
)
# PostgreSQL's CAST(real AS integer) rounds (and int4 overflows): floor to bigint instead.
_SENT_PER_MINUTE = Sql(
    "email.sent_per_minute",
    sqlite="SELECT CAST((finished_at - ?) / 60 AS INTEGER) AS bucket, count(*)"
    " FROM email_jobs INDEXED BY ix_email_jobs_finished"
    " WHERE finished_at >= ? AND status = 'sent' GROUP BY bucket",
    postgresql="SELECT floor((finished_at - ?) / 60)::bigint AS bucket, count(*)"
    " FROM email_jobs WHERE finished_at >= ? AND status = 'sent' GROUP BY bucket",
)
_ANY_DUE = Sql(
    "email.any_due",
    sqlite="SELECT EXISTS (SELECT 1 FROM email_jobs INDEXED BY ix_email_jobs_due"
    " WHERE status = 'pending' AND next_attempt_at <= ?)",
    # PostgreSQL: due on the server's clock; the caller's now does not count there.
    postgresql="SELECT EXISTS (SELECT 1 FROM email_jobs WHERE status = 'pending'"
    f" AND next_attempt_at <= {email_pg.DB_NOW} + 0 * ?::float8)",
)


async def oldest_pending_created(db: Database) -> float | None:
    row = await db.read_one(
        "SELECT created_at FROM email_jobs WHERE status = 'pending' ORDER BY id LIMIT 1"
    )
    return None if row is None else float(row[0])


async def next_attempt_at(db: Database, now: float | None = None) -> float | None:
    """When the next pending job is due. PostgreSQL, given the caller's `now`: on the
    caller's clock (due times are the server's there; a skewed host would otherwise sleep
    or spin for its skew)."""
    if db.dialect == "postgresql" and now is not None:
        row = await db.read_one(email_pg.DUE_IN)
        return None if row is None or row[0] is None else now + float(row[0])
    row = await db.read_one(_NEXT_ATTEMPT)
    return None if row is None or row[0] is None else float(row[0])


async def last_finished_at(db: Database) -> float | None:
    row = await db.read_one(_LAST_FINISHED)
    return None if row is None or row[0] is None else float(row[0])


async def sent_since(db: Database, since: float) -> int:
    row = await db.read_one(_SENT_SINCE, (since,))
    return 0 if row is None else int(row[0])


async def sent_per_minute(db: Database, since: float, now: float) -> list[int]:
    """Mail sent in each minute from `since` to `now` (oldest first)."""
    rows = await db.read(_SENT_PER_MINUTE, (since, since))
    buckets = [0] * max(1, int((now - since) // 60) + 1)
    for bucket, n in rows:
        if 0 <= bucket < len(buckets):
            buckets[bucket] = n
    return buckets


async def any_due(db: Database, now: float) -> bool:
    row = await db.read_one(_ANY_DUE, (now,))
    return bool(row and row[0])


async def list_jobs(
    db: Database,
    *,
    status: str | None = None,
    search: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[EmailJob]:
    """One page of jobs, newest first; `before_id` continues from the previous page."""
    where: list[str] = []
    params: list[object] = []
    if status:
        where.append("status = ?")
        params.append(status)
    if before_id is not None:
        where.append("id < ?")
        params.append(before_id)
    if search:
        pattern = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        like = "ILIKE" if db.dialect == "postgresql" else "LIKE"  # SQLite's LIKE ignores case
        where.append(f"(to_header {like} ? ESCAPE '\\' OR subject {like} ? ESCAPE '\\')")
        params += [pattern, pattern]
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await db.read(
        f"SELECT {EmailJob.COLUMNS} FROM email_jobs {clause} ORDER BY id DESC LIMIT ?",
        [*params, limit],
    )
    return [EmailJob.from_row(r) for r in rows]


async def failed_ids(db: Database) -> list[int]:
    rows = await db.read("SELECT id FROM email_jobs WHERE status = 'failed' ORDER BY id")
    return [int(r[0]) for r in rows]


# The job and its attempts in ONE statement, so in one snapshot: read apart, a completion
# committed between the two reads showed an attempt whose outcome the job did not have yet
# (`sending`, no last error). The job's columns repeat on each attempt's row (a few per round).
_DETAIL = (
    "SELECT j.*, a.round, a.attempt, a.at, a.outcome, a.code, a.error, a.owner, a.encrypted,"
    f" a.id FROM (SELECT {EmailJob.COLUMNS}, sender, recipients, body, html, headers"
    " FROM email_jobs WHERE id = ?) AS j LEFT JOIN email_attempts AS a ON a.job_id = j.id"
    " ORDER BY a.id"
)
_ATTEMPT_AT = len(EmailJob.COLUMNS.split(",")) + 5  # after the job's, sender .. headers


async def get_job(db: Database, job_id: int) -> EmailJobDetail:
    rows = await db.read(_DETAIL, (job_id,))
    if not rows:
        raise NotFound(f"no email job with id {job_id}")
    row = rows[0]
    return EmailJobDetail(
        job=EmailJob.from_row(row),
        sender=row[14],
        recipients=tuple(json.loads(row[15])),
        body=row[16],
        html=row[17],
        headers=json.loads(row[18]),
        history=tuple(
            EmailAttempt(
                round=a[0], attempt=a[1], at=a[2], outcome=a[3], code=a[4], error=a[5],
                owner=a[6], encrypted=None if a[7] is None else bool(a[7]),
            )
            # a[8] is the attempt's id: NULL on the one row of a job never attempted
            for a in (tuple(r)[_ATTEMPT_AT:] for r in rows) if a[8] is not None
        ),
    )


async def retry_failed(
    db: Database, *, now: float, ids: Sequence[int] | None = None, limit: int | None = None
) -> list[int]:
    """Failed jobs back to pending with a fresh round of attempts; history kept.

    With `ids`, exactly those that are still failed; else the oldest `limit` (all if None).
    """
    async with db.transaction() as conn:
        if db.dialect == "postgresql":
            chosen = await email_pg.retry_ids(conn, now=now, ids=ids, limit=limit)
            await _audit_retry(conn, now, chosen, ids, limit)
            return chosen
        if ids is not None:
            marks = ",".join("?" * len(ids))
            rows = await conn.execute_fetchall(
                "SELECT id FROM email_jobs WHERE status IN ('failed', 'cancelled')"
                f" AND id IN ({marks})"
                " ORDER BY id",
                list(ids),
            )
        else:
            rows = await conn.execute_fetchall(
                "SELECT id FROM email_jobs WHERE status = 'failed' ORDER BY id LIMIT ?",
                (-1 if limit is None else limit,),
            )
        chosen = [int(r[0]) for r in rows]
        await conn.executemany(
            "UPDATE email_jobs SET status = 'pending', round = round + 1, attempts = 0,"
            " next_attempt_at = ?, finished_at = NULL, updated_at = ? WHERE id = ?",
            [(now, now, i) for i in chosen],
        )
        await _audit_retry(conn, now, chosen, ids, limit)
    return chosen


async def _audit_retry(conn: Connection, now: float, chosen: list[int],
                       ids: Sequence[int] | None, limit: int | None) -> None:
    await audit.record(
        conn,
        at=now,
        action="email.retry",
        count=len(chosen),
        ids=chosen[:100],
        requested=list(ids) if ids is not None else None,
        limit=limit,
    )


async def cleanup(db: Database, *, now: float, cutoff: float, older_than_days: float) -> int:
    """Delete sent and failed jobs finished before `cutoff`, in chunks; returns the count."""
    total = 0
    while True:
        async with db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM email_jobs WHERE id IN (SELECT id FROM email_jobs"
                " WHERE finished_at < ? AND status IN ('sent', 'failed', 'cancelled') LIMIT ?)",
                (cutoff, CLEANUP_CHUNK),
            )
            deleted = cursor.rowcount
            total += deleted
            if deleted < CLEANUP_CHUNK:
                await audit.record(
                    conn,
                    at=now,
                    action="email.cleanup",
                    count=total,
                    older_than_days=older_than_days,
                )
                return total


async def record_action(
    db: Database, *, at: float, action: str, count: int | None = None, **detail: Any
) -> None:
    """An audit entry for an operator action that changes no rows itself (e.g. drain)."""
    async with db.transaction() as conn:
        await audit.record(conn, at=at, action=action, count=count, **detail)


async def is_paused(db: Database) -> bool:
    row = await db.read_one("SELECT value FROM engine_flags WHERE name = ?", (PAUSED_FLAG,))
    return row is not None and row[0] == "1"


async def set_paused(db: Database, paused: bool, now: float) -> None:
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
            " updated_at = excluded.updated_at",
            (PAUSED_FLAG, "1" if paused else "0", now),
        )
        await audit.record(conn, at=now, action="email.pause" if paused else "email.resume")
