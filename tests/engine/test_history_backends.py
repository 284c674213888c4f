"""The history rollup's one statement (`store.history.compute`) gives the same buckets on
SQLite and PostgreSQL: counts per bucket, nearest-rank latencies, retries, and the last depth
sampled in each bucket (SQLite's bare column of max(), DISTINCT ON on PostgreSQL)."""

from __future__ import annotations

from vertex_tui.engine.email.history import Bucket
from vertex_tui.engine.store import email as email_store
from vertex_tui.engine.store import history as store
from vertex_tui.engine.store.db import Database

T0 = 1_800_000_000.0  # on an hour boundary
MINUTE, HOUR = 60, 3600


def job(name: str, created: float) -> tuple[object, ...]:
    return (f"<{name}@t>", "s@t", f'["{name}@t"]', f"{name}@t", name, "b", None, "{}", 5,
            created, created, created)


async def test_compute_counts_latencies_retries_and_depth_alike_on_both_backends(
    backend_db: Database,
) -> None:
    db = backend_db
    ids = await email_store.insert_jobs(db, [
        job("a", T0 + 5), job("b", T0 + 7), job("c", T0 + 8), job("d", T0 + 20),
        job("e", T0 + 61)])
    finished = {ids[0]: ("sent", T0 + 10), ids[1]: ("sent", T0 + 10),
                ids[2]: ("sent", T0 + 12), ids[4]: ("failed", T0 + 70)}
    for job_id, (status, at) in finished.items():
        await db.write("UPDATE email_jobs SET status = ?, finished_at = ?, attempts = 1"
                       " WHERE id = ?", (status, at, job_id))
    for attempt, at in ((1, T0 + 9), (2, T0 + 12)):  # c: sent on its second attempt
        await db.write("INSERT INTO email_attempts (job_id, round, attempt, owner, at, outcome)"
                       " VALUES (?, 1, ?, 'w', ?, 'sent')", (ids[2], attempt, at))
    await store.upsert(db, MINUTE, [Bucket(at=T0, depth=2), Bucket(at=T0 + MINUTE, depth=1)])

    minutes = await store.compute(db, MINUTE, T0, T0 + 2 * MINUTE)
    hour = await store.compute(db, HOUR, T0, T0 + HOUR)

    # Latencies 5 s, 3 s, 4 s: nearest rank p50 = 4 s, p95 = 5 s.
    assert minutes == [
        Bucket(at=T0, enqueued=4, sent=3, failed=0, retried=1, p50_ms=4000, p95_ms=5000,
               depth=2),
        Bucket(at=T0 + MINUTE, enqueued=1, sent=0, failed=1, retried=0, depth=1)]
    assert hour == [Bucket(at=T0, enqueued=5, sent=3, failed=1, retried=1, p50_ms=4000,
                           p95_ms=5000, depth=1)]  # the last depth sampled in the hour
    assert await store.depth(db) == 1  # d is still pending
