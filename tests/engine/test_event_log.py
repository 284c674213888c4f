"""The engine's event log in the database: a real SQLite file and a real PostgreSQL
database (each test runs on both, `backend`), real aiosmtpd servers on 127.0.0.1, a
FakeClock. Deliveries become one summary row a minute, passes one row each with their counts,
relay outages their start and end; the writer batches off the hot path; the `engine.log_prune`
job keeps 7 days; `Engine.read_log` filters and follows."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from support.db import query

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.logwriter import PRUNE_JOB
from vertex_tui.engine.settings import Settings
from vertex_tui.sink import Behaviour, Sink

if TYPE_CHECKING:
    from conftest import TestSink, WaitFor

DAY = 86_400.0


def rows(settings: Settings, sql: str = "SELECT service, level, event, message FROM engine_log"
         " ORDER BY id") -> list[tuple[Any, ...]]:
    return query(settings, sql)


async def delivered(engine: Engine, wait_for: WaitFor) -> None:
    async def done() -> bool:
        stats = await engine.email.stats()
        return stats.pending == 0 and stats.sending == 0

    await wait_for(done, message="every message sent or refused")


async def test_deliveries_are_one_summary_row_per_minute_and_passes_a_row_each(
        backend_settings_factory: Callable[..., Settings], sink_550: TestSink, clock: FakeClock,
        wait_for: WaitFor) -> None:
    settings = backend_settings_factory(sink=sink_550)
    clock.set(1_800_000_000.0 + 10)  # ten seconds into a minute
    async with Engine(settings, clock=clock, run=["email"]) as engine:
        await engine.email.enqueue_many(
            [{"to": f"u{i}@example.org", "subject": "s", "body": "b"} for i in range(5)]
            + [{"to": "bounce@example.org", "subject": "s", "body": "b"}])
        await delivered(engine, wait_for)
        assert len(sink_550.received) == 5
        await engine.event_log.flush(final=False)
        # The minute is not over: its summary is not written yet (service started is).
        assert [r[2] for r in rows(settings)] == ["service.started"]
        clock.advance(60)
        await engine.event_log.flush(final=False)
        assert rows(settings)[1:] == [
            ("email", 30, "email.delivery",
             "mail this minute: 5 sent, 1 failed, 6 enqueued")]
        # A pass run here is one row with its counts.
        await engine.jobs.run("lifecycle.check")
        await engine.event_log.flush(final=False)
        assert rows(settings)[-1][:3] == ("lifecycle", 20, "pass.ok")
        assert rows(settings)[-1][3].startswith("lifecycle.check: ")
    # Stopping writes the service's stop.
    assert rows(settings)[-1] == ("email", 20, "service.stopped", "service email stopped")
    # At the minute's start, on the engine's clock.
    assert rows(settings, "SELECT at FROM engine_log WHERE event = 'email.delivery'") \
        == [(1_800_000_000.0,)]


async def test_publishing_never_writes_and_a_burst_is_one_row(
        backend_settings: Settings, clock: FakeClock) -> None:
    async with Engine(backend_settings, clock=clock, run=[]) as engine:
        writes_before = engine.event_log.written
        for i in range(20_000):
            engine.events.publish(ev.EmailSent(at=clock.time(), job_id=i, attempt=1,
                                               message_id=f"<{i}@x>"))
        engine.events.publish(ev.ServiceErrored(at=clock.time(), service="video",
                                                error="boom"))
        # Publishing is synchronous and wrote nothing: the rows wait for the flush.
        assert engine.event_log.written == writes_before
        assert rows(backend_settings) == []
        written = await engine.event_log.flush(final=True)
    assert written == 2
    assert sorted(rows(backend_settings)) == [
        ("email", 20, "email.delivery", "mail this minute: 20000 sent"),
        ("video", 40, "service.error", "service video: boom")]


async def test_the_flush_task_writes_within_a_second_or_so(
        backend_settings: Settings, clock: FakeClock, wait_for: WaitFor) -> None:
    async with Engine(backend_settings, clock=clock, run=[]) as engine:
        engine.events.publish(ev.BackupStarted(at=clock.time(), kind="database",
                                               trigger="manual"))
        # No explicit flush: the writer's own task writes it.
        await wait_for(lambda: rows(backend_settings) != [], message="the writer's flush")
        assert rows(backend_settings) == [("backup", 20, "backup.started",
                                          "database backup started (manual)")]


async def test_read_log_filters_by_service_level_text_and_age_and_follows(
        backend_settings: Settings, clock: FakeClock) -> None:
    now = clock.time()
    async with Engine(backend_settings, clock=clock, run=[]) as engine:
        for event in (ev.ServiceStarted(at=now - 3600, service="email"),
                      ev.BackupFinished(at=now - 600, kind="database", ok=False, path=None,
                                        size=None, error="disk full"),
                      ev.RelayOutage(at=now - 300, phase="started", relay="mx:25",
                                     error="refused"),
                      ev.VideosChanged(at=now - 60, activated=1, deactivated=0, rotated=0,
                                       archived=0)):
            engine.events.publish(event)
        await engine.event_log.flush()
        await engine.email.pause()  # an operator action: from audit_log

        async def messages(**query: Any) -> list[str]:
            entries, _ = await engine.read_log(**query)
            return [e["message"] for e in entries]

        everything = await messages()
        assert everything[:4] == [
            "service email started", "database backup failed: disk full",
            "SMTP relay mx:25 unreachable: refused; delivery paused",
            "videos: 1 activated, 0 deactivated, 0 rotated, 0 archived"]
        assert len(everything) == 5 and everything[4].endswith(": paused mail delivery")
        assert await messages(service="backup") == ["database backup failed: disk full"]
        assert await messages(level=30) == [
            "database backup failed: disk full",
            "SMTP relay mx:25 unreachable: refused; delivery paused"]
        assert await messages(search="DISK") == ["database backup failed: disk full"]
        assert await messages(search="email.pause") == [everything[4]]
        assert await messages(since=400) == everything[2:]
        assert await messages(limit=2) == everything[3:]
        entries, cursor = await engine.read_log()
        assert set(entries[0]) == {"at", "service", "level", "event", "message"}
        assert entries[0]["at"].endswith("+00:00") and entries[0]["level"] == "info"
        # Follow: only what came after the cursor, whichever table it is in.
        assert (await engine.read_log(after=cursor))[0] == []
        engine.events.publish(ev.ServiceStopped(at=clock.time(), service="video"))
        await engine.event_log.flush()
        clock.advance(1)
        await engine.email.resume()
        new, cursor = await engine.read_log(after=cursor)
        assert new[0]["message"] == "service video stopped"
        assert new[1]["event"] == "audit.email.resume"
        assert (await engine.read_log(after=cursor))[0] == []


async def test_log_prune_is_a_job_that_keeps_seven_days(
        backend_settings: Settings, clock: FakeClock) -> None:
    now = clock.time()
    async with Engine(backend_settings, clock=clock, run=[]) as engine:
        names = [j["job"] for j in await engine.jobs.snapshot()]
        assert PRUNE_JOB in names
        for age in (8 * DAY, 7 * DAY + 60, 7 * DAY - 60, 60):
            engine.events.publish(ev.ServiceStarted(at=now - age, service=f"s{int(age)}"))
        await engine.event_log.flush()
        result = await engine.jobs.run(PRUNE_JOB)
        assert result["status"] == "ok" and result["deleted"] == 2
        assert rows(backend_settings, "SELECT service FROM engine_log ORDER BY at") == [
            (f"s{int(7 * DAY - 60)}",), ("s60",)]
        # Through LeasedRun: recorded in service_runs like every job run that did something.
        history = await engine.jobs.history(PRUNE_JOB)
        assert [(h["outcome"], h["counts"]) for h in history] == [("ok", {"deleted": 2})]
        # A second run finds nothing to delete.
        assert (await engine.jobs.run(PRUNE_JOB))["deleted"] == 0


async def test_a_running_engine_schedules_the_prune(
        backend_settings: Settings, clock: FakeClock) -> None:
    async with Engine(backend_settings, clock=clock, run=["email"]) as engine:
        job = next(j for j in await engine.jobs.snapshot() if j["job"] == PRUNE_JOB)
        assert job["next_run"] is not None and job["service"] == "engine"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _advance_until(clock: FakeClock, predicate: Callable[[], bool], *, step: float,
                         what: str) -> None:
    deadline = time.monotonic() + 20
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        clock.advance(step)
        await asyncio.sleep(0.01)


async def test_a_relay_outage_is_logged_when_it_starts_and_ends(
        backend_settings_factory: Callable[..., Settings], clock: FakeClock) -> None:
    port = _free_port()
    relay = Sink(port=port, behaviour=Behaviour())
    relay.start()
    settings = backend_settings_factory(smtp_port=port)
    try:
        async with Engine(settings, clock=clock, run=["email"]) as engine:
            await engine.email.enqueue(to="a@example.org", subject="s", body="b")
            await _advance_until(clock, lambda: len(relay.received) == 1, step=0.0,
                                 what="the first delivery")
            relay.stop()
            await engine.email.enqueue(to="b@example.org", subject="s", body="b")
            await _advance_until(clock, lambda: engine.email.relay.is_open, step=0.0,
                                 what="the circuit to open")
            await engine.event_log.flush(final=False)
            started = [r for r in rows(settings) if r[2] == "relay.started"]
            assert len(started) == 1 and started[0][:2] == ("email", 30)
            assert f"SMTP relay 127.0.0.1:{port} unreachable" in started[0][3]
            relay = Sink(port=port, behaviour=Behaviour())
            relay.start()
            await _advance_until(clock, lambda: len(relay.received) == 1, step=2.0,
                                 what="delivery after the relay came back")
        ended = [r for r in rows(settings) if r[2] == "relay.ended"]
        assert len(ended) == 1 and ended[0][1] == 20
        assert "answers again after" in ended[0][3]
    finally:
        relay.stop()
