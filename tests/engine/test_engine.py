"""The Engine as an async context manager: services, heartbeat lease, events, and a stop that
finishes in-flight sends and hands back what it had claimed but not sent.

Every test runs on SQLite and on PostgreSQL (`backend`), on a FakeClock: on PostgreSQL, where
lease and retry expiries are set and compared on the database server's clock, the fake clock
stands in for the server's (store.server_time), so the same exact times hold on both.
(tests/engine/test_pg_server_time.py covers engines on skewed real clocks.)"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from support.db import query

from vertex_tui.engine import engine as engine_module
from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock, isoformat
from vertex_tui.engine.engine import HEARTBEAT_EVERY, HEARTBEAT_TTL, Engine
from vertex_tui.engine.service import ServiceState
from vertex_tui.engine.settings import Settings

if TYPE_CHECKING:
    from conftest import JobWhen, TestSink, WaitFor

EMAIL = ["email"]


def jobs(settings: Settings) -> dict[int, tuple[Any, ...]]:
    """id → (status, attempts, lease_owner, lease_expires_at) of every job."""
    rows = query(
        settings, "SELECT id, status, attempts, lease_owner, lease_expires_at FROM email_jobs"
    )
    return {r[0]: tuple(r[1:]) for r in rows}


# ---- lifetime --------------------------------------------------------------------------------


async def test_engine_starts_every_registered_service_and_stops_them_on_exit(
    backend_settings: Settings, clock: FakeClock
) -> None:
    seen: list[ev.Event] = []
    engine = Engine(backend_settings, clock=clock)
    engine.events.subscribe(seen.append)
    with pytest.raises(RuntimeError, match="not open"):
        _ = engine.email
    async with engine as opened:
        assert opened is engine
        assert engine.running() == engine.registry.names()
        assert "email" in engine.running()
        assert engine.email.state() is not ServiceState.STOPPED
        started = [e.service for e in seen if isinstance(e, ev.ServiceStarted)]
        assert set(engine.running()) <= set(started)
        status = await engine.status()
        assert set(status["services"]) >= {"email", "backup", "lifecycle", "video"}
        assert status["services"]["email"]["state"] in {"idle", "running"}
        email = engine.email
    assert engine.running() == []
    assert email.state() is ServiceState.STOPPED
    stopped = [e.service for e in seen if isinstance(e, ev.ServiceStopped)]
    # Stopped together under one grace period, each exactly once.
    assert sorted(stopped) == sorted(started)
    with pytest.raises(RuntimeError, match="not open"):
        _ = engine.db


async def test_engine_with_no_services_is_usable_but_runs_nothing(
    backend_settings: Settings, clock: FakeClock
) -> None:
    seen: list[ev.Event] = []
    engine = Engine(backend_settings, clock=clock, run=[])
    engine.events.subscribe(seen.append)
    async with engine:
        assert engine.running() == []
        job_id = await engine.email.enqueue(to="a@example.com", subject="s", body="b")
        assert (await engine.email.get_job(job_id)).job.status == "pending"
        # A query-only engine (the CLI) does not claim to be alive.
        assert query(backend_settings, "SELECT count(*) FROM leases") == [(0,)]
        assert (await engine.status())["engines"] == []
    assert not any(isinstance(e, ev.ServiceStarted) for e in seen)


async def test_heartbeat_lease_is_held_renewed_and_released(
    backend_settings: Settings, clock: FakeClock, wait_for: WaitFor
) -> None:
    settings = backend_settings
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        name = engine.heartbeat_name
        t0 = clock.time()
        [(held, owner, acquired, expires)] = query(
            settings, "SELECT name, owner, acquired_at, expires_at FROM leases")
        assert (held, owner) == (name, engine.owner)
        assert (acquired, expires) == (t0, t0 + HEARTBEAT_TTL)
        assert [e["owner"] for e in (await engine.status())["engines"]] == [engine.owner]

        clock.advance(HEARTBEAT_EVERY)

        def renewed() -> bool:
            [(since, until)] = query(
                settings, "SELECT acquired_at, expires_at FROM leases WHERE name = ?", (name,))
            return since == acquired and until == t0 + HEARTBEAT_EVERY + HEARTBEAT_TTL

        await wait_for(renewed, message="the heartbeat to be renewed")
        # Another engine on the same database sees this one alive.
        async with Engine(settings, clock=clock, run=[]) as other:
            assert engine.owner in [e["owner"] for e in (await other.status())["engines"]]
    assert query(settings, "SELECT count(*) FROM leases") == [(0,)]


async def test_an_engine_that_stopped_beating_is_no_longer_alive(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        async with Engine(
            settings, clock=FakeClock(clock.time() + HEARTBEAT_TTL + 1), run=[]
        ) as later:
            assert engine.owner in [e["owner"] for e in (await engine.status())["engines"]]
            # Seen past the lease, the heartbeat has expired.
            assert engine.owner not in [e["owner"] for e in (await later.status())["engines"]]


async def test_an_attached_view_shows_next_passes_only_while_an_engine_runs_them(
    backend_settings: Settings, clock: FakeClock
) -> None:
    """A process that runs no service (an attached console) shows lifecycle as idle with the
    next pass the running engine published; from an engine that published none (an older
    release), an interval after the last pass; and as stopped with no next pass when no engine
    is alive."""
    settings = backend_settings
    async with Engine(settings, clock=clock, run=[]) as attached:
        async with Engine(settings, clock=clock, run=["lifecycle"]) as runner:
            assert (await runner.lifecycle.check())["status"] == "ok"
            published = (await runner.lifecycle.status())["next_run"]
            seen = (await attached.status())["services"]["lifecycle"]
            assert seen["state"] == "idle"
            assert seen["next_run"] == published is not None
        started = query(settings, "SELECT max(started_at) FROM service_runs"
                        " WHERE service = 'lifecycle'")[0][0]
        # An engine alive that published no schedule.
        now = clock.time()
        await attached.db.write(
            "INSERT INTO leases (name, owner, acquired_at, expires_at) VALUES (?, ?, ?, ?)",
            ("engine:older", "older", now, now + HEARTBEAT_TTL))
        seen = (await attached.status())["services"]["lifecycle"]
        assert seen["state"] == "idle"
        assert seen["next_run"] == isoformat(started + attached.lifecycle.interval)
        await attached.db.write("DELETE FROM leases WHERE name = 'engine:older'")
        alone = (await attached.status())["services"]["lifecycle"]
        assert (alone["state"], alone["next_run"]) == ("stopped", None)


# ---- events ------------------------------------------------------------------------------------


async def test_events_are_published_to_subscribers(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    sink = make_sink(reject=("bounce@*",))
    settings = backend_settings_factory(sink=sink, email_retry_delays=(30.0,))
    engine = Engine(settings, clock=clock, run=EMAIL)
    seen: list[ev.Event] = []
    engine.events.subscribe(seen.append)
    queue, unsubscribe = engine.events.queue()
    async with engine:
        ok = await engine.email.enqueue(to="ok@example.com", subject="s", body="b")
        bad = await engine.email.enqueue(to="bounce@example.com", subject="s", body="b")
        await job_when(engine, ok, lambda d: d.job.status == "sent", "sent")
        await job_when(engine, bad, lambda d: d.job.status == "failed", "failed")
        sink.behaviour.fail_451 = 1.0
        before = clock.time()
        later = await engine.email.enqueue(to="later@example.com", subject="s", body="b")
        retrying = await job_when(
            engine, later, lambda d: d.job.status == "pending" and d.job.attempts == 1, "tried once"
        )
        unsubscribe()
        after = clock.time()
    kinds = [type(e) for e in seen]
    assert kinds[0] is ev.ServiceStarted and kinds[-1] is ev.ServiceStopped
    assert [e.service for e in seen if isinstance(e, ev.ServiceStarted)] == ["email"]
    enqueued = [e for e in seen if isinstance(e, ev.EmailEnqueued)]
    assert [(e.count, e.job_ids) for e in enqueued] == [(1, (ok,)), (1, (bad,)), (1, (later,))]
    [sent] = [e for e in seen if isinstance(e, ev.EmailSent)]
    assert (sent.job_id, sent.attempt, sent.message_id) == (ok, 1, sink.received[0].message_id)
    failed = {e.job_id: e for e in seen if isinstance(e, ev.EmailFailed)}
    assert failed[bad].retry_at is None
    assert "550" in failed[bad].error
    retry_at = failed[later].retry_at or 0
    assert clock.time() + 30 <= retry_at <= clock.time() + 33
    # The job is due that delay after the engine's clock.
    delay = retry_at - clock.time()
    assert before <= (retrying.job.next_attempt_at or 0) - delay <= after
    assert retrying.job.next_attempt_at == retry_at
    assert "451" in failed[later].error
    assert all(e.at == clock.time() for e in seen)  # stamped with the engine's clock
    # The queue subscriber got the same events until it unsubscribed (the stop came later).
    queued = [queue.get_nowait() for _ in range(queue.qsize())]
    assert queued == seen[: len(queued)]
    assert not any(isinstance(e, ev.ServiceStopped) for e in queued)


async def test_a_failing_subscriber_does_not_break_delivery(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
) -> None:
    engine = Engine(backend_settings_factory(sink=sink), clock=clock, run=EMAIL)

    def broken(event: ev.Event) -> None:
        raise RuntimeError("subscriber bug")

    engine.events.subscribe(broken)
    async with engine:
        job_id = await engine.email.enqueue(to="a@example.com", subject="s", body="b")
        await job_when(engine, job_id, lambda d: d.job.status == "sent", "sent")
    assert len(sink.received) == 1


# ---- stopping ------------------------------------------------------------------------------------


async def test_stop_finishes_the_send_in_flight_and_hands_back_unsent_claims(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    wait_for: WaitFor,
) -> None:
    slow = make_sink(delay=0.5)
    settings = backend_settings_factory(sink=slow, email_workers=1)
    seen: list[ev.Event] = []
    engine = Engine(settings, clock=clock, run=EMAIL)
    engine.events.subscribe(seen.append)
    async with engine:
        await engine.email.pause()
        ids = await engine.email.enqueue_many(
            {"to": f"u{i}@example.com", "subject": f"m{i}", "body": "b"} for i in range(5)
        )
        await engine.email.resume()  # the one worker claims all five in one batch
        await wait_for(slow.handler.data_started.is_set, message="the first DATA")
        claimed = jobs(settings)
        assert sorted(s for s, *_ in claimed.values()) == ["sending"] * 5
    # Left the context: the stop waited for the message on the wire ...
    after = jobs(settings)
    first = ids[0]
    assert after[first][:3] == ("sent", 1, None)
    assert len(slow.received) == 1 and slow.received[0].subject == "m0"
    # ... and handed the untried ones back: pending, attempt not counted, no lease, no history.
    assert {i: after[i] for i in ids[1:]} == dict.fromkeys(ids[1:], ("pending", 0, None, None))
    attempted = query(settings, "SELECT DISTINCT job_id FROM email_attempts")
    assert attempted == [(first,)]
    assert isinstance(seen[-1], ev.ServiceStopped)
    assert [e.job_id for e in seen if isinstance(e, ev.EmailSent)] == [first]
    assert query(settings, "SELECT count(*) FROM leases") == [(0,)]

    # The next engine delivers the rest, each exactly once.
    fast = backend_settings_factory(sink=slow, email_workers=2)
    slow.handler.delay = 0.0
    async with Engine(fast, clock=clock, run=EMAIL) as again:

        async def all_sent() -> bool:
            return (await again.email.stats()).sent == 5

        await wait_for(all_sent, message="the handed-back jobs to be sent")
    assert sorted(r.subject or "" for r in slow.received) == [f"m{i}" for i in range(5)]
    assert query(settings, "SELECT max(attempts) FROM email_jobs") == [(1,)]


async def test_stop_past_the_grace_period_expires_the_lease_of_the_send_in_flight(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    wait_for: WaitFor,
    job_when: JobWhen,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine_module, "STOP_GRACE", 0.3)
    sink = make_sink(hang=True)
    settings = backend_settings_factory(sink=sink, smtp_timeout=30.0)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await engine.email.pause()
        ids = await engine.email.enqueue_many(
            {"to": f"h{i}@example.com", "subject": f"h{i}", "body": "b"} for i in range(3)
        )
        await engine.email.resume()
        await wait_for(sink.handler.data_started.is_set, message="the first DATA")
    after = jobs(settings)
    # The outcome of the hung send is unknown: its lease now ends, so any engine retries it.
    ends = after[ids[0]][3]
    assert after[ids[0]][:3] == ("sending", 1, f"{engine.owner}/w0")
    assert ends == clock.time()
    assert {i: after[i] for i in ids[1:]} == dict.fromkeys(ids[1:], ("pending", 0, None, None))

    sink.behaviour.hang = False
    async with Engine(settings, clock=clock, run=EMAIL) as again:
        done = await job_when(again, ids[0], lambda d: d.job.status == "sent", "sent")

        async def all_sent() -> bool:
            return (await again.email.stats()).sent == 3

        await wait_for(all_sent, message="all sent")
    assert [(a.attempt, a.outcome) for a in done.history] == [(1, "lost"), (2, "sent")]
    assert sorted(r.subject or "" for r in sink.received) == ["h0", "h1", "h2"]
