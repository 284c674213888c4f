"""The Prometheus endpoint: what a snapshot becomes (pure), and a real engine scraped over
HTTP on 127.0.0.1 while it delivers to a real SMTP sink and backs up. The engine tests run on
SQLite and on PostgreSQL (`backend`; on PostgreSQL the fake clock stands in for the server's)."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from support.db import query

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import ConfigError
from vertex_tui.engine.metrics import EngineCollector, ProcessMetrics, families
from vertex_tui.engine.settings import Settings

if TYPE_CHECKING:
    from conftest import TestSink, WaitFor

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(metrics: Any) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in metrics for s in family.samples}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return samples(text_string_to_metric_families(response.read().decode()))


def service(state: str, **extra: Any) -> dict[str, Any]:
    return {"state": state, "last_run": None, "next_run": None, **extra}


SNAPSHOT: dict[str, Any] = {
    "status": {
        "engines": ["host:1:a", "host:2:b"],
        "services": {
            "email": service("paused", pending=7, sending=1, sent=40, failed=2,
                             oldest_pending_age_seconds=95.5, sent_last_minute=3,
                             last_run="2027-01-15T08:00:00+00:00"),
            "backup": service("idle", last_outcome="failed",
                              last_run="2027-01-15T02:00:05+00:00",
                              next_run="2027-01-16T02:00:00+00:00",
                              last_verified_restore={"at": "2027-01-14T04:30:00+00:00"}),
            "lifecycle": service("error", last_outcome="error"),
            "video": service("standby"),
        },
    },
    "backup_last_success": {"database": 1_800_000_000.0, "full": 1_799_000_000.0},
}


def test_a_snapshot_becomes_these_metrics() -> None:
    got = samples(families(SNAPSHOT))
    assert got[("vertex_up", ())] == 1
    assert got[("vertex_engines_alive", ())] == 2
    state = {(dict(labels)["service"], dict(labels)["state"]): value
             for (name, labels), value in got.items() if name == "vertex_service_state"}
    assert {key for key, value in state.items() if value == 1} == {
        ("email", "paused"), ("backup", "idle"), ("lifecycle", "error"), ("video", "standby")}
    assert len(state) == 4 * 7  # every state of every service, 0 or 1
    assert got[("vertex_email_jobs", (("status", "pending"),))] == 7
    assert got[("vertex_email_jobs", (("status", "failed"),))] == 2
    assert got[("vertex_email_oldest_pending_age_seconds", ())] == 95.5
    assert got[("vertex_email_sent_last_minute", ())] == 3
    assert got[("vertex_email_paused", ())] == 1
    assert got[("vertex_service_last_run_success", (("service", "backup"),))] == 0
    assert got[("vertex_service_last_run_success", (("service", "lifecycle"),))] == 0
    assert ("vertex_service_last_run_success", (("service", "video"),)) not in got  # no run yet
    assert got[("vertex_service_last_run_timestamp_seconds", (("service", "email"),))] == (
        _epoch("2027-01-15T08:00:00+00:00"))
    assert got[("vertex_service_next_run_timestamp_seconds", (("service", "backup"),))] == (
        _epoch("2027-01-16T02:00:00+00:00"))
    assert got[("vertex_backup_last_success_timestamp_seconds", (("kind", "database"),))] == (
        1_800_000_000)
    assert ("vertex_backup_last_success_timestamp_seconds", (("kind", "storage"),)) not in got
    assert got[("vertex_backup_last_verified_restore_timestamp_seconds", ())] == (
        _epoch("2027-01-14T04:30:00+00:00"))


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_no_pending_mail_is_an_age_of_zero_and_no_drill_no_metric() -> None:
    snapshot = {**SNAPSHOT, "status": {**SNAPSHOT["status"], "services": {
        **SNAPSHOT["status"]["services"],
        "email": service("idle", pending=0, sending=0, sent=0, failed=0,
                         oldest_pending_age_seconds=None, sent_last_minute=0),
        "backup": service("idle", last_verified_restore=None)}}}
    got = samples(families(snapshot))
    assert got[("vertex_email_oldest_pending_age_seconds", ())] == 0
    assert got[("vertex_email_paused", ())] == 0
    assert not [key for key in got if key[0].startswith("vertex_backup_last_verified")]


async def test_a_scrape_the_loop_does_not_answer_in_time_says_down() -> None:
    release = asyncio.Event()

    async def stuck() -> dict[str, Any]:
        await release.wait()
        return SNAPSHOT

    collector = EngineCollector(stuck, asyncio.get_running_loop(), timeout=0.2)
    got = samples(await asyncio.to_thread(lambda: list(collector.collect())))
    assert got == {("vertex_up", ()): 0}
    release.set()


async def test_a_running_engine_serves_what_it_did(
    backend_settings_factory: Callable[..., Settings], sink: TestSink, wait_for: WaitFor
) -> None:
    port = free_port()
    clock = FakeClock()
    settings = backend_settings_factory(sink=sink, metrics_port=port)
    async with Engine(settings, clock=clock) as engine:
        assert engine.metrics_port == port
        for n in range(3):
            await engine.email.enqueue(to=f"user{n}@example.com", subject="s", body="b")
        await wait_for(lambda: len(sink.received) == 3, message="three messages delivered")
        backup = await engine.backup.run("database")
        assert backup["status"] == "ok"
        await wait_for(lambda: query(
            settings, "SELECT count(*) FROM email_jobs WHERE status = 'sent'") == [(3,)],
            message="three jobs recorded as sent")
        got = await asyncio.to_thread(scrape, port)
        assert got[("vertex_up", ())] == 1
        assert got[("vertex_engines_alive", ())] == 1
        assert got[("vertex_email_jobs", (("status", "sent"),))] == 3
        assert got[("vertex_email_jobs", (("status", "pending"),))] == 0
        assert got[("vertex_email_sent_last_minute", ())] == 3
        [(finished,)] = query(settings,
                              "SELECT finished_at FROM backups WHERE kind = 'database'")
        assert got[("vertex_backup_last_success_timestamp_seconds",
                    (("kind", "database"),))] == pytest.approx(finished)
        assert got[("vertex_service_state", (("service", "email"), ("state", "idle")))] == 1
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(scrape, port)  # closed with the engine


async def test_a_taken_port_fails_the_start_naming_the_variable(
    backend_settings_factory: Callable[..., Settings], wait_for: WaitFor
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = backend_settings_factory(metrics_port=port)
        threads = set(threading.enumerate())
        with pytest.raises(ConfigError, match=rf"METRICS_PORT='{port}' .* free to listen on"):
            async with Engine(settings):
                pass
    # Nothing started: no heartbeat left behind, no service thread still running.
    assert query(settings, "SELECT count(*) FROM leases") == [(0,)]
    # Closed connections end at once. Joined here, not through asyncio.to_thread: that would
    # start the loop's executor thread. (On PostgreSQL the engine has started it: it opens its
    # pools through asyncio.to_thread. That thread is the loop's, idle until the loop closes.)
    started = {t for t in set(threading.enumerate()) - threads
               if not t.name.startswith("asyncio_")}
    for thread in started:
        thread.join(2.0)
    assert {t for t in started if t.is_alive()} == set()
    if settings.database_url is not None:
        # ... and no connection left open (the server ends a closed one's session soon).
        sessions = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid()")
        await wait_for(lambda: query(settings, sessions) == [(0,)], message="no session left")


async def test_only_a_full_engine_serves_metrics(
    backend_settings_factory: Callable[..., Settings],
) -> None:
    port = free_port()
    settings = backend_settings_factory(metrics_port=port)
    # A CLI command or an attached console (services named or none) must not take the port
    # that the engine under systemd serves on.
    async with Engine(settings, run=[]) as engine:
        assert engine.metrics_port is None
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(scrape, port)


# ---- what this process did: counters from the engine's events ----------------------------

SERVICES = ("email", "backup", "lifecycle", "video")
KINDS = ("database", "storage", "full")
COUNTERS = ("vertex_email_sent_total", "vertex_email_failed_total",
            "vertex_email_retried_total")


def bucket(got: Samples, le: str) -> float:
    return got[("vertex_email_delivery_seconds_bucket", (("le", le),))]


async def scraped(port: int) -> Samples:
    return await asyncio.to_thread(scrape, port)


async def test_every_series_is_there_at_zero_from_the_start(
    backend_settings_factory: Callable[..., Settings], sink: TestSink
) -> None:
    settings = backend_settings_factory(sink=sink, metrics_port=free_port())
    async with Engine(settings, clock=FakeClock()) as engine:
        assert engine.metrics_port is not None
        got = await scraped(engine.metrics_port)
    for name in COUNTERS:
        assert got[(name, ())] == 0, name
    assert got[("vertex_email_delivery_seconds_count", ())] == 0
    assert got[("vertex_email_delivery_seconds_sum", ())] == 0
    buckets = {dict(labels)["le"]: value for (name, labels), value in got.items()
               if name == "vertex_email_delivery_seconds_bucket"}
    assert len(buckets) > 10 and set(buckets.values()) == {0}
    for service_name in SERVICES:
        assert got[("vertex_service_run_failures_total", (("service", service_name),))] == 0
    for kind in KINDS:
        assert got[("vertex_backup_size_bytes", (("kind", kind),))] == 0


async def test_sends_failures_retries_and_latency_follow_real_deliveries(
    backend_settings_factory: Callable[..., Settings], make_sink: Callable[..., TestSink],
    wait_for: WaitFor,
) -> None:
    # The counters come from events, not the store.
    sink = make_sink(reject=("bounce*@*",), fail_451=1.0)
    clock = FakeClock()
    settings = backend_settings_factory(sink=sink, metrics_port=free_port())
    async with Engine(settings, clock=clock) as engine:
        port = engine.metrics_port
        assert port is not None

        async def value(name: str) -> float:
            return (await scraped(port))[(name, ())]

        # One message answered 451: an attempt to be retried, not a failure.
        await engine.email.enqueue(to="later@example.com", subject="s", body="b")
        await wait_for(lambda: value("vertex_email_retried_total"), message="one retry counted")
        sink.behaviour.fail_451 = 0.0
        # Three delivered at once (the clock stands still: 0 s after their enqueue), one 550.
        for n in range(3):
            await engine.email.enqueue(to=f"user{n}@example.com", subject="s", body="b")
        await engine.email.enqueue(to="bounce@example.com", subject="s", body="b")

        async def three_sent_one_failed() -> bool:
            got = await scraped(port)
            return (got[("vertex_email_sent_total", ())] == 3
                    and got[("vertex_email_failed_total", ())] == 1)

        await wait_for(three_sent_one_failed, message="three sent and one failed counted")
        # The deferred one goes out on its retry, 4 s after it was enqueued.
        clock.advance(4.0)
        await wait_for(lambda: len(sink.received) == 4, message="the retry delivered")
        await wait_for(lambda: value_is(port, "vertex_email_sent_total", 4),
                       message="four sent counted")
        got = await scraped(port)
    assert got[("vertex_email_sent_total", ())] == 4 == len(sink.received)
    assert got[("vertex_email_failed_total", ())] == 1
    assert got[("vertex_email_retried_total", ())] == 1
    assert got[("vertex_email_delivery_seconds_count", ())] == 4
    assert got[("vertex_email_delivery_seconds_sum", ())] == pytest.approx(4.0)
    assert bucket(got, "0.05") == 3
    assert bucket(got, "2.5") == 3
    assert bucket(got, "5.0") == 4
    assert bucket(got, "+Inf") == 4


async def value_is(port: int, name: str, expected: float) -> bool:
    return (await scraped(port))[(name, ())] == expected


# A trigger that refuses every new mail, and the statement that drops it, per dialect.
REFUSE_MAIL = {
    "sqlite": (["CREATE TRIGGER boom BEFORE INSERT ON email_jobs"
                " BEGIN SELECT RAISE(ABORT, 'mail store unavailable'); END"],
               "DROP TRIGGER boom"),
    "postgresql": (["CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS"
                    " $$ BEGIN RAISE EXCEPTION 'mail store unavailable'; END $$",
                    "CREATE TRIGGER boom BEFORE INSERT ON email_jobs"
                    " FOR EACH ROW EXECUTE FUNCTION boom()"],
                   "DROP FUNCTION boom() CASCADE"),
}


async def test_failed_runs_and_backup_sizes(
    backend_settings_factory: Callable[..., Settings], tmp_path: Path, wait_for: WaitFor
) -> None:
    blocked = tmp_path / "backups-is-a-file"
    blocked.write_text("not a folder")
    clock = FakeClock()
    settings = backend_settings_factory(metrics_port=free_port(), backup_dir=blocked)
    async with Engine(settings, clock=clock) as engine:
        port = engine.metrics_port
        assert port is not None
        assert (await engine.backup.run("database"))["status"] == "failed"
        # A lifecycle pass whose outbox insert the database refuses.
        await engine.lifecycle.add_portrait(title="p", owner="p@example.com",
                                            subscription_end=clock.time() + 3600)
        refuse, allow = REFUSE_MAIL[engine.db.dialect]
        for statement in refuse:
            await engine.db.write(statement)
        assert (await engine.lifecycle.check())["status"] == "error"
        await engine.db.write(allow)
        got = await scraped(port)
        failures = {s: got[("vertex_service_run_failures_total", (("service", s),))]
                    for s in SERVICES}
        assert failures == {"email": 0, "backup": 1, "lifecycle": 1, "video": 0}
        assert got[("vertex_backup_size_bytes", (("kind", "database"),))] == 0  # none yet

        blocked.unlink()
        done = await engine.backup.run("database")
        assert done["status"] == "ok" and done["size"] > 0
        got = await scraped(port)
    assert got[("vertex_backup_size_bytes", (("kind", "database"),))] == done["size"]
    assert got[("vertex_backup_size_bytes", (("kind", "full"),))] == 0
    assert got[("vertex_service_run_failures_total", (("service", "backup"),))] == 1


@pytest.mark.parametrize(("event", "counted"), [
    (ev.PassCompleted(at=0, service="video", ok=False, counts={}, error="x"), "video"),
    (ev.PassCompleted(at=0, service="video", ok=True, counts={}), None),
    (ev.BackupFinished(at=0, kind="full", ok=False, path=None, size=None, error="x"), "backup"),
    (ev.BackupFinished(at=0, kind="full", ok=True, path="p", size=1), None),
    (ev.RotationFinished(at=0, deleted=0, error="x"), "backup"),
    (ev.RotationFinished(at=0, deleted=3), None),
    (ev.RestoreDrillFinished(at=0, ok=False, path=None, error="x"), "backup"),
    (ev.RestoreDrillFinished(at=0, ok=True, path="p"), None),
    (ev.ServiceErrored(at=0, service="email", error="claim failed"), None),  # not a run
    (ev.PassCompleted(at=0, service="plugin", ok=False, counts={}, error="x"), "plugin"),
    # A backup run is counted from its own event (above), not again from a PassCompleted.
    (ev.PassCompleted(at=0, service="backup", ok=False, counts={}, error="x"), None),
])
def test_which_events_are_failed_runs(event: ev.Event, counted: str | None) -> None:
    registry = CollectorRegistry()
    metrics = ProcessMetrics(registry, services=SERVICES)
    metrics.observe(event)
    got = samples(registry.collect())
    failures = {dict(labels)["service"]: value for (name, labels), value in got.items()
                if name == "vertex_service_run_failures_total" and value}
    assert failures == ({} if counted is None else {counted: 1})
