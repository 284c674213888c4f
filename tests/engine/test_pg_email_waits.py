"""What the races tests leave open on PostgreSQL: a claimer never WAITS for another one's rows
(SKIP LOCKED; without it the claims stay exactly-once, the outer status check sees to that,
but every claimer queues behind the one holding the oldest rows), a claim takes at most its
limit (a LIMIT ... SKIP LOCKED subquery the planner rescans picks new rows each time).

Each test was run against the naive variant it guards and fails there. "Never waits" is
decided by the server, not by a clock: the call must finish before any session of the test
database is seen waiting for a lock (pg_stat_activity), while the other transaction is open.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import psycopg
from test_pg_email_races import blocked, databases, query, rows, store_claim

from vertex_tui.engine.store import email as store

T = TypeVar("T")


async def without_waiting(url: str, call: Awaitable[T]) -> T:
    """`call`'s result, provided it finished before any session of `url`'s database had to
    wait for a lock; a lock wait seen first fails the test."""
    task = asyncio.ensure_future(call)
    watch = asyncio.ensure_future(blocked(url, timeout=60))
    done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        watch.cancel()
        return task.result()
    task.cancel()
    raise AssertionError("the call waited for a lock another transaction holds")


async def test_a_claim_skips_the_rows_another_claim_holds_instead_of_waiting(
    pg_url: str,
) -> None:
    async with databases(pg_url, 1) as (db,):
        ids = await store.insert_jobs(db, rows(3))
        with psycopg.connect(pg_url) as other:  # another claimer, its transaction open
            other.execute("SELECT id FROM email_jobs WHERE id = %s FOR UPDATE", (ids[0],))
            now = time.time()
            got = await without_waiting(pg_url, store.claim(
                db, owner="w", now=now, lease_until=now + 60, limit=1))
            assert [j.id for j in got] == [ids[1]]
            other.rollback()
        assert await store_claim(db, "w") == [ids[0], ids[2]]


async def test_a_claim_takes_at_most_its_limit(pg_url: str) -> None:
    """On a small table (no statistics yet: a nested loop) as on an analyzed big one."""
    async with databases(pg_url, 1) as (db,):
        sizes = []
        for jobs, analyze in ((4, False), (300, True)):
            await store.insert_jobs(db, rows(jobs, f"n{jobs}"))
            if analyze:
                query(pg_url, "ANALYZE email_jobs")
            for limit in (1, 1, 2):
                now = time.time()
                sizes.append(len(await store.claim(db, owner="w", now=now,
                                                   lease_until=now + 60, limit=limit)))
    assert sizes == [1, 1, 2, 1, 1, 2]
    assert query(pg_url, "SELECT count(*) FROM email_jobs WHERE status = 'sending'") == [(8,)]
