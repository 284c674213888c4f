"""The video animation scheduler: activation, deactivation, rotation and archiving.

Scans are set-wise SQL (`store.videos`); the one decision with variety — which video comes
next in a rotation — is the pure `next_video()`. At most one active video per portrait is
enforced by a partial unique index, so even two passes at once cannot break it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import Clock
from vertex_tui.engine.email.queue import EmailQueue
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.periodic import PeriodicService
from vertex_tui.engine.scheduling import Scheduler
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import email as email_store
from vertex_tui.engine.store import videos as store
from vertex_tui.engine.store.db import Database

ROTATIONS = ("none", "sequential", "cyclic", "random")


def next_video(mode: str, current: tuple[int, int], eligible: Sequence[tuple[int, int]],
               rand: random.Random | None = None) -> int | None:
    """The id of the video to rotate to, or None to keep the current one.

    `current` and `eligible` are (position, id) pairs; `eligible` excludes nothing but
    videos outside their window. sequential: the next one after the current, stopping at
    the end; cyclic: the same, wrapping around; random: any other eligible video.
    """
    others = [v for v in eligible if v != current]
    if mode == "none" or not others:
        return None
    if mode == "random":
        return (rand or random).choice(others)[1]
    after = [v for v in sorted(others) if v > current]
    if after:
        return after[0][1]
    return sorted(others)[0][1] if mode == "cyclic" else None


class VideoService(PeriodicService):
    """Runs video passes every `VIDEO_SCHEDULER_CHECK_INTERVAL` and on demand."""

    name = "video"

    def __init__(self, *, db: Database, settings: Settings, clock: Clock,
                 events: ev.EventBus, leases: Leases, owner: str, email: EmailQueue,
                 scheduler: Scheduler,
                 rand: random.Random | None = None) -> None:
        super().__init__(db=db, clock=clock, events=events, leases=leases, owner=owner,
                         interval=settings.video_check_interval,
                         enabled=settings.video_enabled, scheduler=scheduler)
        self._settings = settings
        self._email = email
        self._rand = rand or random.Random()

    def _params(self, now: float, last: float | None) -> dict[str, Any]:
        s = self._settings
        return {"now": now, "last": last if last is not None else 0.0,
                "archive_after": s.video_archive_after_hours * 3600.0,
                "rotation_interval": float(s.video_rotation_interval)}

    async def run_pass(self, now: float) -> dict[str, Any]:
        result = store.VideoPass()
        notify_to = self._settings.notify_admin_email
        digest_mailed = False
        async with self._db.transaction() as conn:
            last = await store.last_pass(conn)
            result.full = last is None
            p = self._params(now, last)
            await store.take_marks(conn, p, self._db.dialect)
            await store.deactivate(conn, p, result.full, result)
            await store.archive(conn, p, result)
            moves = []
            for c in await store.rotation_candidates(conn, p):
                target = next_video(c.mode, (c.position, c.video_id), c.eligible, self._rand)
                if target is not None:
                    moves.append((c.portrait_id, c.video_id, target))
            if moves:
                await store.rotate(conn, moves, now, result)
            await store.activate(conn, p, result.full, result)
            await store.finish(conn, now, p)
            changed = result.activated + result.deactivated + result.rotated
            if changed and notify_to and self._settings.video_notifications_enabled:
                await email_store.insert_job(conn, self._email.outbox_row(
                    to=notify_to, subject=self._digest_subject(result),
                    body=self._digest_body(result), now=now))
                digest_mailed = True
        if digest_mailed:
            self._email.enqueued_elsewhere(1)
        if result.activated or result.deactivated or result.rotated or result.archived:
            self._events.publish(ev.VideosChanged(
                at=now, activated=result.activated, deactivated=result.deactivated,
                rotated=result.rotated, archived=result.archived))
        return {**result.to_json(), "digest_mailed": digest_mailed}

    @staticmethod
    def _digest_subject(r: store.VideoPass) -> str:
        return (f"Video schedule: {r.activated} activated, {r.deactivated} deactivated, "
                f"{r.rotated} rotated")

    @staticmethod
    def _digest_body(r: store.VideoPass) -> str:
        total = r.activated + r.deactivated + r.rotated
        more = total - len(r.lines)
        tail = f"\n... and {more} more\n" if more > 0 else "\n"
        return "Changes made by the video scheduler:\n\n" + "\n".join(r.lines) + tail

    def published_params(self) -> dict[str, Any]:
        return {"rotation_interval": float(self._settings.video_rotation_interval)}

    async def rotation_interval(self) -> float:
        """The rotation interval of the engine that rotates: ours if this process runs the
        passes, else the one the running engine published (over SSH, the operator's shell
        rarely has the service's environment), else ours."""
        if self._scheduler is None and (job := await self._published()) is not None:
            theirs = (job.get("params") or {}).get("rotation_interval")
            if isinstance(theirs, (int, float)):
                return float(theirs)
        return float(self._settings.video_rotation_interval)

    async def summary(self) -> dict[str, Any]:
        """Counts, upcoming changes and current rotations. A rotation that cannot happen
        (no other eligible video, or a sequential one at its end) is not listed as coming."""
        def possible(c: store.RotationCandidate) -> bool:
            return next_video(c.mode, (c.position, c.video_id), c.eligible,
                              random.Random(0)) is not None

        return await store.summary(self._db, now=self._clock.time(),
                                   rotation_interval=await self.rotation_interval(),
                                   rotatable=possible)

    async def add_video(self, *, portrait_id: int, title: str, start: float | None = None,
                        end: float | None = None, rotation: str = "none") -> int:
        if rotation not in ROTATIONS:
            raise UsageError(f"rotation must be one of {', '.join(ROTATIONS)}")
        if not title.strip():
            raise UsageError("video title must not be empty")
        if start is not None and end is not None and end <= start:
            raise UsageError("the video's end must be after its start")
        return await store.add_video(self._db, portrait_id=portrait_id, title=title.strip(),
                                     start=start, end=end, rotation=rotation,
                                     now=self._clock.time())
