"""The event log's writer: engine events into `engine_log`, in batches, off the hot path.

`EventLogWriter` subscribes to the engine's bus. Its callback only appends to a bounded
buffer (or adds one to a per-minute delivery counter: `eventlog.DeliveryMinutes`), so a
publisher — a worker that just sent a mail — never waits for the database. A task flushes
the buffer every `flush_every` seconds (real time) in one transaction, with the summaries
of the minutes that have ended, and then publishes `LogWritten` (a hosting console's Log
screen reads at once); `close()` flushes the rest, the current minute included.
A flush that fails is logged and its rows dropped: the log never stops the engine.

`prune_job()` is the `engine.log_prune` job (hourly, one engine at a time): rows older than
`RETENTION_DAYS` go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import Clock
from vertex_tui.engine.eventlog import DeliveryMinutes, Entry, entry_for
from vertex_tui.engine.runs import LeasedRun
from vertex_tui.engine.service import Interval, Job
from vertex_tui.engine.store import log as log_store
from vertex_tui.engine.store.db import Database

log = logging.getLogger(__name__)

PRUNE_JOB = "engine.log_prune"
RETENTION_DAYS = 7.0
PRUNE_EVERY = 3600.0
FLUSH_EVERY = 1.0
BUFFER = 10_000  # entries kept while the database is slow; the oldest go first


class EventLogWriter:
    """Buffers this engine's events as log entries and writes them every second."""

    def __init__(self, db: Database, clock: Clock, owner: str, events: ev.EventBus, *,
                 flush_every: float = FLUSH_EVERY) -> None:
        self._db = db
        self._events = events
        self._clock = clock
        self._owner = owner
        self._flush_every = flush_every
        self._buffer: deque[Entry] = deque(maxlen=BUFFER)
        self._minutes = DeliveryMinutes()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.count_enqueues = True  # False in a process that delivers nothing (a CLI command)
        self.written = 0

    def observe(self, event: ev.Event) -> None:
        """The bus callback: no I/O, constant time."""
        if isinstance(event, ev.EmailEnqueued) and not self.count_enqueues:
            return
        if self._minutes.add(event):
            return
        entry = entry_for(event)
        if entry is not None:
            self._buffer.append(entry)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="event-log")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._flush_every)
            await self.flush(final=False)

    async def flush(self, *, final: bool = True) -> int:
        """Write what is buffered (and the delivery summaries of ended minutes; of every
        minute if `final`); returns the rows written."""
        async with self._lock:
            entries = [*self._buffer, *self._minutes.take(None if final else self._clock.time())]
            self._buffer.clear()
            if not entries:
                return 0
            entries.sort(key=lambda e: e.at)
            rows = [(e.at, e.service, e.level, e.event, e.message, self._owner) for e in entries]
            try:
                await log_store.append(self._db, rows)
            except Exception:
                log.exception("writing %d event log rows failed; they are dropped", len(rows))
                return 0
            self.written += len(rows)
        if self._task is not None:  # not once closing: nobody is left to read it
            self._events.publish(ev.LogWritten(at=self._clock.time(), count=len(rows)))
        return len(rows)

    async def close(self) -> None:
        """Stop the flush task and write everything left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush(final=True)

    def prune_job(self) -> Job:
        return Job(name=PRUNE_JOB, trigger=Interval(seconds=PRUNE_EVERY, first_after=60.0),
                   run=self._prune_run, lease=PRUNE_JOB, lease_ttl=600.0, record="changes")

    async def _prune_run(self, run: LeasedRun) -> dict[str, Any]:
        before = run.started_at - RETENTION_DAYS * 86400
        deleted = await log_store.prune(self._db, before=before)
        run.counts = {"deleted": deleted}
        return {"status": "ok", "deleted": deleted}
