"""The email queue's search and bulk tools: one search language (`engine/search.py`) over the
FTS index, counts for "all N matching", and cancel. Mixed into `EmailQueue`.

A bulk action acts on exactly what its confirmation named: the caller captures the ids with
`matching_ids` when it asks (the count it shows is their number), then passes those ids to
`retry(ids=...)` or `cancel(ids=...)`, which act only on the ones still in an eligible state.
"""

from __future__ import annotations

import dataclasses

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import Clock
from vertex_tui.engine.email.models import EmailJob
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.search import Query, parse
from vertex_tui.engine.store import email as store
from vertex_tui.engine.store import search as search_store
from vertex_tui.engine.store.db import Database

BULK_CAP = 100_000  # at most this many jobs in one bulk action (named in its confirmation)
RETRYABLE = ("failed", "cancelled")
CANCELLABLE = search_store.CANCELLABLE


def query(text: str | Query | None, status: str | None = None) -> Query:
    """Parse `text` (raises SearchError, a UsageError, for a bad term), narrowed to `status`."""
    q = text if isinstance(text, Query) else parse(text or "")
    if status:
        wanted = frozenset({status}) if q.statuses is None else q.statuses & {status}
        q = dataclasses.replace(q, statuses=wanted)
    return q


class EmailBulk:
    """Mixed into `EmailQueue` (which sets the attributes declared here)."""

    _db: Database
    _clock: Clock
    _events: ev.EventBus

    async def search(
        self,
        text: str | Query | None,
        *,
        status: str | None = None,
        limit: int = 50,
        before_id: int | None = None,
    ) -> list[EmailJob]:
        """One page of jobs matching the search, newest first."""
        return await search_store.page(
            self._db, query(text, status), now=self._clock.time(), limit=limit,
            before_id=before_id,
        )

    async def count_matching(
        self, text: str | Query | None, *, status: str | None = None, cap: int | None = None
    ) -> int:
        return await search_store.count(
            self._db, query(text, status), now=self._clock.time(), cap=cap
        )

    async def matching_ids(
        self,
        text: str | Query | None,
        *,
        eligible: tuple[str, ...],
        status: str | None = None,
        cap: int = BULK_CAP,
    ) -> list[int]:
        """Ids of the matching jobs in an `eligible` status (newest first, at most `cap`)."""
        return await search_store.matching_ids(
            self._db, query(text, status), now=self._clock.time(), statuses=eligible, cap=cap
        )

    async def count_eligible(self, text: str | Query | None, *, eligible: tuple[str, ...]
                             ) -> int:
        """How many matching jobs are in an `eligible` status now, uncapped (what a bulk
        action capped at BULK_CAP leaves for a next run)."""
        q = query(text)
        wanted = frozenset(eligible) if q.statuses is None else q.statuses & set(eligible)
        if not wanted:
            return 0
        return await search_store.count(self._db, dataclasses.replace(q, statuses=wanted),
                                        now=self._clock.time())

    async def cleanup_count(self, older_than_days: float) -> int:
        """How many jobs `cleanup(older_than_days)` would delete now (asked before it)."""
        if older_than_days < 0:
            raise UsageError("--older-than must be a number of days >= 0")
        cutoff = self._clock.time() - older_than_days * 86_400
        return await search_store.count_finished_before(self._db, cutoff)

    async def cancel(
        self,
        *,
        job_id: int | None = None,
        ids: list[int] | None = None,
        search: str | None = None,
    ) -> list[int]:
        """Pending or failed jobs become cancelled: one (`job_id`, refused if it is in another
        state), exactly `ids` (those still pending or failed), or every job matching
        `search`. Returns the ids cancelled."""
        now = self._clock.time()
        if job_id is not None:
            detail = await store.get_job(self._db, job_id)
            if detail.job.status not in CANCELLABLE:
                raise UsageError(
                    f"email job {job_id} is {detail.job.status}; only pending or failed jobs"
                    " can be cancelled"
                )
            ids = [job_id]
        elif ids is None:
            if search is None:
                raise UsageError("cancel needs a job id, ids or a search")
            ids = await self.matching_ids(search, eligible=CANCELLABLE)
        chosen = await search_store.cancel(self._db, now=now, ids=ids, search=search)
        self._events.publish(
            ev.JobsCancelled(at=now, count=len(chosen), job_ids=tuple(chosen[:100]))
        )
        return chosen
