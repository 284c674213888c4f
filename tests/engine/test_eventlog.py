"""The event log's pure parts, table-tested: event -> entry, the per-minute delivery summary,
`--since` and `--level` parsing. No database here, so nothing to run per backend (the log's
rows on SQLite and PostgreSQL: test_event_log.py)."""

from __future__ import annotations

import pytest

from vertex_tui.engine import events as ev
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.eventlog import (
    DEBUG,
    ERROR,
    INFO,
    WARNING,
    DeliveryMinutes,
    entry_for,
    level_number,
    parse_since,
)

T = 1_800_000_000.0  # a minute boundary (1_800_000_000 / 60 = 30_000_000)

ENTRIES = [
    (ev.ServiceStarted(at=T, service="video"), "video", INFO, "service.started",
     "service video started"),
    (ev.ServiceStopped(at=T, service="email"), "email", INFO, "service.stopped",
     "service email stopped"),
    (ev.ServiceErrored(at=T, service="email", error="database is locked"), "email", ERROR,
     "service.error", "service email: database is locked"),
    (ev.PassCompleted(at=T, service="lifecycle", ok=True, job="lifecycle.check",
                      counts={"notices": 3, "archived": 0, "seconds": 0.25, "full": True,
                              "changes": {"project": {"active": 1}, "portrait": {"x": 2}}}),
     "lifecycle", INFO, "pass.ok", "lifecycle.check: notices 3, changes 3"),
    (ev.PassCompleted(at=T, service="video", ok=True, job="video.check", counts={}), "video",
     INFO, "pass.ok", "video.check: done"),
    (ev.PassCompleted(at=T, service="backup", ok=False, job="backup.database", counts={},
                      error="OSError: disk full"), "backup", ERROR, "pass.error",
     "backup.database failed: OSError: disk full"),
    (ev.JobSkipped(at=T, service="video", job="check", holder="ops-1:42:ab"), "video", DEBUG,
     "pass.skipped", "video.check skipped: held by ops-1:42:ab"),
    (ev.NoticesQueued(at=T, sent={"7days": 2, "24hours": 0, "expired": 1}, skipped=4),
     "lifecycle", INFO, "lifecycle.notices", "3 notices queued (7days 2, expired 1); 4 skipped"),
    (ev.LifecycleStatusChanged(at=T, entity_kind="portrait", changes={"expiring": 2,
                                                                      "archived": 0}),
     "lifecycle", INFO, "lifecycle.status", "portrait statuses changed: expiring 2"),
    (ev.VideosChanged(at=T, activated=2, deactivated=0, rotated=1, archived=0), "video", INFO,
     "video.changed", "videos: 2 activated, 0 deactivated, 1 rotated, 0 archived"),
    (ev.BackupStarted(at=T, kind="database", trigger="manual"), "backup", INFO,
     "backup.started", "database backup started (manual)"),
    (ev.BackupFinished(at=T, kind="full", ok=True, path="/srv/backups/full/f.tar.gz", size=9),
     "backup", INFO, "backup.finished", "full backup done: f.tar.gz"),
    (ev.BackupFinished(at=T, kind="storage", ok=True, path="s.tar.gz", size=9,
                       warnings="1 link skipped"), "backup", WARNING, "backup.finished",
     "storage backup done: s.tar.gz; 1 link skipped"),
    (ev.BackupFinished(at=T, kind="database", ok=False, path=None, size=None,
                       error="integrity check failed"), "backup", ERROR, "backup.failed",
     "database backup failed: integrity check failed"),
    (ev.RotationFinished(at=T, deleted=1), "backup", INFO, "backup.rotation",
     "rotation deleted 1 backup"),
    (ev.RotationFinished(at=T, deleted=0, error="permission denied"), "backup", ERROR,
     "backup.rotation", "rotation failed: permission denied"),
    (ev.RestoreDrillFinished(at=T, ok=True, path="/b/full/d.db"), "backup", INFO, "backup.drill",
     "restore drill passed: d.db"),
    (ev.RestoreDrillFinished(at=T, ok=False, path=None, error="no verified backup"), "backup",
     ERROR, "backup.drill", "restore drill failed (no backup): no verified backup"),
    (ev.CompletionRefused(at=T, job_id=7, attempt=2), "email", WARNING, "email.lease_lost",
     "job 7 attempt 2: finished after its lease expired; the result was not recorded"),
    (ev.RelayOutage(at=T, phase="started", relay="mx:25", error="connection refused"),
     "email", WARNING, "relay.started",
     "SMTP relay mx:25 unreachable: connection refused; delivery paused"),
    (ev.RelayOutage(at=T, phase="ongoing", relay="mx:25", error="timeout", seconds=125),
     "email", WARNING, "relay.ongoing",
     "SMTP relay mx:25 still unreachable after 2 min 5 s: timeout"),
    (ev.RelayOutage(at=T, phase="ended", relay="mx:25", error=None, seconds=3600), "email",
     INFO, "relay.ended", "SMTP relay mx:25 answers again after 1 h 0 min; delivery resumed"),
    (ev.RequestHandled(at=T, request_id=4, action="email.drain", ok=True, result={}), "email",
     INFO, "request.handled", "request 4 (drain the mail queue) done"),
    (ev.RequestHandled(at=T, request_id=5, action="job.run", ok=False, result={}), "engine",
     WARNING, "request.handled", "request 5 (run a job) failed"),
    (ev.RequestHandled(at=T, request_id=6, action="job.run", ok=True,
                       result={"job": "backup.database", "bytes": 9}), "engine",
     INFO, "request.handled", "request 6 (run backup.database) done"),
    (ev.RequestHandled(at=T, request_id=7, action="backup.run", ok=True,
                       result={"job": "storage"}), "backup",
     INFO, "request.handled", "request 7 (storage backup) done"),
    (ev.RequestHandled(at=T, request_id=8, action="plugin.act", ok=True, result=None), "engine",
     INFO, "request.handled", "request 8 (plugin.act) done"),
]


@pytest.mark.parametrize(("event", "service", "level", "name", "message"), ENTRIES,
                         ids=[f"{type(e[0]).__name__}-{i}" for i, e in enumerate(ENTRIES)])
def test_entry_for_an_event(event: ev.Event, service: str, level: int, name: str,
                            message: str) -> None:
    entry = entry_for(event)
    assert entry is not None
    assert (entry.at, entry.service, entry.level, entry.event, entry.message) == (
        T, service, level, name, message)


@pytest.mark.parametrize("event", [
    # Deliveries are summarised per minute, not logged one by one.
    ev.EmailSent(at=T, job_id=1, attempt=1, message_id="<a@b>"),
    ev.EmailFailed(at=T, job_id=1, attempt=1, error="550", retry_at=None),
    ev.EmailEnqueued(at=T, count=3),
    # Operator actions come from audit_log (with who did them), not twice.
    ev.JobsRetried(at=T, count=2), ev.JobsCleanedUp(at=T, count=9), ev.QueuePaused(at=T),
    # Passes that changed nothing say nothing.
    ev.NoticesQueued(at=T, sent={"7days": 0}, skipped=0),
    ev.VideosChanged(at=T, activated=0, deactivated=0, rotated=0, archived=0),
    ev.LifecycleStatusChanged(at=T, entity_kind="project", changes={"active": 0}),
], ids=lambda e: type(e).__name__)
def test_events_not_logged_one_by_one(event: ev.Event) -> None:
    assert entry_for(event) is None


def sent(at: float) -> ev.EmailSent:
    return ev.EmailSent(at=at, job_id=1, attempt=1, message_id="<a@b>")


def failed(at: float, *, retry: bool) -> ev.EmailFailed:
    return ev.EmailFailed(at=at, job_id=1, attempt=1, error="451", retry_at=at + 1 if retry
                          else None)


@pytest.mark.parametrize(("events", "now", "expected"), [
    # Nothing happened: no summary.
    ([], T + 120, []),
    # The current minute is not summarised before it ends...
    ([sent(T + 5), sent(T + 59)], T + 59.9, []),
    # ...and is once it has: one row for the minute, stamped at its start.
    ([sent(T + 5), sent(T + 59)], T + 60, [(T, INFO, "mail this minute: 2 sent")]),
    # Failures: warning when a job failed for good; retries alone are info.
    ([sent(T), failed(T + 1, retry=True), failed(T + 2, retry=False),
      ev.EmailEnqueued(at=T + 3, count=5)], T + 60,
     [(T, WARNING, "mail this minute: 1 sent, 1 retrying, 1 failed, 5 enqueued")]),
    ([failed(T + 1, retry=True)], T + 60, [(T, INFO, "mail this minute: 0 sent, 1 retrying")]),
    # Two minutes ended, the third goes on: two rows, oldest first.
    ([sent(T + 1), sent(T + 61), sent(T + 62), sent(T + 121)], T + 130,
     [(T, INFO, "mail this minute: 1 sent"), (T + 60, INFO, "mail this minute: 2 sent")]),
    # A final take (now=None: the engine stops) includes the current minute.
    ([sent(T + 1), sent(T + 61)], None,
     [(T, INFO, "mail this minute: 1 sent"), (T + 60, INFO, "mail this minute: 1 sent")]),
])
def test_delivery_minutes(events: list[ev.Event], now: float | None,
                          expected: list[tuple[float, int, str]]) -> None:
    minutes = DeliveryMinutes()
    for event in events:
        assert minutes.add(event)
    got = minutes.take(now)
    assert [(e.at, e.level, e.message) for e in got] == expected
    assert all(e.service == "email" and e.event == "email.delivery" for e in got)
    # What was taken is gone; what was not stays for the next take.
    assert minutes.take(now) == []


def test_delivery_minutes_ignore_other_events() -> None:
    minutes = DeliveryMinutes()
    assert not minutes.add(ev.ServiceStarted(at=T, service="email"))
    assert minutes.take(None) == []


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("10m", 600), ("2h", 7200), ("7d", 604800), ("1w", 604800), ("1.5h", 5400),
    ("15", 900), (" 3m ", 180),
])
def test_parse_since(text: str, seconds: float) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "-5m", "0", "10 minutes", "1h30m", "abc"])
def test_parse_since_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="expected a duration such as 90s, 10m, 2h or 7d"):
        parse_since(text)


@pytest.mark.parametrize(("name", "number"), [("debug", 10), ("INFO", 20), ("Warning", 30),
                                              ("error", 40)])
def test_level_number(name: str, number: int) -> None:
    assert level_number(name) == number


def test_level_number_refuses() -> None:
    with pytest.raises(UsageError, match="expected one of debug, info, warning, error"):
        level_number("critical!")
