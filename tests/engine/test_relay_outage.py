"""A relay outage must not fail the queue (issue 8, section 1).

Policies as tables (probe backoff, combining engines' views, the retry decision for a relay
failure, which errors are the relay's); then real servers on 127.0.0.1: aiosmtpd and Postfix's
`smtp-sink`, stopped and restarted on the same port mid-queue, answering 421 at the greeting or
after a command, dropping the session, a session stuck answering 4xx; and a worker whose lease
renewal is held up by a real external lock on the database. The engine runs on a FakeClock, so
an outage of ten minutes takes well under a second of real time.

The tests with an engine run on both backends (`backend`): the outage accounting (attempts
charged, jobs released uncharged, the published relay state) is written to the database. On
PostgreSQL, due times and lease expiries are the server's clock: a relay failure makes a job due
at once, and the fake outage never lets a server-side lease expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from support.db import query

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.email.relay import (
    OK,
    UNKNOWN,
    UNREACHABLE,
    RelayCircuit,
    RelayState,
    combine,
    describe,
    probe_delay,
)
from vertex_tui.engine.email.retry import Decision, Outcome, decide
from vertex_tui.engine.email.transport import classify
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.metrics import families
from vertex_tui.engine.settings import Secret, Settings
from vertex_tui.sink import Behaviour, Sink, SinkHandler

if TYPE_CHECKING:
    from conftest import TestSink, WaitFor

EMAIL = ["email"]
RELAY_LOG = "vertex_tui.engine.email.relay"

# ---- policies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [
        (0, 0.8, 1.0),
        (1, 1.6, 2.0),
        (2, 3.2, 4.0),
        (3, 6.4, 8.0),
        (4, 12.8, 16.0),
        (5, 25.6, 32.0),
        (6, 48.0, 60.0),  # 64 s capped to 60
        (7, 48.0, 60.0),
        (30, 48.0, 60.0),
        (10_000, 48.0, 60.0),  # no float overflow however long the outage
    ],
)
def test_probe_delay_doubles_from_one_second_to_sixty_with_jitter(
    failures: int, low: float, high: float
) -> None:
    rand = random.Random(failures)
    delays = [probe_delay(failures, rand=rand) for _ in range(200)]
    assert all(low <= d <= high for d in delays), (min(delays), max(delays))
    assert len(set(delays)) > 100, "jittered, so several engines do not probe in lockstep"


@pytest.mark.parametrize(
    ("failures", "expected"), [(0, 1.0), (1, 2.0), (3, 8.0), (6, 60.0), (99, 60.0)]
)
def test_probe_delay_without_jitter_is_exact(failures: int, expected: float) -> None:
    assert probe_delay(failures, jitter=0.0) == expected


def test_probe_delay_refuses_a_negative_count() -> None:
    with pytest.raises(ValueError, match="failures"):
        probe_delay(-1)


DOWN_EARLY = RelayState(state=UNREACHABLE, since=100.0, error="refused")
DOWN_LATE = RelayState(state=UNREACHABLE, since=200.0, error="reset")
UP = RelayState(state=OK, since=150.0, error=None)
NOTHING = RelayState(state=UNKNOWN, since=None, error=None)


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        ([], NOTHING),
        ([NOTHING], NOTHING),
        ([UP], UP),
        ([NOTHING, UP], UP),
        ([UP, DOWN_LATE], DOWN_LATE),
        ([DOWN_LATE, UP, DOWN_EARLY], DOWN_EARLY),
    ],
)
def test_combine_says_unreachable_if_any_engine_finds_it_so(
    states: list[RelayState], expected: RelayState
) -> None:
    assert combine(states) == expected


@pytest.mark.parametrize(
    ("outcome", "attempt", "relay", "expected"),
    [
        # A relay failure never fails a job, even on its last attempt: due at once, held
        # back by the circuit.
        (Outcome.TRANSIENT, 1, True, Decision(status="pending", retry_at=1000.0)),
        (Outcome.TRANSIENT, 3, True, Decision(status="pending", retry_at=1000.0)),
        (Outcome.TRANSIENT, 9, True, Decision(status="pending", retry_at=1000.0)),
        # Per-message 4xx keep their meaning: delays, then failed after the maximum.
        (Outcome.TRANSIENT, 1, False, Decision(status="pending", retry_at=1005.0)),
        (Outcome.TRANSIENT, 3, False, Decision(status="failed", retry_at=None)),
        (Outcome.PERMANENT, 1, False, Decision(status="failed", retry_at=None)),
        (Outcome.SENT, 3, False, Decision(status="sent", retry_at=None)),
    ],
)
def test_relay_failures_never_fail_a_job(
    outcome: Outcome, attempt: int, relay: bool, expected: Decision
) -> None:
    got = decide(outcome, attempt=attempt, max_attempts=3, now=1000.0,
                 delays=(5.0, 10.0), jitter=0.0, relay=relay)
    assert got == expected


def _wrapped_cert_error() -> aiosmtplib.SMTPConnectError:
    cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed")
    try:
        try:
            raise cause
        except ssl.SSLError as exc:
            raise aiosmtplib.SMTPConnectError("Error connecting to relay: handshake") from exc
    except aiosmtplib.SMTPConnectError as outer:
        return outer


def _refused(code: int) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, "4.4.2 closing", "a@b.com")]
    )


@pytest.mark.parametrize(
    ("exc", "relay", "error_part"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True, "Connection refused"),
        (ConnectionResetError(104, "Connection reset by peer"), True, "reset"),
        (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), True, "connect timeout"),
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), True, "dropped"),
        (aiosmtplib.SMTPConnectResponseError(421, "4.3.2 not now"), True, "421 4.3.2"),
        (aiosmtplib.SMTPHeloError(554, "go away"), True, "554 go away"),
        (aiosmtplib.SMTPResponseException(421, "4.4.2 closing"), True, "421"),
        (aiosmtplib.SMTPSenderRefused(421, "4.4.2 closing", "me@x.com"), True, "421"),
        (_refused(421), True, "421"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), True, "verify failed"),
        (_wrapped_cert_error(), True, "CERTIFICATE_VERIFY_FAILED"),
        # The message's own trouble, or a reply we waited for: not the relay's.
        (aiosmtplib.SMTPSenderRefused(451, "4.1.8 later", "me@x.com"), False, "451"),
        (_refused(450), False, "450"),
        (aiosmtplib.SMTPDataError(452, "4.3.1 full"), False, "452"),
        (aiosmtplib.SMTPDataError(554, "5.6.0 bad"), False, "554"),
        (aiosmtplib.SMTPReadTimeoutError("Timed out reading"), False, "timeout"),
    ],
)
def test_which_failures_are_the_relays(exc: BaseException, relay: bool, error_part: str) -> None:
    result = classify(exc)
    assert result.relay is relay
    assert result.error is not None and error_part in result.error
    if relay:
        assert result.outcome is Outcome.TRANSIENT


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0 s"), (59.9, "59 s"), (60, "1 min 0 s"), (200, "3 min 20 s"), (7500, "2 h 5 min")],
)
def test_describe_durations(seconds: float, text: str) -> None:
    assert describe(seconds) == text


async def test_an_outage_resumed_before_any_delivery_is_the_same_outage(
        clock: FakeClock) -> None:
    """The probe connects, but the next delivery meets the relay failure again (e.g. 421 to
    RCPT): same outage, same start, the backoff goes on, nobody charged twice."""
    probes: list[float] = []
    saved: list[RelayState] = []

    async def probe() -> None:
        probes.append(clock.time())

    async def persist(state: RelayState) -> None:
        saved.append(state)

    circuit = RelayCircuit(clock=clock, probe=probe, persist=persist, rand=random.Random(1))
    stop = asyncio.Event()
    task = asyncio.create_task(circuit.run(stop))
    try:
        start = clock.time()
        assert circuit.trip("421 at RCPT") is True
        assert circuit.charge(7) is True
        for round_ in range(1, 4):
            await _advance_until(clock, lambda: not circuit.is_open, step=0.5,
                                 what="the probe to close the circuit")
            assert circuit.state.state == OK
            assert circuit.trip("421 at RCPT again") is False  # resumed, not new
            assert circuit.state == RelayState(state=UNREACHABLE, since=start,
                                               error="421 at RCPT again")
            assert circuit.charge(7) is False  # already charged for this outage
            assert circuit.charge(100 + round_) is True
            assert len(probes) == round_
        assert circuit.outages == 1
        # A delivery answered: the outage is over; the next failure is a new one.
        await _advance_until(clock, lambda: not circuit.is_open, step=0.5, what="a probe")
        circuit.reached()
        clock.advance(10)
        assert circuit.trip("refused") is True
        assert circuit.outages == 2
        assert circuit.state.since == clock.time()
        assert circuit.charge(7) is True
        await _advance_until(clock, lambda: saved and saved[-1].error == "refused", step=0.0,
                             what="the new outage to be written")
    finally:
        stop.set()
        await task
    # Probe delays doubled across the resumptions (none reset to 1 s until `reached`).
    gaps = [b - a for a, b in zip([start, *probes], probes, strict=False)]
    assert gaps[1] > gaps[0] * 1.3 and gaps[2] > gaps[1] * 1.3, gaps


def test_smtp_up_metric_follows_the_relay_state() -> None:
    def up(smtp: dict[str, Any] | None) -> list[float]:
        email = {"state": "idle", "last_run": None, "next_run": None, "pending": 0,
                 "sending": 0, "sent": 0, "failed": 0, "sent_last_minute": 0}
        if smtp is not None:
            email["smtp"] = smtp
        snapshot = {"status": {"engines": [], "services": {"email": email, "backup": {
            "state": "idle", "last_run": None, "next_run": None}}},
            "backup_last_success": {}}
        return [s.value for f in families(snapshot) for s in f.samples
                if s.name == "vertex_smtp_up"]

    assert up({"state": "ok", "since": None, "error": None}) == [1]
    assert up({"state": "unreachable", "since": None, "error": "refused"}) == [0]
    assert up({"state": "unknown", "since": None, "error": None}) == []


# ---- real servers ------------------------------------------------------------------------------


def _smtp_sink_binary() -> str | None:
    return shutil.which("smtp-sink", path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")


SMTP_SINK = _smtp_sink_binary()


def _need_smtp_sink() -> str:
    if SMTP_SINK is None:
        if os.environ.get("VERTEX_REQUIRE_PEERS") or os.environ.get("CI"):
            pytest.fail("Postfix's smtp-sink is required here (install postfix)")
        pytest.skip("Postfix's smtp-sink is not installed")
    return SMTP_SINK


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Relay:
    """A real SMTP server on a fixed loopback port that a test can stop and start again
    there; counts the Message-IDs it accepted over all its lives."""

    port: int

    def start(self, *options: str) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def message_ids(self) -> list[str]:
        raise NotImplementedError


class AiosmtpdRelay(Relay):
    def __init__(self, port: int) -> None:
        self.port = port
        self._sinks: list[Sink] = []
        self._running: Sink | None = None

    def start(self, *options: str) -> None:
        assert not options, "aiosmtpd relay takes no options"
        sink = Sink(port=self.port, behaviour=Behaviour())
        sink.start()
        self._sinks.append(sink)
        self._running = sink

    def stop(self) -> None:
        if self._running is not None:
            self._running.stop()
            self._running = None

    def message_ids(self) -> list[str]:
        return [r.message_id or "" for s in self._sinks for r in s.received]


class PostfixRelay(Relay):
    """`smtp-sink` (Postfix) as a subprocess; `-D` appends every accepted message to a file."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port = port
        self._dump = folder / "dump"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, *options: str) -> None:
        # As root smtp-sink must drop privileges; the dump folder is writable by that user.
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self._proc = subprocess.Popen(
            [_need_smtp_sink(), *user, "-D", str(self._dump), *options,
             f"127.0.0.1:{self.port}", "100"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                err = self._proc.stderr.read().decode() if self._proc.stderr else ""
                self.stop()
                pytest.fail(f"smtp-sink did not start on port {self.port}: {err}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None

    def message_ids(self) -> list[str]:
        if not self._dump.exists():
            return []
        return [line.split(":", 1)[1].strip()
                for line in self._dump.read_text(errors="replace").splitlines()
                if line.lower().startswith("message-id:")]


@pytest.fixture
def postfix_folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="vertex-smtp-sink-"))
    folder.chmod(0o777)  # smtp-sink run as root writes its dump as `nobody`
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(params=["aiosmtpd", "smtp-sink"])
def relay(request: pytest.FixtureRequest, postfix_folder: Path) -> Iterator[Relay]:
    port = _free_port()
    server: Relay = (AiosmtpdRelay(port) if request.param == "aiosmtpd"
                     else PostfixRelay(port, postfix_folder))
    yield server
    server.stop()


@pytest.fixture
def postfix(postfix_folder: Path) -> Iterator[PostfixRelay]:
    _need_smtp_sink()
    server = PostfixRelay(_free_port(), postfix_folder)
    yield server
    server.stop()


async def _advance_until(clock: FakeClock, predicate: Callable[[], Any], *, step: float,
                         what: str, timeout: float = 20.0) -> None:
    """Move the fake clock by `step` at a time (letting the loop run between steps) until
    `predicate()` (sync or async) holds; fails after `timeout` real seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        clock.advance(step)
        await asyncio.sleep(0.01)


def _env_of(settings: Settings) -> dict[str, str]:
    """The environment of a `vertex-tui` process on the same database as `settings`."""
    env = {**os.environ, "VERTEX_DB_PATH": str(settings.db_path)}
    if settings.database_url is not None:
        env["VERTEX_DATABASE_URL"] = settings.database_url.reveal()
    return env


def _relay_records(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == RELAY_LOG and text in r.getMessage()]


async def test_relay_stopped_and_restarted_on_the_same_port_mid_queue_fails_nothing(
    backend_settings_factory: Callable[..., Settings],
    relay: Relay,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger="vertex_tui")
    n = 120
    relay.start()
    # Two attempts allowed and short delays: before the circuit, a 10-minute outage failed
    # every job that met it within seconds.
    settings = backend_settings_factory(smtp_port=relay.port, email_workers=3,
                                email_retry_max_attempts=2, email_retry_delays=(1.0, 2.0))
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        ids = await engine.email.enqueue_many(
            {"to": f"o{i}@example.com", "subject": f"o{i}", "body": "b"} for i in range(n))
        await _advance_until(clock, lambda: len(relay.message_ids()) >= 10, step=0.0,
                             what="some mail delivered before the outage")
        relay.stop()
        await _advance_until(clock, lambda: engine.email.relay.is_open, step=0.0,
                             what="the relay circuit to open")
        down_at = clock.time()
        # Sends that were answered before the stop are recorded by now; nothing after.
        await _advance_until(clock, lambda: clock.time() >= down_at + 60, step=5.0,
                             what="a minute of outage")
        sent_before = (await engine.email.stats()).sent

        # Ten minutes of outage, in fake time.
        await _advance_until(clock, lambda: clock.time() >= down_at + 600, step=5.0,
                             what="ten minutes of outage")
        stats = await engine.email.stats()
        assert stats.failed == 0
        assert stats.sent == sent_before
        assert (stats.pending, stats.sending) == (n - sent_before, 0)
        # Probed with the backoff (1, 2, 4 ... 60 s), not per job or per poll.
        assert 8 <= engine.email.relay.probes <= 25, engine.email.relay.probes

        # The state is in the database: another process (an engine that delivers nothing,
        # as `vertex-tui status` runs) reads it there.
        smtp = (await engine.email.status())["smtp"]
        assert smtp["state"] == "unreachable"
        assert smtp["error"] and "connect" in smtp["error"].lower()
        async with Engine(settings, clock=clock, run=[]) as reader:
            seen = (await reader.status())["services"]["email"]["smtp"]
        assert seen == smtp
        assert seen["since"] is not None
        # The CLI, a separate process, says it in words.
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vertex_tui", "status", stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, cwd=tmp_path,
            env=_env_of(settings))
        stdout, stderr = await asyncio.wait_for(cli.communicate(), 60)
        assert cli.returncode == 0, stderr.decode()
        line = f"SMTP relay unreachable since {seen['since']} ({seen['error']})"
        assert line in stdout.decode()

        relay.start()
        await _advance_until(clock, lambda: not engine.email.relay.is_open, step=5.0,
                             what="a probe to find the relay back")

        async def drained() -> bool:
            return (await engine.email.stats()).sent == n

        await _advance_until(clock, drained, step=0.0, what="every message sent")
        details = [await engine.email.get_job(i) for i in ids]
        assert (await engine.email.status())["smtp"]["state"] == "ok"

    assert all(d.job.status == "sent" for d in details)
    # At most one attempt charged per job for the outage (the one in flight when it began).
    charged = {d.job.id: [a for a in d.history if a.outcome != "sent"] for d in details}
    assert all(len(c) <= 1 for c in charged.values()), charged
    assert 1 <= sum(len(c) for c in charged.values()) <= settings.email_workers
    delivered = relay.message_ids()
    assert set(delivered) == {d.job.message_id for d in details}
    # A send cut short by the stop may have reached the server: at most one per worker.
    assert len(delivered) - n <= settings.email_workers
    # Logged once when it began, about once a minute while it lasted, once when it ended.
    assert len(_relay_records(caplog, "delivery paused")) == 1
    still = _relay_records(caplog, "still unreachable after")
    assert 4 <= len(still) <= 11, [r.getMessage() for r in still]
    assert len(_relay_records(caplog, "answers again")) == 1
    per_job = [r for r in caplog.records if r.name == "vertex_tui.engine.email.queue"
               and r.levelno >= logging.INFO and "attempt" in r.getMessage()]
    assert per_job == []


@pytest.mark.parametrize(
    ("options", "error_part"),
    [
        (("-Q", "CONNECT"), "421"),  # 421 at the greeting
        (("-Q", "RCPT"), "421"),  # 421 after a command
        (("-q", "MAIL"), "dropped"),  # the session dropped without a reply
    ],
)
async def test_smtp_sink_refusing_sessions_holds_the_jobs_until_it_answers(
    backend_settings_factory: Callable[..., Settings],
    postfix: PostfixRelay,
    clock: FakeClock,
    options: tuple[str, ...],
    error_part: str,
) -> None:
    postfix.start(*options)
    # One attempt allowed: before the circuit each of these jobs failed at once.
    settings = backend_settings_factory(smtp_port=postfix.port, email_workers=2,
                                email_retry_max_attempts=1)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        ids = await engine.email.enqueue_many(
            {"to": f"g{i}@example.com", "subject": f"g{i}", "body": "b"} for i in range(8))
        await _advance_until(clock, lambda: engine.email.relay.is_open, step=0.0,
                             what="the relay circuit to open")
        # Several probes meet the same refusal (or connect, and the next delivery meets it
        # again: the same outage goes on); nothing fails meanwhile.
        seen: list[dict[str, Any]] = []

        async def probed_and_open() -> bool:
            seen[:] = [(await engine.email.status())["smtp"]]
            return engine.email.relay.probes >= 4 and seen[0]["state"] == "unreachable"

        await _advance_until(clock, probed_and_open, step=2.0, what="four probes")
        assert error_part in seen[0]["error"]
        during = await engine.email.stats()
        assert (during.failed, during.sent) == (0, 0)
        assert engine.email.relay.outages == 1

        postfix.stop()
        postfix.start()

        async def drained() -> bool:
            return (await engine.email.stats()).sent == len(ids)

        await _advance_until(clock, drained, step=5.0, what="every message sent")
        after = [await engine.email.get_job(i) for i in ids]

    assert all(d.job.status == "sent" for d in after)
    # However many probes and resumptions, each job was charged at most once for the outage.
    charged = [a for d in after for a in d.history if a.outcome != "sent"]
    assert all(d.job.attempts == len(d.history) <= 2 for d in after)
    assert 1 <= len(charged) <= len(ids)
    assert all(a.outcome == "transient" and error_part in (a.error or "") for a in charged)
    assert sorted(postfix.message_ids()) == sorted(d.job.message_id for d in after)


class Credentials:
    """An aiosmtpd authenticator: refuses every login until `accept` is set, then accepts
    vertex / s3cret only."""

    def __init__(self) -> None:
        self.accept = False
        self.tries = 0

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        self.tries += 1
        ok = (self.accept and isinstance(auth_data, LoginPassword)
              and (auth_data.login, auth_data.password) == (b"vertex", b"s3cret"))
        # handled=False: aiosmtpd itself answers (535 on a refusal)
        return AuthResult(success=ok, handled=False)


@pytest.mark.parametrize(("offers_auth", "error_part"), [
    (False, "SMTP AUTH extension is not supported"),
    (True, "authentication failed: 535"),
])
async def test_a_login_that_fails_holds_the_mail_until_it_is_fixed(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock, offers_auth: bool,
    error_part: str,
) -> None:
    """SMTP_USERNAME set and the relay refuses the login, or offers no AUTH at all: every
    message would meet it, so it is the relay's failure (Postfix's SASL soft bounce), not
    each message's. Before, each job was charged and failed (one attempt allowed here)."""
    port = _free_port()
    handler = SinkHandler(Behaviour())
    credentials = Credentials()

    def serve(auth: bool) -> Controller:
        extra: dict[str, Any] = (
            {"authenticator": credentials, "auth_require_tls": False} if auth else {})
        server = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10, **extra)
        server.start()
        return server

    server = serve(offers_auth)
    try:
        settings = backend_settings_factory(
            smtp_port=port, smtp_username="vertex", smtp_password=Secret("s3cret"),
            smtp_starttls="false", email_workers=2, email_retry_max_attempts=1)
        async with Engine(settings, clock=clock, run=EMAIL) as engine:
            ids = await engine.email.enqueue_many(
                {"to": f"a{i}@example.com", "subject": f"a{i}", "body": "b"} for i in range(8))
            await _advance_until(clock, lambda: engine.email.relay.is_open, step=0.0,
                                 what="the relay circuit to open")
            seen: list[dict[str, Any]] = []

            async def probed_and_open() -> bool:
                seen[:] = [(await engine.email.status())["smtp"]]
                return engine.email.relay.probes >= 3 and seen[0]["state"] == "unreachable"

            await _advance_until(clock, probed_and_open, step=2.0, what="three probes")
            assert error_part in seen[0]["error"]
            during = await engine.email.stats()
            assert (during.failed, during.sent) == (0, 0)
            assert handler.received == []
            if offers_auth:
                assert credentials.tries >= 3  # the probes logged in too, and were refused

            # The operator fixes the relay: right credentials, or AUTH offered.
            credentials.accept = True
            if not offers_auth:
                server.stop()
                server = serve(True)

            async def drained() -> bool:
                return (await engine.email.stats()).sent == len(ids)

            await _advance_until(clock, drained, step=5.0, what="every message sent")
            after = [await engine.email.get_job(i) for i in ids]
    finally:
        server.stop()
    assert all(d.job.status == "sent" for d in after)
    assert all(d.job.attempts == len(d.history) <= 2 for d in after)
    charged = [a for d in after for a in d.history if a.outcome != "sent"]
    assert all(a.outcome == "transient" and error_part in (a.error or "") for a in charged)
    assert sorted(r.message_id or "" for r in handler.received) == sorted(
        d.job.message_id for d in after)


class StuckFirstSession(SinkHandler):
    """The first SMTP session answers 450 to every MAIL FROM; later sessions accept."""

    def __init__(self) -> None:
        super().__init__(Behaviour())
        self.sessions: list[Session] = []  # kept alive, so `is` compares them safely
        self.refused = 0

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        if not any(s is session for s in self.sessions):
            self.sessions.append(session)
        return responses

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if self.sessions and session is self.sessions[0]:
            self.refused += 1
            return "450 4.3.2 this session is stuck"
        envelope.mail_from = address
        return "250 OK"


async def test_a_session_answering_4xx_twice_in_a_row_is_replaced(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock, wait_for: WaitFor
) -> None:
    handler = StuckFirstSession()
    server = Controller(handler, hostname="127.0.0.1", port=_free_port(), ready_timeout=10)
    server.start()
    try:
        settings = backend_settings_factory(smtp_port=server.port, email_retry_max_attempts=1)
        async with Engine(settings, clock=clock, run=EMAIL) as engine:
            ids = await engine.email.enqueue_many(
                {"to": f"s{i}@example.com", "subject": f"s{i}", "body": "b"} for i in range(10))

            async def settled() -> bool:
                stats = await engine.email.stats()
                return stats.sent + stats.failed == len(ids)

            await wait_for(settled, message="every job sent or failed")
            details = [await engine.email.get_job(i) for i in ids]
    finally:
        server.stop()
    failed = [d for d in details if d.job.status == "failed"]
    # The stuck session got two messages, both 450 (one attempt allowed: failed, as a
    # per-message 4xx always was); then a fresh session delivered the other eight.
    assert [d.job.last_code for d in failed] == [450, 450]
    assert handler.refused == 2
    assert len(handler.sessions) == 2
    assert len(handler.received) == 8


class ExternalLock:
    """Another process holding up every write to the email jobs, for real: SQLite's write
    lock (`BEGIN EXCLUSIVE`), or on PostgreSQL `LOCK TABLE email_jobs IN EXCLUSIVE MODE` (reads
    go on; updates and row locks wait). `waiting(engine)`: what of the engine's waits behind
    it, as "renewal" and "reaper" (SQLite: the engine's queued writers, in order; PostgreSQL:
    the server's sessions waiting on a lock, by statement)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None

    async def take(self) -> None:
        if self.settings.database_url is None:
            self._sqlite = sqlite3.connect(self.settings.db_path, timeout=30,
                                           isolation_level=None, check_same_thread=False)
            await asyncio.to_thread(self._sqlite.execute, "BEGIN EXCLUSIVE")
            return
        import psycopg

        self._pg = await asyncio.to_thread(psycopg.connect, self.settings.database_url.reveal())
        await asyncio.to_thread(self._pg.execute, "LOCK TABLE email_jobs IN EXCLUSIVE MODE")

    async def release(self) -> None:
        if self._sqlite is not None:
            await asyncio.to_thread(self._sqlite.execute, "COMMIT")
            self._sqlite.close()
        if self._pg is not None:
            await asyncio.to_thread(self._pg.commit)
            self._pg.close()

    async def waiting(self, engine: Engine) -> set[str]:
        if self._sqlite is not None:
            count = len(engine.db._write_lock._waiters or ())  # type: ignore[attr-defined]
            return {"renewal", "reaper"} if count >= 2 else {"renewal"} if count else set()
        rows = await asyncio.to_thread(
            query, self.settings, "SELECT query FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'")
        texts = [text for (text,) in rows]
        return ({"renewal"} if any("SET lease_expires_at =" in t for t in texts) else set()) | (
            {"reaper"} if any("gone AS MATERIALIZED" in t for t in texts) else set())


async def test_worker_whose_lease_renewal_is_held_up_stops_sending_its_batch(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="vertex_tui")
    sink = make_sink(delay=0.1)  # a batch of 16 takes over a second to send
    lease = 10.0
    settings = backend_settings_factory(sink=sink, email_lease_seconds=lease)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        ids = await engine.email.enqueue_many(
            {"to": f"l{i}@example.com", "subject": f"l{i}", "body": "b"} for i in range(16))
        await wait_for(lambda: len(sink.received) >= 2, message="the batch under way")

        # Another process holds up every write, for real.
        lock = ExternalLock(settings)
        await lock.take()
        try:
            # Past half the lease: the worker's next send first renews the batch's leases,
            # and that write waits behind the lock.
            clock.advance(lease * 0.6)

            async def waiting(what: str) -> bool:
                return what in await lock.waiting(engine)

            await wait_for(lambda: waiting("renewal"),
                           message="the lease renewal to wait for the lock")
            # The stall outlasts the lease (on the engine's clock): the housekeeper queues
            # its reaping write behind the renewal.
            clock.advance(lease * 2)
            await wait_for(lambda: waiting("reaper"), message="the reaper to wait for the lock")
        finally:
            await lock.release()

        sink.handler.delay = 0.0

        async def all_sent() -> bool:
            return (await engine.email.stats()).sent == len(ids)

        await wait_for(all_sent, message="every message sent")
        details = [await engine.email.get_job(i) for i in ids]

    delivered = sink.message_ids()
    # Each message reached the server once: the worker sent nothing on leases the reaper
    # could hand to another claim.
    assert sorted(delivered) == sorted(d.job.message_id for d in details)
    assert all(d.job.status == "sent" for d in details)
    # It renewed late and said so: the rest of its batch went back uncharged, not lost.
    late = [r for r in caplog.records if "renewed" in r.getMessage() and "late" in r.getMessage()]
    assert len(late) == 1, [r.getMessage() for r in late]
    assert all(d.job.attempts == len(d.history) == 1 for d in details)
