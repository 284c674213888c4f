"""The backup panel and the rotation preview: what an operator checks at a glance.

`freshness` is the pure age-colour policy (table tests in tests/engine/test_backup_overview.py):
a kind is `ok` until its last success is older than its warning age
(`BACKUP_WARN_AGE_HOURS`), `warning` until twice that, then `critical`; a kind that never
succeeded is `critical`, a disabled one `disabled`.
"""

from __future__ import annotations

from typing import Any

from vertex_tui.engine.backup import folder
from vertex_tui.engine.backup.retention import BackupInfo, RetentionPolicy, to_delete
from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import backup_overview
from vertex_tui.engine.store.db import Database

LEVELS = ("ok", "warning", "critical", "disabled")
CRITICAL_FACTOR = 2.0


def freshness(age_seconds: float | None, warn_hours: float, *, enabled: bool = True) -> str:
    """`ok`, `warning` or `critical` for a last success `age_seconds` ago (None: never);
    `disabled` when the kind's job is off (nothing is expected of it)."""
    if not enabled:
        return "disabled"
    if age_seconds is None:
        return "critical"
    hours = age_seconds / 3600.0
    if hours >= warn_hours * CRITICAL_FACTOR:
        return "critical"
    if hours >= warn_hours:
        return "warning"
    return "ok"


def policy_of(settings: Settings) -> RetentionPolicy:
    s = settings
    return RetentionPolicy(keep_last=s.backup_keep_last, keep_daily=s.backup_keep_daily,
                           keep_weekly=s.backup_keep_weekly,
                           keep_monthly=s.backup_keep_monthly, timezone=s.timezone)


async def rotation_preview(db: Database, settings: Settings,
                           kinds: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    """kind -> the backups a rotation run now would delete (the same policy as the job's),
    oldest first. Reads only: nothing is deleted or marked."""
    policy = policy_of(settings)
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in kinds:
        records = await folder.rotatable(db, settings, kind)
        doomed = to_delete([BackupInfo(id=r.id, started_at=r.started_at, status=r.status,
                                       verified=r.verified) for r in records], policy)
        out[kind] = [{"id": r.id, "path": r.path, "size": r.size,
                      "started_at": isoformat(r.started_at)}
                     for r in sorted(records, key=lambda r: (r.started_at, r.id))
                     if r.id in doomed]
    return out


async def panel(db: Database, settings: Settings, now: float,
                jobs: list[dict[str, Any]], kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """One entry per backup kind: its level, age of the last success, warning age, next
    run, last verification, count and total size on disk. `jobs`: `BackupService.schedule()`."""
    figures = await backup_overview.by_kind(db)
    by_job = {str(j["job"]): j for j in jobs}
    out = []
    for kind in kinds:
        doc = figures.get(kind, {})
        job = by_job.get(kind, {})
        last_ok = doc.get("last_ok_at")
        age = None if last_ok is None else max(0.0, now - float(last_ok))
        warn = settings.backup_warn_age_hours.warn_hours(kind)
        enabled = bool(job.get("enabled", True))
        verified_at = doc.get("last_verified_at")
        out.append({
            "kind": kind, "enabled": enabled,
            "level": freshness(age, warn, enabled=enabled),
            "last_success_at": isoformat(last_ok), "age_seconds": age,
            "warn_age_hours": warn, "critical_age_hours": warn * CRITICAL_FACTOR,
            "next_run": job.get("next_run"),
            "last_verified_at": isoformat(verified_at),
            "last_verified_ok": doc.get("last_verified_ok"),
            "last_verified_error": doc.get("last_verified_error"),
            "count": int(doc.get("count", 0)), "total_size": int(doc.get("total_size", 0)),
        })
    return out
