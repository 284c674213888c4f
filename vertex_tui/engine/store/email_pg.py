"""The email queue's statements whose shape differs on PostgreSQL (`email.py` calls these when
`db.dialect == "postgresql"`; SQLite keeps its own text there, untouched).

SQLite runs one writer at a time, so a read followed by a write in one transaction sees no
other writer between them. PostgreSQL's READ COMMITTED runs writers side by side, so here:

- a claim picks its rows `FOR UPDATE SKIP LOCKED` and repeats `status = 'pending'` in the
  outer UPDATE: two claimers never take the same job and never wait for each other;
- `complete()` updates the fenced jobs and records their attempts in ONE statement
  (`WITH upd AS (UPDATE ... RETURNING) INSERT ...`): an attempt is recorded exactly when its
  job was updated, so a reaper committing in between cannot leave a "sent" attempt on a job
  it made pending again (which would be sent twice);
- the reaper is one statement over `SKIP LOCKED` rows feeding both the job update and the
  'lost' attempt rows: two reapers never record the same loss twice;
- inserted ids come from `RETURNING` (identities of concurrent inserters interleave);
- `retry_failed` puts the status condition in the UPDATE itself;
- lease and retry expiries are set and compared on the database server's clock
  (`DB_NOW`): the caller's `now` only gives durations (lease length, retry delay), so
  engines on hosts with skewed clocks neither steal live leases nor wait on dead ones.
  Recorded times (`updated_at`, `finished_at`, attempt `at`) stay the caller's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vertex_tui.engine.email.models import ClaimedJob
from vertex_tui.engine.store.conn import Connection
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.server_time import STATEMENT_NOW

if TYPE_CHECKING:
    from vertex_tui.engine.store.email import Completion

# The server's clock, in epoch seconds (one value for the whole statement; see server_time).
DB_NOW = STATEMENT_NOW

# Seconds until the next pending job is due, on the server's clock.
DUE_IN = f"SELECT min(next_attempt_at) - {DB_NOW} FROM email_jobs WHERE status = 'pending'"

_INSERT_JOB = (
    "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject, body, html,"
    " headers, status, attempts, max_attempts, created_at, updated_at, next_attempt_at)"
)
# A new job is due at once on the server's clock too (whichever clock is behind).
INSERT_ONE = (f"{_INSERT_JOB} VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?,"
              f" least(?::float8, {DB_NOW}))")
# Rows as one array per column (see COMPLETE).
INSERT_MANY = (
    f"{_INSERT_JOB} SELECT m, s, r, t, sub, b, h, hd, 'pending', 0, ma, c, u,"
    f" least(n, {DB_NOW}) FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[],"
    " ?::text[], ?::text[], ?::text[], ?::integer[], ?::float8[], ?::float8[], ?::float8[])"
    " AS v (m, s, r, t, sub, b, h, hd, ma, c, u, n) RETURNING id, message_id"
)
STATEMENT_ROWS = 5_000

# Parameters: limit, owner, lease_until, now, now (the lease is `lease_until - now` from the
# server's now; due is on the server's clock). The picked rows are a MATERIALIZED CTE: as a
# subquery in FROM the planner may rescan it once per joined row (a nested loop), and each
# rescan of `LIMIT n ... SKIP LOCKED` can pick other rows (one claim took 2 of LIMIT 1).
CLAIM = (
    "WITH due AS MATERIALIZED (SELECT id AS due_id FROM email_jobs"
    f" WHERE status = 'pending' AND next_attempt_at <= {DB_NOW}"
    " ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)"
    " UPDATE email_jobs SET status = 'sending', attempts = attempts + 1, lease_owner = ?,"
    f" lease_expires_at = {DB_NOW} + (?::float8 - ?::float8), updated_at = ?"
    " FROM due WHERE email_jobs.id = due.due_id AND email_jobs.status = 'pending'"
    f" RETURNING {ClaimedJob.CLAIM_COLUMNS}"
)

# Batches travel as one array per column (unnest): one statement text whatever the batch
# size, so psycopg parses it once and the server plans it once (prepared), instead of a
# VALUES list of 11 placeholders a row (each batch size a new text, over psycopg's cache
# limit of 50 parameters: ~3 ms of Python per 16-row commit).
COMPLETE = (
    "WITH v AS (SELECT * FROM unnest(?::bigint[], ?::text[], ?::integer[], ?::float8[],"
    " ?::text[], ?::integer[], ?::text[], ?::integer[], ?::text[], ?::float8[], ?::float8[])"
    " AS v (job_id, owner, attempt, at, outcome, code, error, encrypted, status, retry_in,"
    " finished_at)),"
    " upd AS (UPDATE email_jobs AS j SET status = v.status,"
    f" next_attempt_at = coalesce({DB_NOW} + v.retry_in, j.next_attempt_at),"
    " lease_owner = NULL, lease_expires_at = NULL, updated_at = v.at,"
    " finished_at = v.finished_at, last_error = v.error, last_code = v.code"
    " FROM v WHERE j.id = v.job_id AND j.status = 'sending' AND j.lease_owner = v.owner"
    " AND j.attempts = v.attempt"
    " RETURNING j.id, j.round, v.attempt, v.owner, v.at, v.outcome, v.code, v.error,"
    " v.encrypted)"
    " INSERT INTO email_attempts (job_id, round, attempt, owner, at, outcome, code, error,"
    " encrypted) SELECT * FROM upd RETURNING job_id, owner, attempt"
)

LOST = "worker lost its lease (process died or stalled); outcome unknown"
# params: held ids, now (finished_at), now (updated_at), error, now (attempt at), error
REAP = (
    "WITH gone AS MATERIALIZED (SELECT id AS gone_id, lease_owner AS gone_owner FROM email_jobs"
    f" WHERE status = 'sending' AND lease_expires_at <= {DB_NOW}"
    " AND NOT (id = ANY(?::bigint[])) FOR UPDATE SKIP LOCKED),"
    " upd AS (UPDATE email_jobs SET"
    " status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'pending' END,"
    " finished_at = CASE WHEN attempts >= max_attempts THEN ?::float8 END,"
    f" next_attempt_at = {DB_NOW}, lease_owner = NULL, lease_expires_at = NULL,"
    " updated_at = ?, last_error = ?, last_code = NULL"
    " FROM gone WHERE email_jobs.id = gone.gone_id AND email_jobs.status = 'sending'"
    " RETURNING email_jobs.id, email_jobs.round, email_jobs.attempts, gone.gone_owner)"
    " INSERT INTO email_attempts (job_id, round, attempt, owner, at, outcome, error)"
    " SELECT id, round, attempts, gone_owner, ?, 'lost', ? FROM upd"
)

_RETRY_SET = (
    "UPDATE email_jobs SET status = 'pending', round = round + 1, attempts = 0,"
    f" next_attempt_at = {DB_NOW}, finished_at = NULL, updated_at = ?"
)
RETRY_IDS = (
    f"{_RETRY_SET} WHERE id = ANY(?::bigint[]) AND status IN ('failed', 'cancelled')"
    " RETURNING id"
)
RETRY_OLDEST = (
    "WITH c AS MATERIALIZED (SELECT id AS c_id FROM email_jobs WHERE status = 'failed' ORDER BY id"
    " LIMIT ? FOR UPDATE SKIP LOCKED)"
    f" {_RETRY_SET} FROM c WHERE email_jobs.id = c.c_id AND email_jobs.status = 'failed'"
    " RETURNING id"
)



def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as one list per column (the arrays of an unnest)."""
    return [[row[i] for row in rows] for i in range(width)]


async def insert_rows(conn: Connection, rows: Sequence[tuple[Any, ...]]) -> list[int]:
    """Insert job rows (in chunks, inside the caller's transaction); their ids in order.

    The ids come from RETURNING, matched back by message id: identities handed to
    concurrent inserters interleave, so a transaction's ids are not a range."""
    ids: list[int] = []
    for start in range(0, len(rows), STATEMENT_ROWS):
        chunk = rows[start : start + STATEMENT_ROWS]
        got = await conn.execute_fetchall(INSERT_MANY, _columns(chunk, 12))
        by_message = {str(r[1]): int(r[0]) for r in got}
        ids += [by_message[str(row[0])] for row in chunk]
    return ids


async def complete(db: Database, items: Sequence[Completion]) -> list[Completion]:
    """Write the outcomes of jobs still leased to their worker; returns the refused ones."""
    held: set[tuple[int, str, int]] = set()
    for start in range(0, len(items), STATEMENT_ROWS):
        chunk = items[start : start + STATEMENT_ROWS]
        rows = await db.write(
            COMPLETE,
            _columns([
                (i.job_id, i.owner, i.attempt, i.at, i.outcome, i.code, i.error,
                 None if i.encrypted is None else int(i.encrypted), i.status,
                 None if i.retry_at is None else i.retry_at - i.at,
                 i.at if i.status in ("sent", "failed") else None)
                for i in chunk
            ], 11),
        )
        held.update((int(r[0]), str(r[1]), int(r[2])) for r in rows)
    return [i for i in items if (i.job_id, i.owner, i.attempt) not in held]


EXTEND = (
    f"UPDATE email_jobs SET lease_expires_at = {DB_NOW} + ?::float8"
    " WHERE id = ? AND status = 'sending' AND lease_owner = ? AND attempts = ?"
)


async def extend_leases(db: Database, jobs: Sequence[tuple[int, str, int]], lease: float
                        ) -> int:
    """Leases of (id, owner, attempt) still held, to the server's now + `lease` seconds."""
    async with db.transaction() as conn:
        result = await conn.executemany(EXTEND, [(lease, *job) for job in jobs])
        return result.rowcount


async def reap_in(conn: Connection, now: float, held: Sequence[int] = ()) -> int:
    """The reaper's one statement inside the caller's transaction; how many it reaped."""
    result = await conn.execute(REAP, (list(held), now, now, LOST, now, LOST))
    return max(0, result.rowcount)


async def reap_expired(db: Database, now: float, held: Sequence[int] = ()) -> int:
    async with db.transaction() as conn:
        return await reap_in(conn, now, held)


async def retry_ids(conn: Connection, *, now: float, ids: Sequence[int] | None,
                    limit: int | None) -> list[int]:
    """The ids put back to pending (fenced in the UPDATE), in order."""
    if ids is not None:
        rows = await conn.execute_fetchall(RETRY_IDS, (now, list(ids)))
    else:
        rows = await conn.execute_fetchall(RETRY_OLDEST, (limit, now))
    return sorted(int(r[0]) for r in rows)
