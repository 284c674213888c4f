"""The email queue's statements on PostgreSQL under real concurrency: separate connections to
one real server, interleavings forced with row locks held by another open transaction (no
sleeps deciding the outcome). Each test fails on the naive port of the SQLite statements;
the claim harness proves it by finding the duplicates of the naive claim."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from support.db import query

from vertex_tui.engine.errors import StoreError
from vertex_tui.engine.store import email as store
from vertex_tui.engine.store import email_pg, status_counts
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.pg import PgDatabase

CLAIMERS = 8

# The SQLite claim as a naive port would run it (INDEXED BY dropped): no row locks taken by
# the subquery, no status check in the UPDATE.
NAIVE_CLAIM = (
    "UPDATE email_jobs SET status = 'sending', attempts = attempts + 1, lease_owner = ?,"
    " lease_expires_at = ?, updated_at = ?"
    " WHERE id IN (SELECT id FROM email_jobs WHERE status = 'pending' AND next_attempt_at <= ?"
    " ORDER BY next_attempt_at LIMIT ?) RETURNING id"
)


def rows(n: int, prefix: str = "m", at: float | None = None) -> list[tuple[Any, ...]]:
    now = time.time() if at is None else at
    return [
        (f"<{prefix}{i}.{now}@t>", "s@t", f'["{prefix}{i}@t"]', f"{prefix}{i}@t", f"{prefix}{i}",
         "b", None, "{}", 5, now, now, now)
        for i in range(n)
    ]


@asynccontextmanager
async def databases(url: str, n: int) -> AsyncIterator[list[PgDatabase]]:
    """`n` separately opened databases (as `n` engines would have), closed afterwards."""
    dbs = [await PgDatabase.open(url, migrate=False, pool_size=2) for _ in range(n)]
    try:
        yield dbs
    finally:
        for db in dbs:
            await db.close()


async def blocked(url: str, waiting: int = 1, timeout: float = 10.0) -> None:
    """Until `waiting` sessions of this database wait for a lock (the interleaving is set)."""
    name = url.rsplit("/", 1)[1]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = query(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = ?"
                    " AND wait_event_type = 'Lock'", (name,))
        if got[0][0] >= waiting:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no session of {name} waited for a lock within {timeout} s")


Claim = Callable[[Database, str], Awaitable[list[int]]]


async def claim_everything(url: str, claim: Claim, jobs: int) -> Counter[int]:
    """`CLAIMERS` claimers, each on its own connection, claim until nothing is left; how
    often each job id was handed out."""
    async with databases(url, 1) as (filler,):
        await store.insert_jobs(filler, rows(jobs))
    got: Counter[int] = Counter()
    async with databases(url, CLAIMERS) as dbs:
        async def claimer(db: Database, owner: str) -> None:
            while batch := await claim(db, owner):
                got.update(batch)

        await asyncio.gather(*(claimer(db, f"c{i}") for i, db in enumerate(dbs)))
    return got


async def store_claim(db: Database, owner: str) -> list[int]:
    now = time.time()
    return [j.id for j in await store.claim(db, owner=owner, now=now, lease_until=now + 60,
                                            limit=16)]


DEADLOCKS: list[str] = []


async def naive_claim(db: Database, owner: str) -> list[int]:
    now = time.time()
    try:
        return [int(r[0]) for r in await db.write(NAIVE_CLAIM, (owner, now + 60, now, now, 16))]
    except StoreError as exc:  # the naive claim's other failure: claimers lock in any order
        assert "deadlock detected" in str(exc)
        DEADLOCKS.append(owner)
        return [-1]


async def test_eight_concurrent_claimers_never_share_a_job(pg_url: str) -> None:
    got = await claim_everything(pg_url, store_claim, 4000)
    assert len(got) == 4000 and max(got.values()) == 1
    assert query(pg_url, "SELECT count(*), max(attempts) FROM email_jobs"
                 " WHERE status = 'sending'") == [(4000, 1)]


async def test_the_claim_harness_catches_the_naive_claim(pg_url: str) -> None:
    """Proof that the test above can fail: the SQLite statement ported as it is hands jobs to
    two owners under the same harness."""
    DEADLOCKS.clear()
    got = await claim_everything(pg_url, naive_claim, 4000)
    got.pop(-1, None)
    assert len(got) == 4000
    assert sum(1 for n in got.values() if n > 1) > 0 or DEADLOCKS


def completion(job_id: int, owner: str, attempt: int = 1, *, at: float | None = None,
               retry_in: float | None = None) -> store.Completion:
    now = time.time() if at is None else at
    return store.Completion(
        job_id=job_id, owner=owner, attempt=attempt, at=now,
        outcome="sent" if retry_in is None else "transient",
        status="sent" if retry_in is None else "pending",
        retry_at=None if retry_in is None else now + retry_in, code=250, error=None)


async def test_a_completion_behind_a_reaper_records_nothing(pg_url: str) -> None:
    """The reaper (another engine) makes the job pending again and commits while the
    completion waits for its row lock: the completion is refused and records no 'sent'
    attempt (the naive INSERT-then-UPDATE records one and reports success, so the job would
    be sent again while its history says sent)."""
    async with databases(pg_url, 1) as (db,):
        (job_id,) = await store.insert_jobs(db, rows(1))
        claimed = await store_claim(db, "w1")
        assert claimed == [job_id]
        with psycopg.connect(pg_url) as reaper:  # a transaction, left open
            reaper.execute("UPDATE email_jobs SET status = 'pending', lease_owner = NULL,"
                           " lease_expires_at = NULL WHERE id = %s", (job_id,))
            done = asyncio.ensure_future(store.complete(db, [completion(job_id, "w1")]))
            await blocked(pg_url)
            reaper.commit()
        refused = await done
    assert [c.job_id for c in refused] == [job_id]
    assert query(pg_url, "SELECT outcome FROM email_attempts WHERE job_id = ?", (job_id,)) == []
    assert query(pg_url, "SELECT status FROM email_jobs WHERE id = ?", (job_id,)) == [
        ("pending",)]


async def test_a_completion_records_the_attempt_and_the_job_together(pg_url: str) -> None:
    async with databases(pg_url, 1) as (db,):
        ids = await store.insert_jobs(db, rows(3))
        await store_claim(db, "w1")
        refused = await store.complete(db, [
            completion(ids[0], "w1"), completion(ids[1], "w1", retry_in=30),
            completion(ids[2], "someone-else")])
    assert [c.job_id for c in refused] == [ids[2]]
    assert query(pg_url, "SELECT job_id, outcome, owner FROM email_attempts ORDER BY job_id") == [
        (ids[0], "sent", "w1"), (ids[1], "transient", "w1")]
    due = query(pg_url, "SELECT status, next_attempt_at - extract(epoch FROM now())"
                " FROM email_jobs WHERE id = ?", (ids[1],))
    assert due[0][0] == "pending" and 25 < due[0][1] < 35


async def test_two_reapers_record_each_lost_attempt_once(pg_url: str) -> None:
    """One reaper holds its rows (transaction open); the other skips them at once instead of
    recording the same losses (the naive INSERT ... SELECT reads them as still sending and
    records every loss twice)."""
    async with databases(pg_url, 2) as (a, b):
        ids = await store.insert_jobs(a, rows(20))
        now = time.time()
        await store.claim(a, owner="dead", now=now, lease_until=now - 1, limit=20)
        async with a.transaction() as conn:
            assert await email_pg.reap_in(conn, now) == 20
            other = await asyncio.wait_for(store.reap_expired(b, now), 5)
        assert other == 0
        assert await store.reap_expired(b, now) == 0  # nothing left once the first committed
    lost = query(pg_url, "SELECT job_id, count(*), min(owner) FROM email_attempts"
                 " WHERE outcome = 'lost' GROUP BY job_id ORDER BY job_id")
    assert lost == [(i, 1, "dead") for i in ids]
    assert query(pg_url, "SELECT status, count(*) FROM email_jobs GROUP BY status") == [
        ("pending", 20)]


async def test_the_reaper_spares_held_jobs_and_fails_exhausted_ones(pg_url: str) -> None:
    async with databases(pg_url, 1) as (db,):
        ids = await store.insert_jobs(db, rows(3))
        query(pg_url, "UPDATE email_jobs SET max_attempts = 1 WHERE id = ?", (ids[2],))
        now = time.time()
        await store.claim(db, owner="w", now=now, lease_until=now - 1, limit=3)
        assert await store.reap_expired(db, now, held=[ids[0]]) == 2
    assert query(pg_url, "SELECT id, status FROM email_jobs ORDER BY id") == [
        (ids[0], "sending"), (ids[1], "pending"), (ids[2], "failed")]


async def test_interleaved_inserts_get_their_own_ids(pg_url: str) -> None:
    """A streamed enqueue and another engine's insert interleave: identities are not one
    range per transaction, so each writer reports exactly the ids of its own rows."""
    async with databases(pg_url, 2) as (a, b):
        async with store.job_writer(a) as writer:
            await writer.add(rows(3, "a"))
            others = await store.insert_jobs(b, rows(2, "b"))
            await writer.add(rows(3, "a2"))
        mine = list(writer.ids)
    assert len(mine) == 6 and not set(mine) & set(others)
    assert mine != list(range(mine[0], mine[0] + 6))  # the interleaving really happened
    subjects = dict(query(pg_url, "SELECT id, subject FROM email_jobs"))
    assert [subjects[i] for i in mine] == ["a0", "a1", "a2", "a20", "a21", "a22"]
    assert [subjects[i] for i in others] == ["b0", "b1"]


async def test_retry_failed_takes_only_jobs_still_failed(pg_url: str) -> None:
    """Another operator's retry of the same job commits while this one waits: this one
    retries nothing (the naive SELECT-then-UPDATE retries it a second time, bumping the
    round and resetting a job that may already be sending)."""
    async with databases(pg_url, 1) as (db,):
        ids = await store.insert_jobs(db, rows(2))
        query(pg_url, "UPDATE email_jobs SET status = 'failed', finished_at = 1")
        with psycopg.connect(pg_url) as other:
            other.execute("UPDATE email_jobs SET status = 'pending', round = round + 1"
                          " WHERE id = %s", (ids[0],))
            done = asyncio.ensure_future(store.retry_failed(db, now=time.time(), ids=ids))
            await blocked(pg_url)
            other.commit()
        assert await done == [ids[1]]
        assert await store.retry_failed(db, now=time.time()) == []
    assert query(pg_url, "SELECT id, status, round FROM email_jobs ORDER BY id") == [
        (ids[0], "pending", 2), (ids[1], "pending", 2)]
    assert query(pg_url, "SELECT count FROM audit_log WHERE action = 'email.retry'"
                 " ORDER BY id") == [(1,), (0,)]


async def test_retry_of_the_oldest_skips_rows_another_retry_holds(pg_url: str) -> None:
    async with databases(pg_url, 2) as (a, b):
        ids = await store.insert_jobs(a, rows(4))
        query(pg_url, "UPDATE email_jobs SET status = 'failed', finished_at = 1")
        async with a.transaction() as conn:
            first = await email_pg.retry_ids(conn, now=time.time(), ids=None, limit=2)
            second = await asyncio.wait_for(store.retry_failed(b, now=time.time()), 5)
        assert first == ids[:2] and second == ids[2:]


SKEW = 3600.0


async def test_lease_and_retry_expiries_follow_the_servers_clock(pg_url: str) -> None:
    """Engines on hosts whose clocks are an hour off: a live lease taken on a slow host is not
    stolen by a reaper on a fast one, a dead lease is reaped by a slow host, and a retry in
    30 s from a fast host is due in 30 s, not in an hour and 30 s."""
    async with databases(pg_url, 1) as (db,):
        ids = await store.insert_jobs(db, rows(2, at=time.time() + SKEW))  # a fast host
        slow = time.time() - SKEW
        [live] = await store.claim(db, owner="slow", now=slow, lease_until=slow + 60, limit=1)
        assert await store.reap_expired(db, time.time() + SKEW) == 0  # live: not stolen
        slow = time.time() - SKEW
        assert await store.extend_leases(db, [live], slow + 120, slow) == 1
        left = query(pg_url, "SELECT lease_expires_at - extract(epoch FROM now())"
                     " FROM email_jobs WHERE status = 'sending'")
        assert 110 < left[0][0] < 125  # extended by 120 s on the server's clock
        assert query(pg_url, "SELECT count(*) FROM email_jobs WHERE status = 'sending'") == [(1,)]
        query(pg_url, "UPDATE email_jobs SET lease_expires_at = extract(epoch FROM now()) - 1"
              " WHERE status = 'sending'")
        assert await store.reap_expired(db, time.time() - SKEW) == 1  # dead: reaped
        fast = time.time() + SKEW
        batch = await store.claim(db, owner="fast", now=fast, lease_until=fast + 60, limit=2)
        assert len(batch) == 2  # both due on the server's clock, whatever the hosts say
        await store.complete(db, [completion(j.id, "fast", j.attempt, at=fast, retry_in=30)
                                  for j in batch])
        # Each host is told when that is on its own clock (so it neither sleeps nor spins
        # for its skew), and neither thinks it is due now.
        for host in (fast, time.time() - SKEW):
            due_at = await store.next_attempt_at(db, host)
            assert due_at is not None and 25 < due_at - host < 35
        assert not await store.any_due(db, time.time() + SKEW)
    due = query(pg_url, "SELECT next_attempt_at - extract(epoch FROM now()) FROM email_jobs")
    assert len(due) == 2 and all(25 < d < 35 for (d,) in due), due
    assert sorted(ids) == sorted(j.id for j in batch)


async def test_status_counts_stay_exact_under_concurrent_writers(pg_url: str) -> None:
    """Eight engines claim and complete while one folds the count deltas over and over: no
    deadlock, no lost delta, and the counts equal a count of the rows (the row-per-status
    counter of the SQLite port deadlocks and serializes here)."""
    async with databases(pg_url, CLAIMERS + 1) as (folder, *dbs):
        await store.insert_jobs(folder, rows(2000))
        stop = asyncio.Event()

        async def worker(db: Database, owner: str) -> None:
            while batch := await store.claim(db, owner=owner, now=time.time(),
                                             lease_until=time.time() + 60, limit=16):
                await store.complete(db, [
                    completion(j.id, owner, retry_in=None if j.id % 3 else 100)
                    for j in batch])

        async def fold() -> int:
            folds = 0
            while not stop.is_set():
                folds += await status_counts.compact(folder) > 0
                await asyncio.sleep(0.01)
            return folds

        folding = asyncio.ensure_future(fold())
        await asyncio.gather(*(worker(db, f"w{i}") for i, db in enumerate(dbs)))
        stop.set()
        assert await folding > 0
        counts = await store.status_counts(folder)
    truth = dict(query(pg_url, "SELECT status, count(*) FROM email_jobs GROUP BY status"))
    assert {k: v for k, v in counts.items() if v} == truth
    assert truth == {"sent": 2000 - 2000 // 3, "pending": 2000 // 3}
