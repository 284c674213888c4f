"""Shared fixtures: settings on a real SQLite file in tmp_path, real loopback SMTP sinks, and
a `wait_for` fixture that polls a predicate with a deadline instead of sleeping.

Tests reach everything here through fixtures and import nothing from this module at run time
(nested folders have their own `conftest` modules; the name is not unique). For annotations,
`if TYPE_CHECKING: from conftest import TestSink, WaitFor` is fine.

Sinks are real aiosmtpd servers on 127.0.0.1 (their own thread and loop). `TestSink` adds
what tests need on top of `vertex_tui.sink.Sink`: the number of SMTP connections seen and an
optional delay before each DATA reply (a slow server, for in-flight shutdown tests). Every
sink's `behaviour` is mutable: a test may flip `sink.behaviour.fail_451 = 0.0` to let a
retry through.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.email.models import EmailJobDetail
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import DatabaseUrl, Settings
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import Database
from vertex_tui.sink import Behaviour, Sink, SinkHandler
from vertex_tui.testing.pgserver import PgServer, Unavailable

# ---- waiting ---------------------------------------------------------------------------------


async def poll_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; return that value.

    Fails the test if `timeout` real seconds pass first. This is a deadline, not a timing
    assertion: it only bounds how long a broken build makes the suite hang.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {message}")
        await asyncio.sleep(interval)


WaitFor = Callable[..., Awaitable[Any]]
JobWhen = Callable[..., Awaitable[EmailJobDetail]]


@pytest.fixture
def wait_for() -> WaitFor:
    """`await wait_for(predicate, timeout=10, message="...")`: see `poll_until`."""
    return poll_until


@pytest.fixture
def job_when() -> JobWhen:
    """`await job_when(engine, job_id, predicate, "what")`: the job's `EmailJobDetail` once
    `predicate(detail)` holds (polled with a deadline)."""

    async def when(
        engine: Engine,
        job_id: int,
        predicate: Callable[[EmailJobDetail], bool],
        what: str = "to reach the expected state",
        timeout: float = 10.0,
    ) -> EmailJobDetail:
        found: list[EmailJobDetail] = []

        async def check() -> bool:
            detail = await engine.email.get_job(job_id)
            found[:] = [detail]
            return predicate(detail)

        await poll_until(check, timeout=timeout, message=f"job {job_id} {what}")
        return found[0]

    return when


Idle = Callable[..., Awaitable[None]]


@pytest.fixture
def idle() -> Idle:
    """`await idle(engine, clock)`: wait until the engine's email workers and housekeeper all
    sleep a full poll interval on the fake `clock` (true once nothing is pending).
    `await idle(engine, clock, other, ...)`: the same for several engines on one clock.

    Each of them went to sleep after the clock last moved, so each has looked at the current
    time (claimed, reaped) and found nothing to do: a negative check made after this proves
    something. From then on, mail enqueued through another database object is not seen until
    something wakes the workers or the clock moves, so a test can tell what woke them.
    """

    async def until_idle(engine: Engine, clock: FakeClock, *more: Engine) -> None:
        engines = (engine, *more)
        count = sum(e.settings.email_workers + 1 for e in engines)

        def sleeping() -> bool:
            now = clock.time()
            # FakeClock keeps a heap of (deadline, seq, future), one per sleeper.
            waiting = Counter(d for d, _, fut in clock._sleepers if not fut.done())
            needed: Counter[float] = Counter()
            for e in engines:
                needed[now + e.settings.email_poll_interval] += e.settings.email_workers + 1
            return all(waiting[due] >= n for due, n in needed.items())

        await poll_until(sleeping, message=f"{count} email tasks idle on the fake clock")

    return until_idle


# ---- settings ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    return free_port()


@pytest.fixture
def settings_factory(tmp_path: Path) -> Callable[..., Settings]:
    """Build `Settings` for a database in tmp_path; keyword arguments override any field.

    Defaults suit tests: one worker, short retry delays, a short SMTP timeout, SMTP on a port
    that refuses connections unless `smtp_port=` (or `sink=`) is given.
    """
    refused = closed_port()

    def make(*, sink: Sink | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "db_path": tmp_path / "v.db",
            "storage_dir": tmp_path / "storage",
            "backup_dir": tmp_path / "backups",
            "smtp_host": "127.0.0.1",
            "smtp_port": sink.port if sink is not None else refused,
            "smtp_starttls": "false",
            "smtp_timeout": 2.0,
            "email_workers": 1,
            "email_retry_max_attempts": 5,
            "email_retry_delays": (1.0, 2.0, 4.0, 8.0, 16.0),
            "email_lease_seconds": 60,
            "email_poll_interval": 1.0,
            "email_from": "Vertex AR <noreply@vertex.test>",
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ---- PostgreSQL ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One real PostgreSQL server for the session (`vertex_tui.testing.pgserver`): the one of
    VERTEX_TEST_DATABASE_URL, or a throwaway cluster of Debian's binaries on a free loopback
    port. Missing binaries: the test is skipped, or fails under VERTEX_REQUIRE_PEERS=1."""
    try:
        server = PgServer.start(prefix="pg-test-")
    except Unavailable as exc:
        if os.environ.get("VERTEX_REQUIRE_PEERS"):
            pytest.fail(f"PostgreSQL is required (VERTEX_REQUIRE_PEERS) but unavailable: {exc}")
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, migrated database of its own for this test (a copy of the
    session's template database), dropped afterwards."""
    url = pg_server.database()
    yield url
    pg_server.drop(url)


BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each test using it runs twice: on SQLite and on PostgreSQL (`pg_url`)."""
    return str(request.param)


@pytest.fixture
def backend_settings_factory(backend: str, request: pytest.FixtureRequest,
                             settings_factory: Callable[..., Settings]) -> Callable[..., Settings]:
    """`settings_factory` on this test's backend: the SQLite file in tmp_path, or a fresh
    PostgreSQL database (VERTEX_DATABASE_URL) of its own."""
    if backend == "sqlite":
        return settings_factory
    url = DatabaseUrl(request.getfixturevalue("pg_url"))

    def make(**overrides: Any) -> Settings:
        return settings_factory(**{"database_url": url, **overrides})

    return make


@pytest.fixture
def backend_settings(backend_settings_factory: Callable[..., Settings]) -> Settings:
    return backend_settings_factory()


@pytest.fixture
async def backend_db(backend_settings: Settings) -> AsyncIterator[Database]:
    """An open, migrated database of this test's backend (`db.dialect` says which)."""
    db = await open_database(backend_settings)
    yield db
    await db.close()


# ---- sinks ---------------------------------------------------------------------------------------


class TestHandler(SinkHandler):
    """`SinkHandler` that also records the SMTP connections it serves and can answer slowly."""

    __test__ = False

    def __init__(self, behaviour: Behaviour, delay: float = 0.0) -> None:
        super().__init__(behaviour)
        self.delay = delay
        self.ehlo_peers: list[Any] = []
        self.data_peers: list[Any] = []
        self.data_started = threading.Event()

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        with self._lock:
            self.ehlo_peers.append(session.peer)
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.data_peers.append(session.peer)
        self.data_started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class TestSink(Sink):
    """A running loopback sink with connection counting; see `TestHandler`."""

    __test__ = False

    def __init__(self, behaviour: Behaviour | None = None, *, delay: float = 0.0) -> None:
        self.handler = TestHandler(behaviour or Behaviour(), delay)
        self._controller = Controller(
            self.handler, hostname="127.0.0.1", port=free_port(), ready_timeout=10
        )

    @property
    def behaviour(self) -> Behaviour:
        return self.handler.behaviour

    @property
    def connections(self) -> int:
        """SMTP sessions that said EHLO (one per client connection)."""
        return len(set(self.handler.ehlo_peers))

    def message_ids(self) -> list[str | None]:
        return [r.message_id for r in self.received]


@pytest.fixture
def make_sink() -> Iterator[Callable[..., TestSink]]:
    """Start sinks on demand: `make_sink(fail_451=1.0)`, `make_sink(delay=1.0)`; all stopped
    at teardown."""
    started: list[TestSink] = []

    def make(*, delay: float = 0.0, **behaviour: Any) -> TestSink:
        sink = TestSink(Behaviour(**behaviour), delay=delay)
        sink.start()
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()


@pytest.fixture
def sink(make_sink: Callable[..., TestSink]) -> TestSink:
    """Accepts and records every message."""
    return make_sink()


@pytest.fixture
def sink_451(make_sink: Callable[..., TestSink]) -> TestSink:
    """Answers 451 to about half the messages (seeded, repeatable)."""
    return make_sink(fail_451=0.5, seed=7)


@pytest.fixture
def sink_550(make_sink: Callable[..., TestSink]) -> TestSink:
    """550 for any recipient matching bounce*@* or *@invalid.test; accepts the rest."""
    return make_sink(reject=("bounce*@*", "*@invalid.test"))


@pytest.fixture
def sink_drop(make_sink: Callable[..., TestSink]) -> TestSink:
    """Drops the connection in the middle of DATA on every 2nd message it is sent."""
    return make_sink(drop_every=2)


@pytest.fixture
def sink_hang(make_sink: Callable[..., TestSink]) -> TestSink:
    """Never answers DATA; pair it with a small smtp_timeout (e.g. 0.5 s)."""
    return make_sink(hang=True)
