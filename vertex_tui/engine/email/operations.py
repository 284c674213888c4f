"""The email queue's operator tools: counts, lists, one job's history, retry, cleanup,
pause/resume (durable, followed by every engine) and drain."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.email.models import EmailJob, EmailJobDetail, QueueStats
from vertex_tui.engine.email.state import QueueState
from vertex_tui.engine.errors import UsageError, VertexError
from vertex_tui.engine.store import email as store

if TYPE_CHECKING:
    from vertex_tui.engine.search import Query


class EmailOperations(QueueState):
    """Mixed into `EmailQueue`: what the console and the CLI call."""

    if TYPE_CHECKING:  # EmailBulk's, mixed into EmailQueue beside this one

        async def search(
            self, text: str | Query | None, *, status: str | None = None, limit: int = 50,
            before_id: int | None = None,
        ) -> list[EmailJob]: ...

    async def stats(self) -> QueueStats:
        now = self._clock.time()
        counts = await store.status_counts(self._db)
        oldest = await store.oldest_pending_created(self._db)
        return QueueStats(
            pending=counts.get("pending", 0),
            sending=counts.get("sending", 0),
            sent=counts.get("sent", 0),
            failed=counts.get("failed", 0),
            cancelled=counts.get("cancelled", 0),
            oldest_pending_at=oldest,
            oldest_pending_age=None if oldest is None else max(0.0, now - oldest),
            next_attempt_at=await store.next_attempt_at(self._db, now),
            sent_last_minute=await store.sent_since(self._db, now - 60),
            paused=await store.is_paused(self._db),
        )

    async def sent_per_minute(self, minutes: int = 60) -> list[int]:
        now = self._clock.time()
        return await store.sent_per_minute(self._db, now - minutes * 60, now)

    async def list_jobs(
        self,
        *,
        status: str | None = None,
        search: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[EmailJob]:
        if search:  # the search language (`engine/search.py`); a bad term is a UsageError
            return await self.search(search, status=status, limit=limit, before_id=before_id)
        return await store.list_jobs(self._db, status=status, limit=limit, before_id=before_id)

    async def failed_ids(self) -> list[int]:
        """Ids of every failed job now (for a bulk retry that acts on exactly these)."""
        return await store.failed_ids(self._db)

    async def get_job(self, job_id: int) -> EmailJobDetail:
        return await store.get_job(self._db, job_id)

    async def retry(
        self,
        *,
        job_id: int | None = None,
        ids: Iterable[int] | None = None,
        limit: int | None = None,
    ) -> list[int]:
        """Failed jobs back to pending with fresh attempts: one (`job_id`), exactly `ids`,
        or the oldest `limit` failed (all when None). Returns the ids retried."""
        now = self._clock.time()
        if job_id is not None:
            detail = await store.get_job(self._db, job_id)
            if detail.job.status not in ("failed", "cancelled"):
                raise UsageError(
                    f"email job {job_id} is {detail.job.status}, not failed or cancelled"
                )
            ids = [job_id]
        chosen = await store.retry_failed(
            self._db, now=now, ids=None if ids is None else list(ids), limit=limit
        )
        if chosen:
            self._wake.set()
        self._events.publish(ev.JobsRetried(at=now, count=len(chosen), job_ids=tuple(chosen[:100])))
        return chosen

    async def cleanup(self, older_than_days: float) -> int:
        """Delete sent and failed jobs that finished more than `older_than_days` ago."""
        if older_than_days < 0:
            raise UsageError("--older-than must be a number of days >= 0")
        now = self._clock.time()
        count = await store.cleanup(
            self._db,
            now=now,
            cutoff=now - older_than_days * 86_400,
            older_than_days=older_than_days,
        )
        self._events.publish(ev.JobsCleanedUp(at=now, count=count))
        return count

    async def pause(self) -> None:
        now = self._clock.time()
        await store.set_paused(self._db, True, now)
        self._set_paused(True, now)

    async def resume(self) -> None:
        now = self._clock.time()
        await store.set_paused(self._db, False, now)
        self._set_paused(False, now)

    async def drain(self, *, timeout: float | None = None,
                    since_start: bool = False) -> dict[str, int]:
        """Deliver everything due now (one attempt each), then return what happened: from
        this call on, or with `since_start` everything this service did since it started
        (`vertex-tui email drain`, whose engine runs for the drain alone: its workers may
        deliver a job before this is called, and that job is the drain's too)."""
        if not self._workers:
            raise UsageError("no email workers run in this process (its email service is not "
                             "started); drain where the engine runs, or `vertex-tui email drain`")
        paused = await store.is_paused(self._db)
        # Follow a resume made elsewhere now, not at the next housekeeping poll.
        self._set_paused(paused, self._clock.time())
        if paused:
            raise UsageError("delivery is paused; resume it first (vertex-tui email resume)")
        before = Counter() if since_start else Counter(self._outcomes)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            # Query first, then read the counters: a claim that commits while the query
            # runs is then seen as claiming or in flight, never missed.
            due = await store.any_due(self._db, self._clock.time())
            if not due and self._claiming == 0 and self._inflight == 0:
                break
            if self.relay.is_open and self._claiming == 0 and self._inflight == 0:
                state = self.relay.state
                raise VertexError(
                    f"SMTP relay unreachable since {isoformat(state.since)} ({state.error});"
                    " the jobs stay pending and are sent when it answers"
                )
            if due:
                # Only then: waking idle workers on every round made them claim (nothing)
                # over and over, and a claim in progress at each check kept this loop going.
                self._wake.set()
            if deadline is not None and loop.time() > deadline:
                raise VertexError(f"drain did not finish within {timeout:g} s")
            self._progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.05):
                    await self._progress.wait()
        after = self._outcomes - before
        result = {"sent": after["sent"], "failed": after["failed"], "retrying": after["pending"]}
        await store.record_action(
            self._db,
            at=self._clock.time(),
            action="email.drain",
            count=sum(result.values()),
            **result,
        )
        return result
