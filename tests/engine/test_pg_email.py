"""The real Engine's email service on PostgreSQL: a real server (`pg_url`), real loopback
SMTP sinks and the real clock (expiries are on the database server's clock there: these tests
keep it, where the FakeClock tests of test_email_*.py have the fake clock stand in for it):
enqueue, delivery, retry, operator retry, stats, search, cancel, a dead engine's jobs reaped,
two engines delivering from one database exactly once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from support.db import query

from vertex_tui.engine.email.models import EmailJobDetail
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import DatabaseUrl, Settings
from vertex_tui.engine.store import email as store
from vertex_tui.engine.store.pg import PgDatabase

if TYPE_CHECKING:
    from conftest import JobWhen, TestSink, WaitFor

EMAIL = ["email"]
QUICK = {"email_poll_interval": 0.2, "email_retry_delays": (0.3,) * 5}


def on_pg(settings_factory: Callable[..., Settings], url: str, **overrides: Any) -> Settings:
    return settings_factory(database_url=DatabaseUrl(url), **{**QUICK, **overrides})


def is_sent(d: EmailJobDetail) -> bool:
    return d.job.status == "sent"


async def test_enqueued_mail_is_delivered_once_with_its_history_and_stats(
    settings_factory: Callable[..., Settings], sink: TestSink, pg_url: str, job_when: JobWhen,
) -> None:
    async with Engine(on_pg(settings_factory, pg_url, sink=sink), run=EMAIL) as engine:
        assert engine.db.dialect == "postgresql"
        job_id = await engine.email.enqueue(to="Alice <alice@example.com>", subject="Ready",
                                            body="text", html="<p>x</p>")
        detail = await job_when(engine, job_id, is_sent, "sent")
        stats = await engine.email.stats()
        per_minute = await engine.email.sent_per_minute(5)
    assert [r.message_id for r in sink.received] == [detail.job.message_id]
    assert sink.received[0].recipients == ("alice@example.com",)
    assert [(a.attempt, a.outcome) for a in detail.history] == [(1, "sent")]
    assert (stats.pending, stats.sending, stats.sent, stats.failed) == (0, 0, 1, 0)
    assert stats.sent_last_minute == 1 and sum(per_minute) == 1
    assert query(pg_url, "SELECT status, lease_owner FROM email_jobs") == [("sent", None)]


async def test_a_transient_failure_is_retried_on_the_servers_clock_then_delivered(
    settings_factory: Callable[..., Settings], make_sink: Callable[..., TestSink], pg_url: str,
    job_when: JobWhen,
) -> None:
    sink = make_sink(fail_451=1.0)
    async with Engine(on_pg(settings_factory, pg_url, sink=sink), run=EMAIL) as engine:
        job_id = await engine.email.enqueue(to="r@example.com", subject="s", body="b")
        first = await job_when(engine, job_id,
                               lambda d: d.job.attempts == 1 and d.job.status == "pending")
        sink.behaviour.fail_451 = 0.0
        done = await job_when(engine, job_id, is_sent, "sent")
    assert first.job.next_attempt_at is not None and first.job.last_code == 451
    assert [(a.attempt, a.outcome) for a in done.history] == [(1, "transient"), (2, "sent")]
    # The retry waited its delay (0.3 s + jitter) after the first attempt, on the server.
    assert done.history[1].at - done.history[0].at >= 0.25
    assert len(sink.received) == 1


async def test_a_permanent_failure_fails_and_an_operator_retry_delivers_it(
    settings_factory: Callable[..., Settings], make_sink: Callable[..., TestSink], pg_url: str,
    job_when: JobWhen,
) -> None:
    sink = make_sink(reject=("bounce@*",))
    async with Engine(on_pg(settings_factory, pg_url, sink=sink), run=EMAIL) as engine:
        job_id = await engine.email.enqueue(to="bounce@example.com", subject="s", body="b")
        failed = await job_when(engine, job_id, lambda d: d.job.status == "failed", "failed")
        assert (await engine.email.stats()).failed == 1
        sink.behaviour.reject = ()
        assert await engine.email.retry(job_id=job_id) == [job_id]
        done = await job_when(engine, job_id, is_sent, "sent")
    assert failed.job.last_code == 550
    assert [(a.round, a.outcome) for a in done.history] == [(1, "permanent"), (2, "sent")]
    assert len(sink.received) == 1


async def test_cancelled_jobs_are_counted_found_and_never_sent(
    settings_factory: Callable[..., Settings], sink: TestSink, pg_url: str, job_when: JobWhen,
    wait_for: WaitFor,
) -> None:
    async with Engine(on_pg(settings_factory, pg_url, sink=sink), run=EMAIL) as engine:
        await engine.email.pause()
        ids = await engine.email.enqueue_many([
            {"to": f"user{i}@example.com", "subject": f"Invoice {i}", "body": "b"}
            for i in range(3)])
        assert await engine.email.cancel(job_id=ids[0]) == [ids[0]]
        assert await engine.email.cancel(search='subject:"INVOICE 1"') == [ids[1]]  # any case
        stats = await engine.email.stats()
        assert (stats.pending, stats.cancelled) == (1, 2)
        found = await engine.email.search("status:cancelled")
        assert [j.id for j in found] == [ids[1], ids[0]]
        assert await engine.email.count_matching("invoice") == 3
        await engine.email.resume()
        await job_when(engine, ids[2], is_sent, "sent")
    assert [r.recipients for r in sink.received] == [("user2@example.com",)]
    assert query(pg_url, "SELECT id, status FROM email_jobs ORDER BY id") == [
        (ids[0], "cancelled"), (ids[1], "cancelled"), (ids[2], "sent")]


async def test_a_dead_engines_claim_is_reaped_and_delivered_by_a_live_one(
    settings_factory: Callable[..., Settings], sink: TestSink, pg_url: str, job_when: JobWhen,
) -> None:
    settings = on_pg(settings_factory, pg_url, sink=sink)
    async with Engine(settings, run=[]) as admin:
        job_id = await admin.email.enqueue(to="x@example.com", subject="s", body="b")
    db = await PgDatabase.open(pg_url, migrate=False, pool_size=1)
    try:  # a process that claimed with a 1 s lease, then died before sending
        now = time.time()
        [claimed] = await store.claim(db, owner="dead/w0", now=now, lease_until=now + 1, limit=1)
    finally:
        await db.close()
    assert claimed.id == job_id
    async with Engine(settings, run=EMAIL) as engine:
        done = await job_when(engine, job_id, is_sent, "reaped and sent")
    assert [(a.attempt, a.outcome, a.owner) for a in done.history] == [
        (1, "lost", "dead/w0"), (2, "sent", done.history[1].owner)]
    assert done.history[1].owner != "dead/w0" and len(sink.received) == 1


async def test_two_engines_on_one_database_deliver_each_message_exactly_once(
    settings_factory: Callable[..., Settings], sink: TestSink, pg_url: str, wait_for: WaitFor,
) -> None:
    settings = on_pg(settings_factory, pg_url, sink=sink, email_workers=4)
    total = 400
    async with Engine(settings, run=EMAIL) as a, Engine(settings, run=EMAIL) as b:
        ids = await a.email.enqueue_many([
            {"to": f"u{i}@example.com", "subject": f"s{i}", "body": "b"} for i in range(total)])

        async def all_sent() -> bool:
            return (await b.email.stats()).sent == total

        await wait_for(all_sent, timeout=60, message=f"{total} mails sent")

        async def folded() -> bool:  # the housekeepers fold the count deltas
            rows = query(pg_url, "SELECT count(*), max(id) FROM email_status_deltas")[0]
            return rows[0] <= 10 < rows[1]

        await wait_for(folded, message="status-count deltas folded")
        stats = await a.email.stats()
    got = [r.message_id for r in sink.received]
    assert len(got) == total == len(set(got))
    owners = {o for (o,) in query(pg_url, "SELECT DISTINCT split_part(owner, '/', 1)"
                                  " FROM email_attempts")}
    assert len(owners) == 2  # both engines delivered
    assert query(pg_url, "SELECT count(*), count(DISTINCT job_id) FROM email_attempts") == [
        (total, total)]
    assert (stats.sent, stats.pending, stats.sending) == (total, 0, 0)
    assert sorted(ids) == [r[0] for r in query(pg_url, "SELECT id FROM email_jobs ORDER BY id")]
