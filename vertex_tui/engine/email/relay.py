"""The SMTP relay circuit: a relay outage pauses delivery instead of failing the queue.

A failure of the relay itself (connection refused or reset, connect timeout, TLS handshake or
certificate failure, 421 at the greeting or after any command, a dropped session, a refused
EHLO, a login refused or impossible) is not the message's fault. `transport.classify()` marks
such a result `relay=True`; the queue then trips this process's `RelayCircuit`:

- While the circuit is open no worker claims or sends: a worker that meets an open circuit
  mid-batch hands the untried rest of its batch back uncharged (`store.release`).
- The circuit's own task probes the relay (connect, EHLO, login, QUIT, built exactly as a
  delivery connection is, TLS and AUTH included) after `probe_delay()`: 1 s doubling to 60 s,
  with jitter. The first probe that connects closes the circuit and every worker resumes. The
  outage is over only when a delivery gets an answer (sent, or refused for the message
  itself): a relay failure before that resumes the same outage (same start, the backoff goes
  on growing), so a relay that accepts EHLO but answers 421 to RCPT is treated as down, not
  as flapping.
- Charging: the job whose attempt met the outage keeps that attempt (`attempts` + 1, recorded
  in its history as `transient` with the relay's error); nothing is claimed while the circuit
  is open, and a job that meets the same outage again after a probe connected is handed back
  uncharged, so a job is charged at most one attempt per outage. A relay failure never
  makes a job `failed`, even on its last attempt: the job goes back to `pending`, due at once,
  and is tried when the circuit closes (`retry.decide(..., relay=True)`). So
  `EMAIL_RETRY_MAX_ATTEMPTS` bounds the per-message failures (4xx to MAIL/RCPT/DATA, timeouts
  waiting for a reply); a job that met outages may show more attempts than that maximum.
- Logging: one warning when an outage starts, at most one a minute while it lasts (with its
  age and the latest error), one when a probe first connects again, and an info line when
  a delivery confirms it; never one per job.
- The state (`ok` | `unreachable` | `unknown` before the first contact, since, error) is
  written to the database on each change (`store.relay`), so `vertex-tui status` and an
  attached console, which read the database, show what the delivering engine sees.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vertex_tui.engine.clock import Clock, isoformat
from vertex_tui.engine.email.transport import SmtpTransport, classify
from vertex_tui.engine.events import EventBus, RelayOutage
from vertex_tui.engine.settings import Settings

log = logging.getLogger(__name__)

PROBE_BASE_SECONDS = 1.0
PROBE_CAP_SECONDS = 60.0
PROBE_JITTER = 0.2
STILL_DOWN_LOG_SECONDS = 60.0

OK = "ok"
UNREACHABLE = "unreachable"
UNKNOWN = "unknown"


def probe_delay(
    failures: int,
    *,
    base: float = PROBE_BASE_SECONDS,
    cap: float = PROBE_CAP_SECONDS,
    jitter: float = PROBE_JITTER,
    rand: random.Random | None = None,
) -> float:
    """Seconds before the next probe after `failures` failed probes in this outage (0 = the
    first probe): `base * 2**failures`, at most `cap`, less up to `jitter` of it at random
    (never more than `cap`, so probes of several engines do not line up)."""
    if failures < 0:
        raise ValueError("failures must be >= 0")
    # 2**failures overflows float for huge counts; past the cap the exponent does not matter.
    delay = cap if failures >= 64 else min(cap, base * 2.0**failures)
    spread = (rand or random).uniform(0, jitter * delay) if jitter else 0.0
    return delay - spread


@dataclass(frozen=True, kw_only=True)
class RelayState:
    """What this process knows of the relay."""

    state: str  # OK | UNREACHABLE | UNKNOWN
    since: float | None
    error: str | None

    def to_json(self) -> dict[str, str | None]:
        return {"state": self.state, "since": isoformat(self.since), "error": self.error}


UNKNOWN_STATE = RelayState(state=UNKNOWN, since=None, error=None)


def combine(states: list[RelayState]) -> RelayState:
    """One relay state from those of several engines: unreachable if any engine finds it so
    (the earliest outage), else ok if any reached it, else unknown."""
    down = [s for s in states if s.state == UNREACHABLE]
    if down:
        return min(down, key=lambda s: s.since or 0.0)
    up = [s for s in states if s.state == OK]
    return max(up, key=lambda s: s.since or 0.0) if up else UNKNOWN_STATE


def describe(seconds: float) -> str:
    """A duration for a log line: `45 s`, `3 min 20 s`, `2 h 5 min`."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


Probe = Callable[[], Awaitable[None]]
Persist = Callable[[RelayState], Awaitable[None]]


def smtp_probe(settings: Settings) -> Probe:
    """Connect, EHLO and QUIT through the same connection code as a delivery (client options,
    STARTTLS/TLS and certificate checks, and the login when SMTP_USERNAME is set, included);
    raises what a delivery would."""

    async def probe() -> None:
        transport = SmtpTransport(settings)
        try:
            smtp = await transport._connection()
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()
        except BaseException:
            transport.abort()
            raise
        await transport.close()

    return probe


class RelayCircuit:
    """The transport-wide circuit of one engine process; see the module docstring.

    An outage lasts from the first relay failure until a delivery gets an answer from the
    relay again (sent, or refused for the message itself). A probe that connects closes the
    circuit so that deliveries can confirm it, but a relay failure before any does resumes
    the same outage: same start, the probe backoff continues where it was, and jobs already
    charged for it are not charged again (a relay that accepts EHLO and answers 421 to RCPT
    is as down as one that refuses connections).
    """

    def __init__(
        self,
        *,
        clock: Clock,
        probe: Probe,
        persist: Persist,
        relay: str = "relay",
        rand: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._probe = probe
        self._persist = persist
        self._relay = relay
        self._rand = rand or random.Random()
        self._state = UNKNOWN_STATE
        self._persisted = UNKNOWN_STATE
        self.closed = asyncio.Event()
        self.closed.set()
        self._kick = asyncio.Event()
        self._outage_since: float | None = None  # set from the first failure to confirmation
        self._failures = 0  # failed probes in the current outage: the backoff exponent
        self._last_log = 0.0
        self._charged: set[int] = set()  # jobs charged an attempt for the current outage
        self._announced = False  # "answers again" logged for the current outage
        self.outages = 0
        self.probes = 0
        # Set by the queue: outages are published (RelayOutage) for the event log.
        self.events: EventBus | None = None

    def _announce(self, phase: str, error: str | None, since: float | None) -> None:
        if self.events is not None:
            now = self._clock.time()
            self.events.publish(RelayOutage(at=now, phase=phase, relay=self._relay,
                                            error=error, seconds=now - (since or now)))

    @property
    def state(self) -> RelayState:
        return self._state

    @property
    def is_open(self) -> bool:
        return not self.closed.is_set()

    def trip(self, error: str) -> bool:
        """A delivery met a relay failure: open the circuit; True if a new outage began."""
        if self.is_open:
            return False
        now = self._clock.time()
        resumed = self._outage_since is not None
        if resumed:
            self._failures += 1  # the probe that connected was not enough: back off further
        else:
            self._outage_since = now
            self._failures = 0
            self._charged.clear()
            self._last_log = now
            self._announced = False
            self.outages += 1
            log.warning(
                "SMTP relay %s unreachable: %s; delivery paused for every worker, probing",
                self._relay,
                error,
                extra={"service": "email"},
            )
            self._announce("started", error, now)
        self._state = RelayState(state=UNREACHABLE, since=self._outage_since, error=error)
        self.closed.clear()
        self._kick.set()
        return not resumed

    def charge(self, job_id: int) -> bool:
        """Whether a relay failure of `job_id` costs it an attempt: only its first in the
        current outage."""
        if job_id in self._charged:
            return False
        self._charged.add(job_id)
        return True

    def reached(self) -> None:
        """A delivery got an answer from the relay (sent, or refused for the message)."""
        if self._outage_since is not None and not self.is_open:
            log.info("SMTP relay %s delivering again", self._relay, extra={"service": "email"})
            self._outage_since = None
            self._failures = 0
            self._charged.clear()
        if self._state.state == UNKNOWN:
            self._state = RelayState(state=OK, since=self._clock.time(), error=None)
            self._kick.set()

    async def wait_closed(self, stop: asyncio.Event) -> None:
        """Until the circuit closes or `stop` is set."""
        if self.closed.is_set() or stop.is_set():
            return
        waiters = {asyncio.ensure_future(self.closed.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """The circuit's task: persist state changes, and probe while the circuit is open."""
        while not stop.is_set():
            await self._save()
            if self.is_open:
                await self._probe_until_closed(stop)
                continue
            self._kick.clear()
            if self._persisted == self._state:
                stopper = asyncio.ensure_future(stop.wait())
                kicker = asyncio.ensure_future(self._kick.wait())
                try:
                    await asyncio.wait({stopper, kicker}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stopper.cancel()
                    kicker.cancel()

    async def _save(self) -> None:
        state = self._state
        if state == self._persisted:
            return
        try:
            await self._persist(state)
            self._persisted = state
        except Exception:
            # The database being unavailable is reported by the workers; retry on next change.
            log.exception("recording the SMTP relay state failed")

    async def _probe_until_closed(self, stop: asyncio.Event) -> None:
        while self.is_open and not stop.is_set():
            if await self._clock.wait(stop, probe_delay(self._failures, rand=self._rand)):
                return
            self.probes += 1
            try:
                await self._probe()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failures += 1
                error = classify(exc).error or type(exc).__name__
                since = self._state.since
                self._state = RelayState(state=UNREACHABLE, since=since, error=error)
                now = self._clock.time()
                if now - self._last_log >= STILL_DOWN_LOG_SECONDS:
                    self._last_log = now
                    log.warning(
                        "SMTP relay %s still unreachable after %s: %s",
                        self._relay,
                        describe(now - (since or now)),
                        error,
                        extra={"service": "email"},
                    )
                    self._announce("ongoing", error, since)
                await self._save()  # a new error is written; the same one is not rewritten
                continue
            self._close()
        await self._save()

    def _close(self) -> None:
        now = self._clock.time()
        since = self._state.since or now
        self._state = RelayState(state=OK, since=now, error=None)
        self.closed.set()
        if not self._announced:  # once per outage, however often it resumes
            self._announced = True
            log.warning(
                "SMTP relay %s answers again after %s; delivery resumed",
                self._relay,
                describe(now - since),
                extra={"service": "email"},
            )
            self._announce("ended", None, since)


__all__ = [
    "OK",
    "UNKNOWN",
    "UNREACHABLE",
    "RelayCircuit",
    "RelayState",
    "combine",
    "probe_delay",
    "smtp_probe",
]
