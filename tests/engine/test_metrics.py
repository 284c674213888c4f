"""The Prometheus endpoint: what a snapshot becomes (pure), and a real engine scraped over
HTTP on 127.0.0.1 while it delivers to a real SMTP sink and backs up."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import ConfigError
from vertex_tui.engine.metrics import EngineCollector, families
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
    settings_factory: Callable[..., Settings], sink: TestSink, wait_for: WaitFor
) -> None:
    port = free_port()
    clock = FakeClock()
    settings = settings_factory(sink=sink, metrics_port=port)
    async with Engine(settings, clock=clock) as engine:
        assert engine.metrics_port == port
        for n in range(3):
            await engine.email.enqueue(to=f"user{n}@example.com", subject="s", body="b")
        await wait_for(lambda: len(sink.received) == 3, message="three messages delivered")
        backup = await engine.backup.run("database")
        assert backup["status"] == "ok"
        await wait_for(lambda: sqlite3.connect(settings.db_path).execute(
            "SELECT count(*) FROM email_jobs WHERE status = 'sent'").fetchone() == (3,),
            message="three jobs recorded as sent")
        got = await asyncio.to_thread(scrape, port)
        assert got[("vertex_up", ())] == 1
        assert got[("vertex_engines_alive", ())] == 1
        assert got[("vertex_email_jobs", (("status", "sent"),))] == 3
        assert got[("vertex_email_jobs", (("status", "pending"),))] == 0
        assert got[("vertex_email_sent_last_minute", ())] == 3
        finished = sqlite3.connect(settings.db_path).execute(
            "SELECT finished_at FROM backups WHERE kind = 'database'").fetchone()[0]
        assert got[("vertex_backup_last_success_timestamp_seconds",
                    (("kind", "database"),))] == pytest.approx(finished)
        assert got[("vertex_service_state", (("service", "email"), ("state", "idle")))] == 1
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(scrape, port)  # closed with the engine


async def test_a_taken_port_fails_the_start_naming_the_variable(
    settings_factory: Callable[..., Settings],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = settings_factory(metrics_port=port)
        threads = set(threading.enumerate())
        with pytest.raises(ConfigError, match=rf"METRICS_PORT='{port}' .* free to listen on"):
            async with Engine(settings):
                pass
    # Nothing started: no heartbeat left behind, no service thread still running.
    assert sqlite3.connect(settings.db_path).execute(
        "SELECT count(*) FROM leases").fetchone() == (0,)
    # Closed connections end at once. Joined here, not through asyncio.to_thread: that would
    # start the loop's executor thread, which this check would then count as left over.
    for thread in set(threading.enumerate()) - threads:
        thread.join(2.0)
    assert {t for t in threading.enumerate() if t.is_alive()} - threads == set()


async def test_only_a_full_engine_serves_metrics(settings_factory: Callable[..., Settings]) -> None:
    port = free_port()
    settings = settings_factory(metrics_port=port)
    # A CLI command or an attached console (services named or none) must not take the port
    # that the engine under systemd serves on.
    async with Engine(settings, run=[]) as engine:
        assert engine.metrics_port is None
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            await asyncio.to_thread(scrape, port)
