"""Operator tools of the email queue: stats, listing, job detail, retry, pause/resume, drain,
cleanup, and the audit log every action writes. Each test on SQLite and on PostgreSQL, time
moved by a FakeClock on both (on PostgreSQL it stands in for the server's clock)."""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from support.db import query

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import NotFound, UsageError, VertexError
from vertex_tui.engine.service import ServiceState
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import email as store

# Only the email service: these tests are about it alone.
EMAIL = ["email"]

if TYPE_CHECKING:
    from conftest import Idle, JobWhen, TestSink, WaitFor

DAY = 86_400.0


def audit_rows(settings: Settings, action: str) -> list[tuple[str, int | None, dict[str, Any]]]:
    """(actor, count, detail) of each audit entry for `action`, oldest first."""
    rows = query(
        settings,
        "SELECT actor, count, detail FROM audit_log WHERE action = ? ORDER BY id",
        (action,),
    )
    return [(actor, count, json.loads(detail)) for actor, count, detail in rows]


def msg(to: str, subject: str = "s") -> dict[str, str]:
    return {"to": to, "subject": subject, "body": "b"}


async def settle(engine: Engine, wait_for: WaitFor, **expected: int) -> None:
    """Wait until the queue's counts by status are `expected` (others zero)."""
    want = {"pending": 0, "sending": 0, "sent": 0, "failed": 0, **expected}

    async def check() -> bool:
        s = await engine.email.stats()
        return {k: getattr(s, k) for k in want} == want

    await wait_for(check, message=f"queue counts {want}")


async def make_jobs(
    engine: Engine, wait_for: WaitFor, *, good: int, bad: int
) -> tuple[list[int], list[int]]:
    """Deliver `good` messages and fail `bad` ones (550 from the sink): (sent ids, failed ids)."""
    before = await engine.email.stats()
    sent = await engine.email.enqueue_many(
        [msg(f"user{i}@example.com", f"Invoice {i}") for i in range(good)]
    )
    failed = await engine.email.enqueue_many(
        [msg(f"bounce-{i}@example.com", f"Welcome {i}") for i in range(bad)]
    )
    await settle(engine, wait_for, sent=before.sent + good, failed=before.failed + bad)
    return sent, failed


# ---- stats, listing, detail ------------------------------------------------------------------


async def test_stats_counts_oldest_pending_age_and_sent_last_minute(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    async with Engine(backend_settings_factory(sink=sink_550), clock=clock, run=EMAIL) as engine:
        empty = await engine.email.stats()
        assert (empty.pending, empty.sent, empty.oldest_pending_age) == (0, 0, None)

        await engine.email.pause()
        t0 = clock.time()
        await engine.email.enqueue_many(
            [msg("a@example.com"), msg("b@example.com"), msg("bounce@example.com")]
        )
        clock.advance(100)
        await engine.email.enqueue(to="c@example.com", subject="s", body="b")
        stats = await engine.email.stats()
        assert (stats.pending, stats.sending, stats.sent, stats.failed) == (4, 0, 0, 0)
        assert stats.oldest_pending_at == t0
        assert stats.oldest_pending_age == 100
        assert stats.paused is True
        assert stats.to_json()["oldest_pending_age_seconds"] == 100

        await engine.email.resume()
        await settle(engine, wait_for, sent=3, failed=1)
        stats = await engine.email.stats()
        assert stats.sent_last_minute == 3
        assert stats.oldest_pending_age is None
        assert stats.paused is False
        assert sum(await engine.email.sent_per_minute(5)) == 3

        clock.advance(61)
        later = await engine.email.stats()
        assert later.sent_last_minute == 0
        assert later.sent == 3


async def test_list_filters_by_status_and_search_and_pages(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    async with Engine(backend_settings_factory(sink=sink_550), clock=clock, run=EMAIL) as engine:
        sent, failed = await make_jobs(engine, wait_for, good=7, bad=5)
        percent = await engine.email.enqueue(to="p@example.com", subject="100% done", body="b")
        await settle(engine, wait_for, sent=8, failed=5)
        q = engine.email

        failed_list = await q.list_jobs(status="failed")
        assert [j.id for j in failed_list] == sorted(failed, reverse=True)
        assert all(j.status == "failed" and j.last_code == 550 for j in failed_list)
        assert {j.id for j in await q.list_jobs(status="sent")} == {*sent, percent}
        assert await q.list_jobs(status="pending") == []

        assert {j.id for j in await q.list_jobs(search="Invoice")} == set(sent)
        assert [j.to for j in await q.list_jobs(search="bounce-3")] == ["bounce-3@example.com"]
        assert [j.id for j in await q.list_jobs(search="invoice", status="failed")] == []
        # LIKE wildcards in the search are literal characters.
        assert [j.id for j in await q.list_jobs(search="%")] == [percent]
        assert await q.list_jobs(search="_") == []

        every = sorted([*sent, *failed, percent], reverse=True)
        pages: list[list[int]] = []
        before: int | None = None
        while True:
            page = [j.id for j in await q.list_jobs(limit=4, before_id=before)]
            if not page:
                break
            pages.append(page)
            before = page[-1]
        assert [len(p) for p in pages] == [4, 4, 4, 1]
        assert [i for p in pages for i in p] == every


async def test_get_job_returns_content_and_history(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    async with Engine(backend_settings_factory(sink=sink_550), clock=clock, run=EMAIL) as engine:
        job_id = await engine.email.enqueue(
            to=["bounce@example.com"],
            subject="detail",
            body="text",
            html="<p>x</p>",
            headers={"X-Kind": "k"},
        )
        detail = await job_when(engine, job_id, lambda d: d.job.status == "failed", "failed")
        with pytest.raises(NotFound):
            await engine.email.get_job(job_id + 1000)
    assert detail.recipients == ("bounce@example.com",)
    assert (detail.body, detail.html, detail.headers) == ("text", "<p>x</p>", {"X-Kind": "k"})
    assert detail.sender == "Vertex AR <noreply@vertex.test>"
    [attempt] = detail.history
    assert (attempt.round, attempt.attempt, attempt.outcome, attempt.code) == (
        1,
        1,
        "permanent",
        550,
    )
    assert attempt.owner.endswith("/w0")
    doc = detail.to_json()
    assert doc["history"][0]["outcome"] == "permanent"
    assert doc["status"] == "failed" and doc["next_attempt_at"] is None


# ---- retry -------------------------------------------------------------------------------------


async def test_retry_one_requires_a_failed_job(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    async with Engine(backend_settings_factory(sink=sink_550), clock=clock, run=EMAIL) as engine:
        sent, failed = await make_jobs(engine, wait_for, good=1, bad=1)
        await engine.email.pause()
        pending = await engine.email.enqueue(to="wait@example.com", subject="s", body="b")
        with pytest.raises(UsageError, match="sent"):
            await engine.email.retry(job_id=sent[0])
        with pytest.raises(UsageError, match="pending"):
            await engine.email.retry(job_id=pending)
        with pytest.raises(NotFound):
            await engine.email.retry(job_id=99_999)
        assert await engine.email.retry(job_id=failed[0]) == failed
        job = (await engine.email.get_job(failed[0])).job
    assert (job.status, job.round, job.attempts, job.finished_at) == ("pending", 2, 0, None)
    assert [count for _, count, _ in audit_rows(engine.settings, "email.retry")] == [1]


async def test_retried_job_gets_a_fresh_round_of_attempts_and_keeps_its_history(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    sink = make_sink(fail_451=1.0)
    settings = backend_settings_factory(sink=sink, email_retry_max_attempts=2,
                                        email_retry_delays=(1.0,))
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        job_id = await engine.email.enqueue(to="r@example.com", subject="s", body="b")
        await job_when(engine, job_id, lambda d: d.job.attempts == 1 and d.job.status == "pending")
        clock.advance(1.2)
        failed = await job_when(engine, job_id, lambda d: d.job.status == "failed", "failed")
        assert failed.job.attempts == 2

        # A new round: two more attempts allowed, the first fails again, the second gets through.
        assert await engine.email.retry() == [job_id]
        await job_when(
            engine,
            job_id,
            lambda d: d.job.round == 2 and d.job.attempts == 1 and d.job.status == "pending",
        )
        sink.behaviour.fail_451 = 0.0
        clock.advance(1.2)
        done = await job_when(engine, job_id, lambda d: d.job.status == "sent", "sent")

    assert (done.job.round, done.job.attempts) == (2, 2)
    assert [(a.round, a.attempt, a.outcome) for a in done.history] == [
        (1, 1, "transient"),
        (1, 2, "transient"),
        (2, 1, "transient"),
        (2, 2, "sent"),
    ]
    assert len(sink.received) == 1


async def test_retry_all_with_limit_and_exact_ids(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    settings = backend_settings_factory(sink=sink_550)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        sent, failed = await make_jobs(engine, wait_for, good=2, bad=6)
    db = settings
    # Operators act on a database an engine elsewhere may be serving: no workers here, so
    # retried jobs stay pending and the results can be checked exactly.
    async with Engine(settings, clock=clock, run=[]) as ops:
        q = ops.email
        assert await q.retry(limit=2) == failed[:2]

        # Exact ids: only those still failed are retried (sent, pending, unknown are skipped).
        chosen = [failed[0], failed[2], sent[0], failed[3], 99_999]
        assert await q.retry(ids=chosen) == [failed[2], failed[3]]

        rest = await q.retry()
        assert rest == failed[4:]
        assert await q.retry() == []
        stats = await q.stats()
        assert (stats.pending, stats.failed, stats.sent) == (6, 0, 2)
        jobs = {j.id: j for j in await q.list_jobs(status="pending")}
        assert set(jobs) == set(failed)
        assert all(j.round == 2 and j.attempts == 0 for j in jobs.values())

    entries = audit_rows(db, "email.retry")
    assert [count for _, count, _ in entries] == [2, 2, 2, 0]
    assert entries[1][2]["requested"] == chosen
    assert entries[1][2]["ids"] == [failed[2], failed[3]]
    assert entries[0][2]["limit"] == 2


# ---- pause, resume, drain ---------------------------------------------------------------------


async def test_pause_stops_delivery_everywhere_and_resume_delivers(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
    idle: Idle,
) -> None:
    poll = 2.0
    settings = backend_settings_factory(sink=sink, email_poll_interval=poll, email_workers=2)
    async with (
        Engine(settings, clock=clock, run=EMAIL) as one,
        Engine(settings, clock=clock, run=EMAIL) as two,
    ):
        seen_two: list[ev.Event] = []
        two.events.subscribe(seen_two.append)
        await one.email.pause()
        assert one.email.state() is ServiceState.PAUSED
        assert (await one.email.status())["state"] == "paused"
        with pytest.raises(UsageError, match="paused"):
            await one.email.drain()

        # The other engine follows the flag within one poll interval of its clock.
        clock.advance(poll)
        await wait_for(lambda: two.email.state() is ServiceState.PAUSED, message="two paused")
        assert any(isinstance(e, ev.QueuePaused) for e in seen_two)

        await one.email.enqueue_many([msg(f"a{i}@example.com") for i in range(3)])
        await two.email.enqueue_many([msg(f"b{i}@example.com") for i in range(3)])
        for _ in range(5):  # polls come and go; nothing is sent while paused
            clock.advance(poll)
            await idle(one, clock, two)  # every task of both engines looked and slept again
        assert sink.handler.attempts == 0
        stats = await two.email.stats()
        assert (stats.pending, stats.sending, stats.sent, stats.paused) == (6, 0, 0, True)

        await two.email.resume()
        assert two.email.state() is not ServiceState.PAUSED
        await settle(two, wait_for, sent=6)
        clock.advance(poll)
        await wait_for(lambda: one.email.state() is not ServiceState.PAUSED, message="resume")
        assert any(isinstance(e, ev.QueueResumed) for e in seen_two)

    assert len(sink.received) == 6
    actions = [a for (a,) in query(settings, "SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["email.pause", "email.resume"]


async def test_pause_survives_a_restart(
    backend_settings_factory: Callable[..., Settings], sink: TestSink, clock: FakeClock, idle: Idle
) -> None:
    settings = backend_settings_factory(sink=sink)
    async with Engine(settings, clock=clock, run=[]) as ops:
        await ops.email.pause()
        await ops.email.enqueue(to="x@example.com", subject="s", body="b")
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        assert engine.email.state() is ServiceState.PAUSED
        clock.advance(5)
        await idle(engine, clock)
        assert (await engine.email.stats()).pending == 1
    assert sink.received == []


async def test_drain_delivers_everything_due_then_returns_counts(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    idle: Idle,
) -> None:
    # A long poll and a fake clock that never moves: only drain makes the workers look.
    settings = backend_settings_factory(sink=sink_550, email_poll_interval=30.0, email_workers=2)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await idle(engine, clock)
        async with Engine(settings, clock=clock, run=[]) as other:
            await other.email.enqueue_many(
                [msg(f"ok{i}@example.com") for i in range(20)]
                + [msg(f"bounce{i}@example.com") for i in range(3)]
            )
        result = await engine.email.drain(timeout=30)
        stats = await engine.email.stats()
    assert result == {"sent": 20, "failed": 3, "retrying": 0}
    assert (stats.pending, stats.sending, stats.sent, stats.failed) == (0, 0, 20, 3)
    assert len(sink_550.received) == 20
    [(actor, count, detail)] = audit_rows(settings, "email.drain")
    assert actor == getpass.getuser()
    assert count == 23
    assert detail["sent"] == 20 and detail["failed"] == 3


async def test_drain_counts_transient_failures_as_retrying_and_does_not_wait_for_them(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    idle: Idle,
) -> None:
    sink = make_sink(fail_451=1.0)
    settings = backend_settings_factory(sink=sink, email_poll_interval=30.0)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await idle(engine, clock)
        async with Engine(settings, clock=clock, run=[]) as other:
            await other.email.enqueue_many([msg(f"t{i}@example.com") for i in range(3)])
        result = await engine.email.drain(timeout=30)
        stats = await engine.email.stats()
    assert result == {"sent": 0, "failed": 0, "retrying": 3}
    assert stats.pending == 3
    assert stats.next_attempt_at is not None and stats.next_attempt_at > clock.time()


async def test_drain_does_not_miss_a_claim_made_while_it_checks(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    idle: Idle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Regression: drain read its in-memory counters, then queried for due jobs. A worker that
    # claimed the jobs during that query left both "nothing due" and "nothing in flight"
    # true, and drain returned at once with the mail still on the wire (from the CLI, the
    # engine then stopped). A slow query and a slower server make that window certain.
    sink = make_sink(delay=1.0)
    real_any_due = store.any_due

    async def slow_any_due(db: Any, now: float) -> bool:
        await asyncio.sleep(0.2)
        return await real_any_due(db, now)

    settings = backend_settings_factory(sink=sink, email_poll_interval=30.0)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await idle(engine, clock)
        async with Engine(settings, clock=clock, run=[]) as other:
            await other.email.enqueue(to="slow@example.com", subject="s", body="b")
        monkeypatch.setattr(store, "any_due", slow_any_due)
        result = await engine.email.drain(timeout=30)
        stats = await engine.email.stats()
        received = len(sink.received)
    assert result == {"sent": 1, "failed": 0, "retrying": 0}
    assert (stats.pending, stats.sending, stats.sent) == (0, 0, 1)
    assert received == 1


async def test_a_drain_since_start_counts_what_the_workers_sent_before_it_was_called(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    # `vertex-tui email drain`: its engine's workers start with it and may deliver a job
    # before drain() is called. Counted from the call, that drain said "sent 0" for the mail
    # it had just delivered (seen in test_tls_cli under load); counted since start it is 1.
    settings = backend_settings_factory(sink=sink)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        seen: list[ev.Event] = []
        engine.events.subscribe(seen.append)
        await engine.email.enqueue(to="early@example.com", subject="s", body="b")  # wakes them
        # Published once the outcome is committed and counted: the workers' own delivery.
        await wait_for(lambda: any(isinstance(e, ev.EmailSent) for e in seen),
                       message="the workers' own delivery")
        assert await engine.email.drain(timeout=30) == {"sent": 0, "failed": 0, "retrying": 0}
        since = await engine.email.drain(timeout=30, since_start=True)
    assert since == {"sent": 1, "failed": 0, "retrying": 0}


async def test_drain_needs_running_workers(backend_settings: Settings, clock: FakeClock) -> None:
    async with Engine(backend_settings, clock=clock, run=[]) as engine:
        with pytest.raises(VertexError, match="workers"):
            await engine.email.drain()


# ---- cleanup -------------------------------------------------------------------------------------


async def test_cleanup_deletes_only_finished_jobs_older_than_n_days(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    settings = backend_settings_factory(sink=sink_550)
    db = settings
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        old_sent, old_failed = await make_jobs(engine, wait_for, good=3, bad=2)
        clock.advance(6 * DAY)
        new_sent, new_failed = await make_jobs(engine, wait_for, good=1, bad=1)
        await engine.email.pause()
        old_pending = await engine.email.enqueue(to="later@example.com", subject="s", body="b")
        clock.advance(4 * DAY)  # now: old ones finished 10 days ago, new ones 4 days ago

        with pytest.raises(UsageError):
            await engine.email.cleanup(-1)
        assert await engine.email.cleanup(5) == 5
        left = {j.id for j in await engine.email.list_jobs(limit=100)}
        stats = await engine.email.stats()
        assert await engine.email.cleanup(5) == 0

    assert left == {*new_sent, *new_failed, old_pending}
    assert (stats.pending, stats.sent, stats.failed) == (1, 1, 1)
    gone = [*old_sent, *old_failed]
    marks = ",".join("?" * len(gone))
    assert query(
        db, f"SELECT count(*) FROM email_attempts WHERE job_id IN ({marks})", tuple(gone)
    ) == [(0,)]
    entries = audit_rows(db, "email.cleanup")
    assert [(actor, count, d["older_than_days"]) for actor, count, d in entries] == [
        (getpass.getuser(), 5, 5),
        (getpass.getuser(), 0, 5),
    ]


# ---- audit ---------------------------------------------------------------------------------------


async def test_every_operator_action_is_audited_with_the_os_user(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    settings = backend_settings_factory(sink=sink_550)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await make_jobs(engine, wait_for, good=1, bad=2)
        t = clock.time()
        await engine.email.pause()
        await engine.email.resume()
        await engine.email.retry(limit=1)
        await settle(engine, wait_for, sent=1, failed=2)
        await engine.email.drain()
        clock.advance(1)
        await engine.email.cleanup(0)
    rows = query(settings, "SELECT at, actor, action, count FROM audit_log ORDER BY id")
    assert [(action, count) for _, _, action, count in rows] == [
        ("email.pause", None),
        ("email.resume", None),
        ("email.retry", 1),
        ("email.drain", 0),
        ("email.cleanup", 3),
    ]
    assert {actor for _, actor, _, _ in rows} == {getpass.getuser()}
    assert [at for at, _, _, _ in rows] == [t, t, t, t, t + 1]  # the engine's clock
