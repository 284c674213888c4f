"""Past-tense facts the engine publishes, and the bus a console subscribes to.

Publishing never blocks and never fails the publisher: a subscriber that raises is logged and
kept; an async subscriber's queue drops its oldest events when it falls behind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every engine event; `at` is epoch seconds on the engine's clock."""

    at: float


@dataclass(frozen=True, kw_only=True)
class ServiceStarted(Event):
    service: str


@dataclass(frozen=True, kw_only=True)
class ServiceStopped(Event):
    service: str


@dataclass(frozen=True, kw_only=True)
class ServiceErrored(Event):
    service: str
    error: str


@dataclass(frozen=True, kw_only=True)
class EmailEnqueued(Event):
    count: int
    job_ids: tuple[int, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EmailSent(Event):
    """`created_at`: when the job was enqueued (engine clock), so `at - created_at` is its
    enqueue-to-sent latency; None from publishers that do not know it."""

    job_id: int
    attempt: int
    message_id: str
    created_at: float | None = None


@dataclass(frozen=True, kw_only=True)
class EmailFailed(Event):
    """A delivery attempt failed; `retry_at` is None when the job is now `failed` for good."""

    job_id: int
    attempt: int
    error: str
    retry_at: float | None


@dataclass(frozen=True, kw_only=True)
class CompletionRefused(Event):
    """A worker finished a job whose lease it had lost; its write was refused."""

    job_id: int
    attempt: int


@dataclass(frozen=True, kw_only=True)
class QueuePaused(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class QueueResumed(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class JobsRetried(Event):
    count: int
    job_ids: tuple[int, ...] = field(default=())


@dataclass(frozen=True, kw_only=True)
class JobsCleanedUp(Event):
    count: int


@dataclass(frozen=True, kw_only=True)
class BackupStarted(Event):
    kind: str
    trigger: str


@dataclass(frozen=True, kw_only=True)
class BackupFinished(Event):
    kind: str
    ok: bool
    path: str | None
    size: int | None
    error: str | None = None
    warnings: str | None = None


@dataclass(frozen=True, kw_only=True)
class RotationFinished(Event):
    deleted: int
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class RestoreDrillFinished(Event):
    ok: bool
    path: str | None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class JobSkipped(Event):
    """A scheduled job did not run here: another process holds its lease."""

    service: str
    job: str
    holder: str | None


@dataclass(frozen=True, kw_only=True)
class PassCompleted(Event):
    """A job run finished (every job goes through runs.LeasedRun, which publishes this);
    `job` is its dotted name, `counts` say what it did."""

    service: str
    ok: bool
    counts: dict[str, Any]
    error: str | None = None
    job: str = ""


@dataclass(frozen=True, kw_only=True)
class LifecycleStatusChanged(Event):
    """Subscription statuses moved in one pass: counts by new status, per entity kind."""

    entity_kind: str
    changes: dict[str, int]


@dataclass(frozen=True, kw_only=True)
class NoticesQueued(Event):
    """Lifecycle notices written (and their mail enqueued) by one pass, by kind."""

    sent: dict[str, int]
    skipped: int


@dataclass(frozen=True, kw_only=True)
class VideosChanged(Event):
    activated: int
    deactivated: int
    rotated: int
    archived: int


@dataclass(frozen=True, kw_only=True)
class RelayOutage(Event):
    """The SMTP relay went down ("started"), is still down ("ongoing", at most once a
    minute), or answers again ("ended"); `seconds` is the outage's age."""

    phase: str
    relay: str
    error: str | None
    seconds: float = 0.0


@dataclass(frozen=True, kw_only=True)
class LogWritten(Event):
    """The event log writer stored `count` entries (a hosting console's Log screen reads)."""

    count: int


@dataclass(frozen=True, kw_only=True)
class RequestHandled(Event):
    """An engine executed an action requested by an attached console."""

    request_id: int
    action: str
    ok: bool
    result: Any


Subscriber = Callable[[Event], Any]


class EventBus:
    """Fan-out of engine events to callbacks and bounded async queues."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(event)` for every event; returns a function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def queue(self, maxsize: int = 1000) -> tuple[asyncio.Queue[Event], Callable[[], None]]:
        """A bounded queue of events (oldest dropped when full) and its unsubscribe function."""
        q: asyncio.Queue[Event] = asyncio.Queue(maxsize)

        def put(event: Event) -> None:
            if q.full():
                q.get_nowait()
            q.put_nowait(event)

        return q, self.subscribe(put)

    def publish(self, event: Event) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber failed on %s", type(event).__name__)
