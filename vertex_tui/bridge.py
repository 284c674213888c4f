"""The one module that knows engine events *and* Textual messages.

Engine events become Textual messages posted to the app; log records become messages for
the Log screen; operator actions go to the engine directly when the console hosts it, or as
requests that a running engine picks up from the database when the console is attached.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.message import Message

from vertex_tui.bridge_requests import wait_for_request
from vertex_tui.engine import Engine
from vertex_tui.engine.events import Event

if TYPE_CHECKING:
    from textual.app import App

# Engine events (class names) after which the jobs' table is out of date: every job run
# publishes PassCompleted (or JobSkipped for a standby's skip); a backup, rotation or drill
# its own event; an attached console's request comes back as RequestHandled.
JOB_EVENTS = frozenset({"PassCompleted", "JobSkipped", "BackupFinished", "RotationFinished",
                        "RestoreDrillFinished", "RequestHandled"})


class EngineEvent(Message, bubble=False):
    """An engine event, delivered on the app's loop (the app forwards it to the screen).

    `bubble=False` goes in the class keywords: Textual's `Message.__init_subclass__` sets
    `bubble` after the class body runs, so a `bubble = False` attribute would be overwritten
    and every forwarded event would bubble back to the app, which forwards it again.
    """

    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class LogRecorded(Message, bubble=False):
    """A log record for the Log screen. Bursts coalesce: the screen re-reads the buffer."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LogRecorded)


@dataclass(frozen=True)
class LogLine:
    at: float
    level: str
    levelno: int
    service: str
    logger: str
    text: str


class ConsoleLogHandler(logging.Handler):
    """Keeps the latest records for the Log screen and tells the app they arrived."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[LogLine] = deque(maxlen=capacity)
        self.total = 0  # records ever received; the Log screen appends the difference
        self.app: App[Any] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            service = str(getattr(record, "service", "") or _service_of(record.name))
            self.lines.append(LogLine(at=record.created, level=record.levelname,
                                      levelno=record.levelno, service=service,
                                      logger=record.name, text=record.getMessage()))
            self.total += 1
            if self.app is not None and self.app.is_running:
                self.app.post_message(LogRecorded())
        except Exception:
            self.handleError(record)


def _service_of(logger: str) -> str:
    for name in ("email", "backup", "lifecycle", "videos", "video"):
        if f".{name}" in logger:
            return "video" if name == "videos" else name
    return "engine"


class Bridge:
    """Connects an open engine to the app."""

    def __init__(self, engine: Engine, *, attached: bool) -> None:
        self.engine = engine
        self.attached = attached
        self._unsubscribe: Any = None

    def connect(self, app: App[Any]) -> None:
        self._unsubscribe = self.engine.events.subscribe(
            lambda event: app.post_message(EngineEvent(event)))

    def disconnect(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def act(self, action: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Perform an engine action: here if we host the engine, else by request."""
        if not self.attached:
            return await self.engine.perform(action, args)
        return await wait_for_request(self.engine, action, args)

    def services(self) -> list[str]:
        """Every service of the engine's registry in its order (the four built-in ones, then
        plug-ins), then those whose entry point failed to load (shown with state error)."""
        registry = self.engine.registry
        names = registry.names()
        return [*names, *(name for name in registry.broken if name not in names)]

    async def engines_alive(self) -> list[str]:
        return await self.engine.leases.alive_engines(self.engine.clock.time())
