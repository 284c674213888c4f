"""Job counts by status on both backends, and on PostgreSQL without a hot row: concurrent
writers changing statuses in any order never deadlock on the counts, and a compaction
running meanwhile loses no delta."""

from __future__ import annotations

import asyncio
import random

from vertex_tui.engine.store import status_counts
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.pg import PgDatabase

STATUSES = ("pending", "sending", "sent", "failed", "cancelled")
INSERT = ("INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject, body,"
          " status, max_attempts, created_at, updated_at, next_attempt_at)"
          " VALUES (?, 's@x.test', '[]', 'a@x.test', 'hi', 'b', ?, 5, 0, 0, 0)")


async def _truth(db: Database) -> dict[str, int]:
    rows = await db.read("SELECT status, count(*) FROM email_jobs GROUP BY status")
    return {**dict.fromkeys(STATUSES, 0), **{str(r[0]): int(r[1]) for r in rows}}


async def test_counts_follow_inserts_updates_and_deletes(backend_db: Database) -> None:
    db = backend_db
    assert await status_counts.counts(db) == dict.fromkeys(STATUSES, 0)
    await db.write_many(INSERT, [(f"<m{i}@x>", "pending") for i in range(30)])
    await db.write("UPDATE email_jobs SET status = 'sending' WHERE id % 3 = 0")
    await db.write("UPDATE email_jobs SET status = 'sent' WHERE id % 5 = 0")
    await db.write("UPDATE email_jobs SET subject = 'same status' WHERE id % 2 = 0")
    await db.write("UPDATE email_jobs SET status = status")  # no change: no delta
    await db.write("DELETE FROM email_jobs WHERE id % 7 = 0")
    expected = await _truth(db)
    assert expected["sent"] > 0 and expected["sending"] > 0 and sum(expected.values()) < 30
    assert await status_counts.counts(db) == expected
    removed = await status_counts.compact(db)
    assert await status_counts.counts(db) == expected
    if db.dialect == "postgresql":
        assert removed > 0
        assert len(await db.read("SELECT id FROM email_status_deltas")) == len(STATUSES)
    else:
        assert removed == 0


async def test_concurrent_status_changes_and_compaction_on_postgresql(pg_url: str) -> None:
    """8 writers, each moving random jobs between statuses in transactions that touch
    several statuses in random order (the lock-order pattern that deadlocks a per-status
    counter row), while compactions run: no error, and the counts equal count(*)."""
    setup = await PgDatabase.open(pg_url)
    writers = [await PgDatabase.open(pg_url, migrate=False, pool_size=2) for _ in range(8)]
    try:
        await setup.write_many(INSERT, [(f"<m{i}@x>", "pending") for i in range(400)])
        rng = random.Random(11)
        # Jobs in id order (no deadlock on the job rows themselves); statuses in any order.
        plans = [[(sorted(rng.sample(range(1, 401), 4)), rng.choice(STATUSES)) for _ in range(25)]
                 for _ in writers]
        done = asyncio.Event()

        async def write(db: PgDatabase, plan: list[tuple[list[int], str]]) -> None:
            for ids, status in plan:
                async with db.transaction() as conn:
                    for job_id in ids:
                        await conn.execute("UPDATE email_jobs SET status = ? WHERE id = ?",
                                           (status, job_id))
                    await conn.execute(INSERT, (f"<n{id(ids)}-{ids[0]}@x>", status))

        async def compact() -> int:
            runs = 0
            while not done.is_set():
                await status_counts.compact(setup)
                runs += 1
                await asyncio.sleep(0.01)
            return runs

        compactor = asyncio.create_task(compact())
        await asyncio.gather(*(write(db, plan) for db, plan in zip(writers, plans,
                                                                    strict=True)))
        done.set()
        assert await compactor > 0
        assert await status_counts.counts(setup) == await _truth(setup)
        await status_counts.compact(setup)
        assert await status_counts.counts(setup) == await _truth(setup)
    finally:
        for db in (setup, *writers):
            await db.close()
