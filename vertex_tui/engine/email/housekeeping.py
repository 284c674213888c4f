"""The email queue's side of the service interface: its job, actions and settings.

Its one periodic job is `email.reap`: jobs whose worker died (claim lease expired) become
due again. It runs every `EMAIL_POLL_INTERVAL` from the queue's housekeeper loop (driver
"service": that loop also follows pause/resume, and tests drive it with the fake clock), in
every engine with workers (no singleton lease: the reclaim is one idempotent statement), and
goes through LeasedRun like every job; only runs that reclaimed something or failed are
recorded, or a job every second would write 86,400 rows a day.

`email.rollup` (every minute, on the engine's scheduler, singleton lease) keeps the history
of `email history` and the dashboard's sparklines: see `rollup.py`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vertex_tui.engine.email import rollup
from vertex_tui.engine.email.history import Bucket
from vertex_tui.engine.email.state import QueueState
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.runs import Host, LeasedRun, run_job
from vertex_tui.engine.service import Interval, Job, ServiceState
from vertex_tui.engine.store import email as store
from vertex_tui.engine.store import status_counts

# Every part of the queue logs as the queue: operators and tests filter on this one name.
log = logging.getLogger("vertex_tui.engine.email.queue")

REAP = "email.reap"


class EmailJobs(QueueState):
    """Mixed into `EmailQueue`: its job, actions and settings, and the housekeeper loop."""

    # Not started here but another engine runs: its workers deliver.
    state_elsewhere = ServiceState.RUNNING

    if TYPE_CHECKING:
        async def drain(self, *, timeout: float | None = None) -> dict[str, int]: ...

    def jobs(self) -> list[Job]:
        return [Job(name=REAP, trigger=Interval(seconds=self._settings.email_poll_interval),
                    run=self._reap_run, record="changes", driver="service", invoke=self.reap),
                rollup.rollup_job(self._db)]

    async def history(self, range_name: str = "1h") -> list[Bucket]:
        """The history buckets of a range ("1h", "24h", "7d"), the current one included."""
        return await rollup.history(self._db, range_name, self._clock.time())

    def actions(self) -> dict[str, Any]:
        async def drain(timeout: float = 300) -> dict[str, Any]:
            return dict(await self.drain(timeout=float(timeout)))

        return {"email.drain": drain}

    def settings(self) -> dict[str, Any]:
        s = self._settings
        return {"workers": s.email_workers, "retry_max_attempts": s.email_retry_max_attempts,
                "lease_seconds": s.email_lease_seconds, "poll_interval": s.email_poll_interval}

    async def _reap_run(self, run: LeasedRun) -> dict[str, Any]:
        reaped = await store.reap_expired(self._db, run.started_at, sorted(self._held))
        await status_counts.compact(self._db)  # PostgreSQL's count deltas; nothing on SQLite
        run.counts = {"reaped": reaped}
        if reaped:
            self._wake.set()
        return {"status": "ok", "reaped": reaped}

    async def reap(self, trigger: str = "schedule") -> dict[str, Any]:
        """One `email.reap` run (the housekeeper's every poll, or an operator's run now)."""
        host = Host(db=self._db, clock=self._clock, events=self._events,
                    leases=Leases(self._db, self._owner), owner=self._owner)
        return await run_job(host, self.jobs()[0], trigger=trigger)

    async def _housekeeper(self) -> None:
        """Reclaim jobs of dead workers and follow pause/resume made by other processes."""
        poll = self._settings.email_poll_interval
        while not self._stop.is_set():
            try:
                now = self._clock.time()
                reaped = await self.reap()  # email.reap, through LeasedRun (above)
                if reaped.get("status") == "error":
                    self._note_error(f"housekeeping failed: {reaped.get('error')}")
                self._set_paused(await store.is_paused(self._db), now)
            except Exception as exc:
                log.exception("email housekeeping failed")
                self._note_error(f"housekeeping failed: {exc}")
            await self._clock.wait(self._stop, poll)
