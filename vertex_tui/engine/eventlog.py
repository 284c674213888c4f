"""What goes into the engine's event log: pure functions, table-tested.

- `entry_for(event)`: the log entry (service, level, event name, message) an engine event
  becomes, or None for events that are not logged one by one (deliveries: summarised) or
  not here at all (operator actions — retry, cleanup, pause — are read from audit_log,
  which names who did them);
- `DeliveryMinutes`: deliveries counted per minute (sent, retrying, failed, enqueued), so a
  burst of 10,000 mails is one row a minute, not 10,000;
- `parse_since("10m")`: the `--since` of `vertex-tui log`;
- `level_number("warning")`: a level name as logging's number.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import PurePath

from vertex_tui.engine import events as ev
from vertex_tui.engine.errors import UsageError

DEBUG, INFO, WARNING, ERROR = logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}
LEVEL_NAMES = {number: name for name, number in LEVELS.items()}

# An operator action (audit_log) in the log, in words: "root: paused mail delivery", not
# "root: email.pause" (the event keeps the action's name: `audit.email.pause`). A manual
# backup run is `backup.run.<job>`: "ran the <job> backup job". Others (plug-ins) keep their
# name.
AUDIT_WORDS = {
    "email.pause": "paused mail delivery", "email.resume": "resumed mail delivery",
    "email.retry": "retried mail", "email.cancel": "cancelled mail",
    "email.cleanup": "deleted old mail", "email.drain": "drained the mail queue",
    "job.pause": "paused a job", "job.resume": "resumed a job",
    "lifecycle.check": "ran a lifecycle check", "video.check": "ran a video check",
    "backup.verify": "verified a backup", "backup.restore": "restored a backup",
}
BACKUP_RUN_PREFIX = "backup.run."


@dataclass(frozen=True, kw_only=True)
class Cursor:
    """Where a reader of the log stopped: the last engine_log id and audit_log id it saw."""

    log_id: int = 0
    audit_id: int = 0


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One row of the event log (before it has an id and an owner)."""

    at: float
    service: str
    level: int
    event: str
    message: str


def _total(value: object) -> float | None:
    """A count as a number: itself, or the sum of a nested dict of numbers; None otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float, dict)):
        return None
    if isinstance(value, dict):
        parts = [_total(v) for v in value.values()]
        return sum(p for p in parts if p is not None)
    return value


def _counts(counts: dict[str, object]) -> str:
    # The run's duration is in its history (`jobs history`), not in what it did; flags and
    # texts neither.
    shown = []
    for key, value in counts.items():
        number = _total(value)
        if key != "seconds" and number:
            shown.append(f"{key} {number:g}")
    return ", ".join(shown) if shown else "done"


def _name(path: str | None) -> str:
    """A backup's file name (the folder is the configured VERTEX_BACKUP_DIR's)."""
    return "" if not path else PurePath(path).name


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def entry_for(event: ev.Event) -> Entry | None:
    """The log entry for `event`; None if it is not logged on its own."""
    at = event.at
    match event:
        case ev.ServiceStarted(service=service):
            return Entry(at=at, service=service, level=INFO, event="service.started",
                         message=f"service {service} started")
        case ev.ServiceStopped(service=service):
            return Entry(at=at, service=service, level=INFO, event="service.stopped",
                         message=f"service {service} stopped")
        case ev.ServiceErrored(service=service, error=error):
            return Entry(at=at, service=service, level=ERROR, event="service.error",
                         message=f"service {service}: {error}")
        case ev.PassCompleted(service=service, ok=ok, counts=counts, error=error, job=job):
            name = job or service
            if ok:
                return Entry(at=at, service=service, level=INFO, event="pass.ok",
                             message=f"{name}: {_counts(counts)}")
            return Entry(at=at, service=service, level=ERROR, event="pass.error",
                         message=f"{name} failed: {error or 'error'}")
        case ev.JobSkipped(service=service, job=job, holder=holder):
            return Entry(at=at, service=service, level=DEBUG, event="pass.skipped",
                         message=f"{service}.{job} skipped: held by {holder or 'this process'}")
        case ev.NoticesQueued(sent=sent, skipped=skipped):
            total = sum(sent.values())
            if not total and not skipped:
                return None
            kinds = ", ".join(f"{kind} {n}" for kind, n in sent.items() if n) or "none"
            return Entry(at=at, service="lifecycle", level=INFO, event="lifecycle.notices",
                         message=f"{_plural(total, 'notice')} queued ({kinds}); "
                                 f"{skipped} skipped")
        case ev.LifecycleStatusChanged(entity_kind=kind, changes=changes):
            if not any(changes.values()):
                return None
            moved = ", ".join(f"{status} {n}" for status, n in changes.items() if n)
            return Entry(at=at, service="lifecycle", level=INFO, event="lifecycle.status",
                         message=f"{kind} statuses changed: {moved}")
        case ev.VideosChanged(activated=a, deactivated=d, rotated=r, archived=x):
            if not (a or d or r or x):
                return None
            return Entry(at=at, service="video", level=INFO, event="video.changed",
                         message=f"videos: {a} activated, {d} deactivated, {r} rotated, "
                                 f"{x} archived")
        case ev.BackupStarted(kind=kind, trigger=trigger):
            return Entry(at=at, service="backup", level=INFO, event="backup.started",
                         message=f"{kind} backup started ({trigger})")
        case ev.BackupFinished(kind=kind, ok=True, path=path, warnings=warnings):
            note = f"; {warnings}" if warnings else ""
            return Entry(at=at, service="backup", level=WARNING if warnings else INFO,
                         event="backup.finished",
                         message=f"{kind} backup done: {_name(path)}{note}")
        case ev.BackupFinished(kind=kind, error=error):
            return Entry(at=at, service="backup", level=ERROR, event="backup.failed",
                         message=f"{kind} backup failed: {error or 'error'}")
        case ev.RotationFinished(deleted=deleted, error=None):
            return Entry(at=at, service="backup", level=INFO, event="backup.rotation",
                         message=f"rotation deleted {_plural(deleted, 'backup')}")
        case ev.RotationFinished(error=error):
            return Entry(at=at, service="backup", level=ERROR, event="backup.rotation",
                         message=f"rotation failed: {error}")
        case ev.RestoreDrillFinished(ok=True, path=path):
            return Entry(at=at, service="backup", level=INFO, event="backup.drill",
                         message=f"restore drill passed: {_name(path)}")
        case ev.RestoreDrillFinished(path=path, error=error):
            return Entry(at=at, service="backup", level=ERROR, event="backup.drill",
                         message=f"restore drill failed ({_name(path) or 'no backup'}): {error}")
        case ev.CompletionRefused(job_id=job_id, attempt=attempt):
            return Entry(at=at, service="email", level=WARNING, event="email.lease_lost",
                         message=f"job {job_id} attempt {attempt}: finished after its lease "
                                 "expired; the result was not recorded")
        case ev.RelayOutage(phase=phase, relay=relay, error=error, seconds=seconds):
            return _relay_entry(at, phase, relay, error, seconds)
        case ev.RequestHandled(action=action, ok=ok, request_id=rid, result=result):
            service = action.partition(".")[0]
            return Entry(at=at, service=service if service in _SERVICES else "engine",
                         level=INFO if ok else WARNING, event="request.handled",
                         message=f"request {rid} ({_request_words(action, result)}) "
                                 f"{'done' if ok else 'failed'}")
    return None


_SERVICES = ("email", "backup", "lifecycle", "video")
# An attached console's request (an engine action) in words, not "email.drain".
_REQUEST_WORDS = {"email.drain": "drain the mail queue", "email.reap": "reap stale claims",
                  "lifecycle.check": "lifecycle check", "video.check": "video check",
                  "backup.run": "backup", "job.run": "run a job"}


def _request_words(action: str, result: object) -> str:
    job = result.get("job") if isinstance(result, dict) else None
    if action == "job.run" and isinstance(job, str):
        return f"run {job}"
    if action == "backup.run" and isinstance(job, str):
        return f"{job} backup"
    return _REQUEST_WORDS.get(action, action)


def _relay_entry(at: float, phase: str, relay: str, error: str | None,
                 seconds: float) -> Entry:
    from vertex_tui.engine.email.relay import describe

    if phase == "started":
        level, text = WARNING, f"SMTP relay {relay} unreachable: {error}; delivery paused"
    elif phase == "ongoing":
        level, text = WARNING, (f"SMTP relay {relay} still unreachable after "
                                f"{describe(seconds)}: {error}")
    else:
        level, text = INFO, (f"SMTP relay {relay} answers again after {describe(seconds)}; "
                             "delivery resumed")
    return Entry(at=at, service="email", level=level, event=f"relay.{phase}", message=text)


@dataclass
class _Minute:
    enqueued: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0


@dataclass
class DeliveryMinutes:
    """Deliveries and enqueues counted by the minute they happened in (engine clock)."""

    minutes: dict[int, _Minute] = field(default_factory=dict)

    def add(self, event: ev.Event) -> bool:
        """Count `event` if it is a delivery or an enqueue; True if it was one."""
        if isinstance(event, ev.EmailSent):
            self._minute(event.at).sent += 1
        elif isinstance(event, ev.EmailFailed):
            minute = self._minute(event.at)
            if event.retry_at is None:
                minute.failed += 1
            else:
                minute.retrying += 1
        elif isinstance(event, ev.EmailEnqueued):
            self._minute(event.at).enqueued += event.count
        else:
            return False
        return True

    def _minute(self, at: float) -> _Minute:
        key = int(at // 60)
        minute = self.minutes.get(key)  # not setdefault: it would build a _Minute every time
        if minute is None:
            minute = self.minutes[key] = _Minute()
        return minute

    def take(self, now: float | None = None) -> list[Entry]:
        """The summaries of the minutes that ended by `now` (every minute if None), removed."""
        current = None if now is None else int(now // 60)
        done = sorted(m for m in self.minutes if current is None or m < current)
        return [summary(m * 60.0, self.minutes.pop(m)) for m in done]


def summary(start: float, counts: _Minute) -> Entry:
    """One minute's delivery summary (stamped at the minute's start)."""
    parts = [f"{counts.sent} sent"]
    if counts.retrying:
        parts.append(f"{counts.retrying} retrying")
    if counts.failed:
        parts.append(f"{counts.failed} failed")
    if counts.enqueued:
        parts.append(f"{counts.enqueued} enqueued")
    return Entry(at=start, service="email", level=WARNING if counts.failed else INFO,
                 event="email.delivery", message="mail this minute: " + ", ".join(parts))


_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> float:
    """`--since` as seconds back from now: "90s", "10m", "2h", "7d", "1w" (a bare number is
    minutes). Anything else is a UsageError naming what is expected."""
    match = _SINCE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"--since {text!r}: expected a duration such as 90s, 10m, 2h or 7d")
    return float(match.group(1)) * _UNIT[match.group(2) or "m"]


def level_number(name: str) -> int:
    """A level name (debug, info, warning, error; any case) as logging's number."""
    number = LEVELS.get(name.strip().lower())
    if number is None:
        raise UsageError(f"--level {name!r}: expected one of {', '.join(LEVELS)}")
    return number
