"""Delivery over real SMTP: a real database (each test on SQLite and on PostgreSQL), a real
aiosmtpd server on 127.0.0.1, and a FakeClock that the tests move to reach each retry instead
of sleeping through it (on PostgreSQL it stands in for the server's clock: store.server_time;
tests/engine/test_pg_email.py covers retries there on the server's real clock)."""

from __future__ import annotations

from collections.abc import Callable
from email import message_from_bytes
from email.policy import default as default_policy
from typing import TYPE_CHECKING

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.email.models import EmailJobDetail
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import Settings

# Only the email service: these tests are about it alone.
EMAIL = ["email"]

if TYPE_CHECKING:
    from conftest import Idle, JobWhen, TestSink, WaitFor

JITTER = 0.1  # retry_delay() adds up to 10 % of the base delay


def is_sent(d: EmailJobDetail) -> bool:
    return d.job.status == "sent"


def pending_after(attempts: int) -> Callable[[EmailJobDetail], bool]:
    return lambda d: d.job.status == "pending" and d.job.attempts == attempts


def assert_retry_at(value: float, now: float, delay: float) -> None:
    assert now + delay <= value <= now + delay * (1 + JITTER) + 1e-6, (value - now, delay)


async def test_delivers_once_with_message_id_subject_headers_and_html(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    settings = backend_settings_factory(sink=sink)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        job_id = await engine.email.enqueue(
            to="Alice Example <alice@example.com>",
            subject="Your portrait is ready — ünïcode",
            body="Plain text body.\nSecond line.",
            html="<p>HTML <b>body</b></p>",
            headers={"X-Vertex-Kind": "portrait-ready", "Reply-To": "support@vertex.test"},
        )
        detail = await job_when(engine, job_id, is_sent, "sent")
        # Time passing (leases, polls) must not send it again: every worker and the
        # housekeeper have looked at the new time and gone back to sleep.
        clock.advance(600)
        await idle(engine, clock)

    assert len(sink.received) == 1
    got = sink.received[0]
    assert got.sender == "noreply@vertex.test"
    assert got.recipients == ("alice@example.com",)
    assert got.message_id == detail.job.message_id
    assert detail.job.message_id.startswith("<") and detail.job.message_id.endswith("@vertex.test>")
    msg = message_from_bytes(got.data, policy=default_policy)
    assert msg["Subject"] == "Your portrait is ready — ünïcode"
    assert msg["From"] == "Vertex AR <noreply@vertex.test>"
    assert msg["To"] == "Alice Example <alice@example.com>"
    assert msg["X-Vertex-Kind"] == "portrait-ready"
    assert msg["Reply-To"] == "support@vertex.test"
    assert msg["Date"] is not None
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n").strip() == "Plain text body.\nSecond line."
    assert html.get_content().strip() == "<p>HTML <b>body</b></p>"
    assert detail.job.attempts == 1
    assert detail.job.last_error is None
    assert [(a.outcome, a.attempt) for a in detail.history] == [("sent", 1)]


async def test_plain_message_has_no_html_part(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    async with Engine(backend_settings_factory(sink=sink), clock=clock, run=EMAIL) as engine:
        job_id = await engine.email.enqueue(to="bob@example.com", subject="Hi", body="only text")
        await job_when(engine, job_id, is_sent, "sent")
    msg = message_from_bytes(sink.received[0].data, policy=default_policy)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().strip() == "only text"


async def test_multi_recipient_message_is_sent_once_to_every_recipient(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    async with Engine(backend_settings_factory(sink=sink), clock=clock, run=EMAIL) as engine:
        listed = await engine.email.enqueue(
            to=["one@example.com", "Two <two@example.com>"], subject="list", body="b"
        )
        joined = await engine.email.enqueue(
            to="three@example.com, Four <four@example.com>", subject="string", body="b"
        )
        await job_when(engine, listed, is_sent, "sent")
        await job_when(engine, joined, is_sent, "sent")
        detail = await engine.email.get_job(listed)

    assert detail.recipients == ("one@example.com", "two@example.com")
    by_subject = {r.subject: r for r in sink.received}
    assert len(sink.received) == 2
    assert by_subject["list"].recipients == ("one@example.com", "two@example.com")
    assert by_subject["string"].recipients == ("three@example.com", "four@example.com")
    msg = message_from_bytes(by_subject["list"].data, policy=default_policy)
    assert msg["To"] == "one@example.com, Two <two@example.com>"


async def test_451_is_retried_after_each_configured_delay_then_sent(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    sink = make_sink(fail_451=1.0)
    settings = backend_settings_factory(sink=sink, email_retry_delays=(5.0, 10.0, 20.0))
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        seen: list[ev.Event] = []
        engine.events.subscribe(seen.append)
        t0 = clock.time()
        job_id = await engine.email.enqueue(to="carol@example.com", subject="retry me", body="b")

        first = await job_when(engine, job_id, pending_after(1), "pending after attempt 1")
        assert_retry_at(first.job.next_attempt_at, t0, 5.0)
        assert first.job.last_code == 451
        assert "451" in (first.job.last_error or "")
        assert [(a.attempt, a.outcome, a.code) for a in first.history] == [(1, "transient", 451)]

        # Before the delay has passed nothing is tried again (the workers looked at 4 s).
        clock.advance(4.0)
        await idle(engine, clock)
        assert sink.handler.attempts == 1
        assert (await engine.email.get_job(job_id)).job.attempts == 1

        clock.advance(5.0 * (1 + JITTER) - 4.0 + 0.01)
        t1 = clock.time()
        second = await job_when(engine, job_id, pending_after(2), "pending after attempt 2")
        assert_retry_at(second.job.next_attempt_at, t1, 10.0)
        assert [(a.attempt, a.outcome, a.code) for a in second.history] == [
            (1, "transient", 451),
            (2, "transient", 451),
        ]
        assert all("451" in (a.error or "") for a in second.history)

        sink.behaviour.fail_451 = 0.0
        clock.advance(10.0 * (1 + JITTER) + 0.01)
        done = await job_when(engine, job_id, is_sent, "sent")

    assert done.job.attempts == 3
    assert [a.outcome for a in done.history] == ["transient", "transient", "sent"]
    assert len(sink.received) == 1
    assert sink.received[0].message_id == done.job.message_id
    failed_events = [e for e in seen if isinstance(e, ev.EmailFailed)]
    assert [(e.attempt, e.retry_at is not None) for e in failed_events] == [(1, True), (2, True)]
    assert failed_events[0].retry_at == first.job.next_attempt_at
    assert [e.job_id for e in seen if isinstance(e, ev.EmailSent)] == [job_id]
    # The first 4xx reply is followed by RSET on the same session; the second in a row drops
    # that session, and the third attempt opens a fresh one.
    assert sink.connections == 2


async def test_repeated_451_fails_after_max_attempts(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    sink = make_sink(fail_451=1.0)
    settings = backend_settings_factory(
        sink=sink, email_retry_max_attempts=3, email_retry_delays=(1.0, 1.0, 1.0)
    )
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        seen: list[ev.Event] = []
        engine.events.subscribe(seen.append)
        job_id = await engine.email.enqueue(to="dave@example.com", subject="s", body="b")
        for attempt in (1, 2):
            await job_when(engine, job_id, pending_after(attempt), f"pending after {attempt}")
            clock.advance(1.2)
        done = await job_when(engine, job_id, lambda d: d.job.status == "failed", "failed")
        # Failed for good: no more attempts however much time passes.
        clock.advance(3600)
        await idle(engine, clock)
        after = await engine.email.get_job(job_id)

    assert done.job.attempts == 3
    assert done.job.last_code == 451
    assert done.job.finished_at == clock.time() - 3600
    assert [(a.attempt, a.outcome, a.code) for a in after.history] == [
        (1, "transient", 451),
        (2, "transient", 451),
        (3, "transient", 451),
    ]
    assert after.job.status == "failed"
    assert sink.handler.attempts == 3
    assert sink.received == []
    failed_events = [e for e in seen if isinstance(e, ev.EmailFailed)]
    assert [e.retry_at is None for e in failed_events] == [False, False, True]


async def test_550_fails_at_once_without_retry(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    async with Engine(backend_settings_factory(sink=sink_550), clock=clock, run=EMAIL) as engine:
        seen: list[ev.Event] = []
        engine.events.subscribe(seen.append)
        job_id = await engine.email.enqueue(to="bounce@example.com", subject="s", body="b")
        done = await job_when(engine, job_id, lambda d: d.job.status == "failed", "failed")
        clock.advance(3600)
        await idle(engine, clock)
        after = await engine.email.get_job(job_id)

    assert done.job.attempts == 1
    assert done.job.last_code == 550
    assert "bounce@example.com" in (done.job.last_error or "")
    assert [(a.outcome, a.code) for a in after.history] == [("permanent", 550)]
    assert after.job.status == "failed"
    assert sink_550.received == []
    assert [(e.job_id, e.retry_at) for e in seen if isinstance(e, ev.EmailFailed)] == [
        (job_id, None)
    ]


async def test_partial_refusal_is_sent_with_the_refusal_recorded(
    backend_settings_factory: Callable[..., Settings],
    sink_550: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    async with Engine(backend_settings_factory(sink=sink_550), clock=clock, run=EMAIL) as engine:
        job_id = await engine.email.enqueue(
            to=["erin@example.com", "bounce-erin@example.com"], subject="half", body="b"
        )
        done = await job_when(engine, job_id, is_sent, "sent")
        clock.advance(3600)
        await idle(engine, clock)
        after = await engine.email.get_job(job_id)

    assert after.job.status == "sent"
    assert done.job.attempts == 1
    assert len(sink_550.received) == 1
    assert sink_550.received[0].recipients == ("erin@example.com",)
    [attempt] = after.history
    assert attempt.outcome == "sent"
    assert "bounce-erin@example.com" in (attempt.error or "")
    assert "550" in (attempt.error or "")


async def test_connection_dropped_mid_data_pauses_for_the_relay_then_delivers(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    sink = make_sink(drop_every=1)
    async with Engine(backend_settings_factory(sink=sink), clock=clock, run=EMAIL) as engine:
        t0 = clock.time()
        job_id = await engine.email.enqueue(to="frank@example.com", subject="s", body="b")
        first = await job_when(engine, job_id, pending_after(1), "pending after a drop")
        assert first.job.last_code is None
        assert first.job.last_error
        assert [a.outcome for a in first.history] == ["transient"]
        # A dropped session is the relay's failure: due again as soon as the relay answers a
        # probe, not after the message's own retry delay.
        assert first.job.next_attempt_at == t0
        assert engine.email.relay.is_open
        assert sink.received == []

        sink.behaviour.drop_every = 0
        clock.advance(1.2)
        done = await job_when(engine, job_id, is_sent, "sent")

    assert [a.outcome for a in done.history] == ["transient", "sent"]
    assert len(sink.received) == 1
    assert sink.received[0].message_id == done.job.message_id
    # The dropped connection was not reused: the probe and the retry each opened one.
    assert sink.connections == 3


async def test_every_second_message_dropped_all_delivered_exactly_once(
    backend_settings_factory: Callable[..., Settings],
    sink_drop: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    async with Engine(backend_settings_factory(sink=sink_drop), clock=clock, run=EMAIL) as engine:
        ids = await engine.email.enqueue_many(
            {"to": f"user{i}@example.com", "subject": f"m{i}", "body": "b"} for i in range(6)
        )

        async def all_sent() -> bool:
            # Retries are due 1-1.1 s of fake time later; keep time moving until done.
            clock.advance(1.2)
            stats = await engine.email.stats()
            return stats.sent == len(ids)

        await wait_for(all_sent, message="every message sent")
    subjects = sorted(r.subject or "" for r in sink_drop.received)
    assert subjects == sorted(f"m{i}" for i in range(6))


async def test_occasional_451s_every_message_delivered_exactly_once(
    backend_settings_factory: Callable[..., Settings],
    sink_451: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    n = 20
    # Many attempts allowed: with half the replies 451, none should run out.
    settings = backend_settings_factory(sink=sink_451, email_retry_max_attempts=30)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        ids = await engine.email.enqueue_many(
            {"to": f"v{i}@example.com", "subject": f"v{i}", "body": "b"} for i in range(n)
        )

        async def all_sent() -> bool:
            clock.advance(1.2)
            return (await engine.email.stats()).sent == n

        await wait_for(all_sent, message="every message sent")
        details = [await engine.email.get_job(i) for i in ids]
    assert sorted(r.subject or "" for r in sink_451.received) == sorted(f"v{i}" for i in range(n))
    retried = [d for d in details if d.job.attempts > 1]
    assert retried, "some messages should have met a 451"
    for d in retried:
        *early, last = d.history
        assert {(a.outcome, a.code) for a in early} == {("transient", 451)}
        assert last.outcome == "sent"
    assert sink_451.handler.attempts == sum(d.job.attempts for d in details)


async def test_server_that_never_answers_times_out_as_transient(
    backend_settings_factory: Callable[..., Settings],
    sink_hang: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    settings = backend_settings_factory(sink=sink_hang, smtp_timeout=0.5)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        job_id = await engine.email.enqueue(to="gina@example.com", subject="s", body="b")
        first = await job_when(engine, job_id, pending_after(1), "pending after a timeout")
        assert "timeout" in (first.job.last_error or "").lower()
        assert [a.outcome for a in first.history] == ["transient"]

        sink_hang.behaviour.hang = False
        clock.advance(1.2)
        done = await job_when(engine, job_id, is_sent, "sent after the server recovered")
    assert [a.outcome for a in done.history] == ["transient", "sent"]
    assert len(sink_hang.received) == 1


async def test_connection_refused_is_a_relay_failure(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock, job_when: JobWhen
) -> None:
    settings = backend_settings_factory()  # SMTP port with nothing listening
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        t0 = clock.time()
        job_id = await engine.email.enqueue(to="hank@example.com", subject="s", body="b")
        first = await job_when(engine, job_id, pending_after(1), "pending after refusal")
    assert first.job.last_code is None
    assert "connect" in (first.job.last_error or "").lower()
    assert [a.outcome for a in first.history] == ["transient"]
    # Held back by the relay circuit, not by the message's retry delay.
    assert first.job.next_attempt_at == t0


async def test_connections_are_reused_across_messages(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    n = 40
    settings = backend_settings_factory(sink=sink, email_workers=2)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await engine.email.enqueue_many(
            {"to": f"u{i}@example.com", "subject": f"n{i}", "body": "b"} for i in range(n)
        )

        async def all_sent() -> bool:
            return (await engine.email.stats()).sent == n

        await wait_for(all_sent, message=f"{n} messages sent")
    assert len(sink.received) == n
    assert len({r.message_id for r in sink.received}) == n
    # One connection per worker at most, not one per message.
    assert 1 <= sink.connections <= 2


async def test_message_id_is_stable_across_attempts(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    sink = make_sink(drop_every=1)
    async with Engine(backend_settings_factory(sink=sink), clock=clock, run=EMAIL) as engine:
        job_id = await engine.email.enqueue(to="ivy@example.com", subject="s", body="b")
        before = await job_when(engine, job_id, pending_after(1), "pending after a drop")
        sink.behaviour.drop_every = 0
        clock.advance(1.2)
        after = await job_when(engine, job_id, is_sent, "sent")
    assert before.job.message_id == after.job.message_id == sink.received[0].message_id
