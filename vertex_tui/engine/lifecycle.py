"""Subscription lifecycle: status of projects and portraits, and the notices to their owners.

The decisions are pure functions (`status_for`, `notice_for`) with table tests; the pass
applies the same rules set-wise in SQL (`store.lifecycle`), so a million portraits cost a few
index range scans, not a Python loop.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parseaddr
from typing import Any

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import Clock
from vertex_tui.engine.email.message import parse_address
from vertex_tui.engine.email.queue import EmailQueue
from vertex_tui.engine.errors import InvalidMessage, UsageError
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.periodic import PeriodicService
from vertex_tui.engine.scheduling import Scheduler
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import lifecycle as store
from vertex_tui.engine.store.db import Database

DAY = store.DAY
WEEK = store.WEEK


def status_for(end: float | None, now: float) -> str:
    """active (> 7 days left or no end), expiring (<= 7 days), archived (ended)."""
    if end is None:
        return "active"
    if end <= now:
        return "archived"
    if end <= now + WEEK:
        return "expiring"
    return "active"


def notice_for(end: float | None, now: float) -> tuple[str, bool] | None:
    """The most urgent notice that applies at `now`, and whether it is mailed.

    A late pass gets the most urgent one only (12 h before the end: the 24-hour notice, not
    a stale 7-day one). An expired notice is mailed only while the end lies within the last
    7 days; older ends are recorded as skipped so a first run over history floods no one.
    """
    if end is None or end > now + WEEK:
        return None
    if end <= now:
        return ("expired", end > now - WEEK)
    if end <= now + DAY:
        return ("24hours", True)
    return ("7days", True)


def parse_when(text: str) -> float:
    """An ISO 8601 time (a date alone means midnight UTC; no offset means UTC)."""
    from datetime import UTC

    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"invalid date/time {text!r}: expected ISO 8601, "
                         "e.g. 2026-12-31 or 2026-12-31T18:00:00+01:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        # 9999-12-31T23:59:59-01:00 is year 10000 in UTC: stored, it breaks every summary.
        datetime.fromtimestamp(dt.timestamp(), UTC)
    except (OverflowError, ValueError, OSError):
        raise UsageError(f"date/time {text!r} is out of range") from None
    return dt.timestamp()


def owner_address(text: str) -> str:
    try:
        return parse_address(text)
    except InvalidMessage as exc:
        raise UsageError(str(exc)) from None


class LifecycleService(PeriodicService):
    """Runs lifecycle passes every `LIFECYCLE_CHECK_INTERVAL_SECONDS` and on demand."""

    name = "lifecycle"

    def __init__(self, *, db: Database, settings: Settings, clock: Clock,
                 events: ev.EventBus, leases: Leases, owner: str, email: EmailQueue,
                 scheduler: Scheduler) -> None:
        super().__init__(db=db, clock=clock, events=events, leases=leases, owner=owner,
                         interval=settings.lifecycle_check_interval,
                         enabled=settings.lifecycle_enabled, scheduler=scheduler)
        self._settings = settings
        self._email = email

    async def run_pass(self, now: float) -> dict[str, Any]:
        s = self._settings
        domain = parseaddr(s.email_from)[1].rpartition("@")[2] or "localhost"
        counts = await store.run_pass(self._db, now=now, notify=s.lifecycle_notifications_enabled,
                                      sender=s.email_from, domain=domain,
                                      max_attempts=s.email_retry_max_attempts)
        for kind, changes in counts.changes.items():
            if any(changes.values()):
                self._events.publish(ev.LifecycleStatusChanged(at=now, entity_kind=kind,
                                                               changes=changes))
        if counts.sent or counts.skipped:
            self._events.publish(ev.NoticesQueued(at=now, sent=counts.sent,
                                                  skipped=counts.skipped))
        if counts.emails:
            self._email.enqueued_elsewhere(counts.emails)
        return counts.to_json()

    async def summary(self) -> dict[str, Any]:
        return await store.summary(self._db, now=self._clock.time())

    # ---- entities (the platform normally writes these; operators and scripts may too) ----

    async def add_project(self, *, name: str, owner: str, subscription_end: float | None) -> int:
        if not name.strip():
            raise UsageError("project name must not be empty")
        return await store.add_project(self._db, name=name.strip(), owner=owner_address(owner),
                                       end=subscription_end, now=self._clock.time())

    async def add_portrait(self, *, title: str, owner: str, project_id: int | None = None,
                           subscription_end: float | None = None) -> int:
        """A portrait; without its own end it takes its project's subscription end."""
        if not title.strip():
            raise UsageError("portrait title must not be empty")
        address = owner_address(owner)
        if project_id is not None:
            project_end = await store.project_end(self._db, project_id)
            if subscription_end is None:
                subscription_end = project_end
        return await store.add_portrait(self._db, title=title.strip(), owner=address,
                                        project_id=project_id, end=subscription_end,
                                        now=self._clock.time())

    async def renew(self, kind: str, entity_id: int, subscription_end: float | None) -> None:
        """A new subscription end: a new period, with its own notices."""
        if kind not in store.TABLES:
            raise UsageError(f"unknown entity kind {kind!r}")
        await store.set_subscription_end(self._db, kind, entity_id, subscription_end)
