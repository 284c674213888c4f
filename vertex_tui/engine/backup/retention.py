"""Pure retention policy: which backups of one kind rotation deletes.

Like restic's `forget`: a backup is kept if ANY rule keeps it — the last N, the newest of
each of the last N days, ISO weeks and months (in the configured time zone). Two guards
on top: the newest verified backup is never deleted, and nothing is deleted while the most
recent backup of the kind failed (a broken job must not also eat the good copies).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True, kw_only=True)
class RetentionPolicy:
    keep_last: int
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    timezone: str = "UTC"


@dataclass(frozen=True, kw_only=True)
class BackupInfo:
    """What retention needs to know of one backup."""

    id: int
    started_at: float
    status: str  # running | ok | failed | deleted
    verified: bool

    @property
    def good(self) -> bool:
        return self.status == "ok" and self.verified


def _buckets(tz: ZoneInfo) -> list[tuple[str, Callable[[datetime], object]]]:
    return [
        ("keep_daily", lambda d: d.date()),
        ("keep_weekly", lambda d: d.isocalendar()[:2]),
        ("keep_monthly", lambda d: (d.year, d.month)),
    ]


def to_delete(backups: Sequence[BackupInfo], policy: RetentionPolicy) -> set[int]:
    """Ids of the backups (of ONE kind) that rotation may delete."""
    live = sorted(
        (b for b in backups if b.status in ("ok", "failed")),
        key=lambda b: (b.started_at, b.id),
        reverse=True,
    )
    if not live or live[0].status == "failed":
        return set()
    good = [b for b in live if b.good]
    if not good:
        return set()
    keep = {b.id for b in good[: policy.keep_last]}
    keep.add(good[0].id)
    tz = ZoneInfo(policy.timezone)
    for rule, bucket_of in _buckets(tz):
        wanted = getattr(policy, rule)
        seen: set[object] = set()
        for b in good:
            if len(seen) >= wanted:
                break
            bucket = bucket_of(datetime.fromtimestamp(b.started_at, tz))
            if bucket not in seen:
                seen.add(bucket)
                keep.add(b.id)
    # Unverified "ok" rows and failed rows hold no good file; rotation only removes good
    # copies that no rule keeps (failed runs leave no file behind to delete).
    return {b.id for b in good if b.id not in keep}
