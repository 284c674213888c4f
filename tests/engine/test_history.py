"""Email history on the fake clock: real deliveries to an aiosmtpd sink, the `email.rollup`
job run through the service interface, and what `email history` reads back. Every test on
both backends (the rollup's upsert, prune and watermark on PostgreSQL too; there the fake
clock stands in for the server's, so moving it reaches a retry and expires leases)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.email.history import HOUR, MINUTE, Bucket
from vertex_tui.engine.email.models import EmailJobDetail
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import engines as engines_store
from vertex_tui.engine.store import history as store

if TYPE_CHECKING:
    from conftest import JobWhen, TestSink, WaitFor

EMAIL = ["email"]


async def fresh(engine: Engine) -> bool:
    return not await engines_store.heartbeat_stale(engine.db, engine.owner, engine.clock.time())


def is_sent(d: EmailJobDetail) -> bool:
    return d.job.status == "sent"


async def deliver_known_latencies(engine: Engine, clock: FakeClock, sink: TestSink,
                                  job_when: JobWhen) -> float:
    """In the minute starting at T0 (the fake clock's start): four mails enqueued, three sent
    after 5 s, 3 s and 2 s (the last one on its second attempt), one left pending. Returns T0."""
    t0 = clock.time()
    assert t0 % HOUR == 0
    await engine.email.pause()
    clock.advance(5)
    a = await engine.email.enqueue(to="a@example.com", subject="a", body="a")
    clock.advance(2)
    b = await engine.email.enqueue(to="b@example.com", subject="b", body="b")
    clock.advance(3)  # T0 + 10: a waited 5 s, b 3 s
    await engine.email.resume()
    await job_when(engine, a, is_sent, "sent")
    await job_when(engine, b, is_sent, "sent")
    sink.behaviour.fail_451 = 1.0
    c = await engine.email.enqueue(to="c@example.com", subject="c", body="c")
    await job_when(engine, c, lambda d: d.job.attempts == 1 and d.job.status == "pending",
                   "refused once")
    sink.behaviour.fail_451 = 0.0
    clock.advance(2)  # past the first retry delay (1 s + jitter): sent at T0 + 12
    await job_when(engine, c, is_sent, "sent on its second attempt")
    await engine.email.pause()
    await engine.email.enqueue(to="d@example.com", subject="d", body="d")  # stays pending
    return t0


async def test_buckets_count_latency_retries_and_depth_live_then_rolled_up(
    backend_settings_factory: Callable[..., Settings], sink: TestSink, clock: FakeClock,
    job_when: JobWhen,
) -> None:
    async with Engine(backend_settings_factory(sink=sink), clock=clock, run=EMAIL) as engine:
        t0 = await deliver_known_latencies(engine, clock, sink, job_when)
        expected = Bucket(at=t0, enqueued=4, sent=3, failed=0, retried=1, p50_ms=3000,
                          p95_ms=5000, depth=1)

        # Nothing is rolled up yet: the current minute is computed from the jobs.
        assert await store.last_rolled(engine.db, MINUTE) is None
        hour = await engine.email.history("1h")
        assert len(hour) == 60 and hour[-1] == expected
        assert all(b == Bucket(at=b.at) for b in hour[:-1])
        day = await engine.email.history("24h")
        assert len(day) == 24 and day[-1] == expected  # T0 also starts the current hour

        # A minute later the rollup closes minute T0 (depth sampled now: d is pending).
        clock.advance(60)
        result = await engine.jobs.run("email.rollup")
        assert result["status"] == "ok" and result["minutes"] == 1, result
        rows = await store.read(engine.db, MINUTE, t0 - 3 * HOUR, t0 + HOUR)
        assert rows == [expected]
        # Run again: the same rows (a bucket is written once), and history reads them. The
        # quiet run is not recorded in service_runs; the first one is, with its counts.
        await engine.jobs.run("email.rollup")
        assert await store.read(engine.db, MINUTE, t0 - 3 * HOUR, t0 + HOUR) == rows
        runs = await engine.jobs.history("email.rollup")
        assert [(r["outcome"], r["counts"]) for r in runs] == [
            ("ok", {"minutes": 1, "hours": 0})]
        hour = await engine.email.history("1h")
        assert hour[-2] == expected
        assert hour[-1] == Bucket(at=t0 + MINUTE, depth=1)  # the current minute, live

        # The hour is rolled once it is complete, with the last depth sampled in it.
        clock.advance(HOUR)
        await engine.jobs.run("email.rollup")
        assert await store.read(engine.db, HOUR, t0, t0 + HOUR) == [expected]

        # Two days on, the jobs are cleaned up and the minutes past retention pruned: the
        # week still shows hour T0, from the rollup.
        clock.advance(2 * 86400)
        assert await engine.email.cleanup(older_than_days=1) == 3
        result = await engine.jobs.run("email.rollup")
        assert result["pruned_minutes"] >= 1, result
        assert await store.read(engine.db, MINUTE, t0, t0 + HOUR) == []
        week = await engine.email.history("7d")
        assert len(week) == 168
        assert [b for b in week if b.sent] == [expected]


async def test_a_second_engine_skips_the_rollup_while_the_first_holds_its_lease(
    backend_settings_factory: Callable[..., Settings], sink: TestSink, clock: FakeClock,
    job_when: JobWhen, wait_for: WaitFor,
) -> None:
    settings = backend_settings_factory(sink=sink)
    async with Engine(settings, clock=clock, run=EMAIL) as first, \
            Engine(settings, clock=clock, run=[]) as second:
        t0 = await deliver_known_latencies(first, clock, sink, job_when)
        clock.advance(60)
        # The holder is alive: its heartbeat has caught up with the clock (else the second
        # engine rightly takes the lease over from a dead holder).
        await wait_for(lambda: fresh(first), message="the first engine's heartbeat")
        held = Leases(first.db, first.owner)
        assert await held.acquire("email.rollup", clock.time(), 600)
        skipped = await second.jobs.run("email.rollup")
        assert skipped["status"] == "skipped" and skipped["holder"] == first.owner, skipped
        assert await store.last_rolled(second.db, MINUTE) is None
        # The second engine's history is still complete: computed from the jobs.
        assert (await second.email.history("1h"))[-2].sent == 3
        await held.release("email.rollup")
        done = await second.jobs.run("email.rollup")
        assert done["status"] == "ok" and done["minutes"] == 1, done
        assert [b.at for b in await store.read(first.db, MINUTE, t0, t0 + HOUR)] == [t0]


async def test_the_table_stays_bounded_by_retention(
    backend_settings_factory: Callable[..., Settings], sink: TestSink, clock: FakeClock,
) -> None:
    async with Engine(backend_settings_factory(sink=sink), clock=clock, run=[]) as engine:
        # A job enqueued in every minute for 50 hours, rolled up every minute as they go,
        # 10 s into the next minute.
        clock.advance(10)
        for _ in range(50 * 60):
            await engine.email.enqueue(to="x@example.com", subject="s", body="b")
            clock.advance(60)
            await engine.jobs.run("email.rollup")
        now = clock.time()
        minutes = await store.read(engine.db, MINUTE, 0, now + 1)
        hours = await store.read(engine.db, HOUR, 0, now + 1)
        assert len(minutes) == 48 * 60
        assert minutes[0].at == now - 10 - 48 * HOUR and all(b.enqueued == 1 for b in minutes)
        active = [b for b in hours if b.active]
        assert len(active) == 50 and all(b.enqueued == 60 for b in active)
        assert len(hours) == 51  # and the empty hour before T0, closed by the first run
        assert active[-1].depth == 60 * 50  # nothing was delivered (no workers)
