"""The in-memory state of one engine's email queue, shared by its parts: enqueue and the
service lifecycle (queue.py), operator tools (operations.py), workers and the group-commit
completer (workers.py), housekeeping (housekeeping.py).

Every state change is a database write first; this holds only counters, wake-up events and
the outcomes waiting for their group commit.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import Clock
from vertex_tui.engine.email.message import MessageIds
from vertex_tui.engine.email.relay import Probe, RelayCircuit, RelayState, smtp_probe
from vertex_tui.engine.email.transport import SmtpTransport, Transport
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import email as store
from vertex_tui.engine.store import relay as relay_store
from vertex_tui.engine.store.db import Database

if TYPE_CHECKING:
    from vertex_tui.engine.email.workers import BatchOutcomes

TransportFactory = Callable[[], Transport]


class QueueState:
    """What the parts of `EmailQueue` share; built once by its constructor."""

    name = "email"

    def __init__(
        self,
        *,
        db: Database,
        settings: Settings,
        clock: Clock,
        events: ev.EventBus,
        owner: str,
        transport_factory: TransportFactory | None = None,
        rand: random.Random | None = None,
        probe: Probe | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self._clock = clock
        self._events = events
        self._owner = owner
        self._transport_factory = transport_factory or (lambda: SmtpTransport(settings))
        self._rand = rand or random.Random()
        self._ids = MessageIds(settings.email_from)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._progress = asyncio.Event()
        self._flush = asyncio.Event()
        # Outcomes waiting for the completer's next group commit (`_queued`: there are some).
        self._completions: deque[tuple[store.Completion, BatchOutcomes]] = deque()
        self._queued = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._helpers: list[asyncio.Task[None]] = []
        self._paused = False
        self._claiming = 0
        self._inflight = 0
        self._sending = 0
        self._outcomes: Counter[str] = Counter()
        # Jobs this process's workers hold (claimed, outcome not yet written): alive even when
        # their leases ran out during a stall, so this process never reaps them.
        self._held: set[int] = set()
        self._last_error_at: float | None = None
        self.last_error: str | None = None
        self.relay = RelayCircuit(
            clock=clock,
            probe=probe or smtp_probe(settings),
            persist=self._publish_relay,
            relay=f"{settings.smtp_host}:{settings.smtp_port}",
            rand=self._rand,
        )
        self.relay.events = self._events  # outages go to the event log

    def _note_error(self, message: str) -> None:
        self.last_error = message
        self._last_error_at = self._clock.time()
        self._events.publish(
            ev.ServiceErrored(at=self._clock.time(), service=self.name, error=message)
        )

    def _set_paused(self, paused: bool, now: float) -> None:
        if paused == self._paused:
            return
        self._paused = paused
        self._events.publish(ev.QueuePaused(at=now) if paused else ev.QueueResumed(at=now))
        self._wake.set()

    async def _publish_relay(self, state: RelayState) -> None:
        await relay_store.publish(self._db, self._owner, state, at=self._clock.time())
