"""The email queue's workers: each claims a small batch under a lease, sends it over one
reused SMTP connection and hands the outcomes to a single completer task that writes them in
group commits, fenced by (owner, attempt): a worker that lost its lease cannot overwrite the
job's newer state. A worker that cannot extend its lease in time (database locked, process
stalled) stops sending the rest of its batch, which another claim then sends once. A relay
outage pauses every worker (`relay.py`) instead of failing jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.email.models import ClaimedJob
from vertex_tui.engine.email.retry import Outcome, decide
from vertex_tui.engine.email.state import QueueState
from vertex_tui.engine.email.transport import SendResult, Transport, classify
from vertex_tui.engine.store import email as store

# Every part of the queue logs as the queue: operators and tests filter on this one name.
log = logging.getLogger("vertex_tui.engine.email.queue")

# A claim takes about what the worker sent in CLAIM_SECONDS of its previous batch, from
# CLAIM_BATCH (the first claim, and any slow transport: a relay at ~3 ms a message stays there)
# up to CLAIM_BATCH_MAX. Every claim and every group commit costs a fixed ~0.2-0.4 ms (a
# transaction, a hop to the writer thread, the worker's batch bookkeeping) whatever its size;
# at 16 jobs a batch that was ~1/4 of a job's cost when sends are fast (measured on the null
# transport: 40-47 us of CPU a job at 16, 31-34 at 32-64). What a crash repeats (claimed, sent,
# outcome not committed) stays about CLAIM_SECONDS of each worker's sending, at most
# CLAIM_BATCH_MAX jobs a worker.
CLAIM_BATCH = 16
CLAIM_BATCH_MAX = 64
CLAIM_SECONDS = 0.05
COMPLETE_BATCH = 500
# How long (real time) an outcome may wait for others to share its commit. Slow sends report
# one at a time, and each commit costs this process ~0.2-0.4 ms of CPU (one hop to the writer
# thread, ~8 pages written to the WAL) whatever its size. A window in real time shrinks the
# batches exactly when the machine is busy: at 0.02 s a loaded 2-core host (50-70 msg/s)
# committed 2.3 outcomes at a time; 0.1 s keeps ~5 (and 16 per worker batch when quiet,
# where the flush below decides). A worker that starts waiting for its batch's outcomes ends
# the wait at once, so no send waits on it; a crash inside it repeats those sends, as any
# crash before a commit does.
COMMIT_WINDOW = 0.1


def claim_size(sent: int, seconds: float) -> int:
    """The next claim's size after a batch whose `sent` sends took `seconds` (real time):
    what the worker sends in CLAIM_SECONDS at that pace, CLAIM_BATCH to CLAIM_BATCH_MAX. A
    batch cut short (`sent` 0: paused, stopped, lease lost) starts again from CLAIM_BATCH."""
    if sent <= 0:
        return CLAIM_BATCH
    if seconds <= 0:
        return CLAIM_BATCH_MAX
    return max(CLAIM_BATCH, min(CLAIM_BATCH_MAX, int(sent * CLAIM_SECONDS / seconds)))


class BatchOutcomes:
    """The outcomes one worker's batch handed to the completer: `written` resolves once
    every one of them has been through a group commit (recorded or refused), after the
    worker `close()`d the batch. One future a batch, not one an outcome: the worker only
    waits for them all."""

    __slots__ = ("closed", "queued", "written")

    def __init__(self) -> None:
        self.queued = 0  # handed to the completer, not yet through a commit
        self.closed = False
        self.written: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def close(self) -> None:
        """No more outcomes will come: resolve `written` as soon as the queued ones are."""
        self.closed = True
        self._resolve()

    def commit_done(self) -> None:
        """One of them went through a commit."""
        self.queued -= 1
        self._resolve()

    def _resolve(self) -> None:
        if self.closed and not self.queued and not self.written.done():
            self.written.set_result(None)


class EmailWorkers(QueueState):
    """Mixed into `EmailQueue`: the worker tasks and the completer it starts."""

    async def _worker(self, index: int) -> None:
        owner = f"{self._owner}/w{index}"
        transport = self._transport_factory()
        poll = self._settings.email_poll_interval
        size = CLAIM_BATCH
        try:
            while not self._stop.is_set():
                if self._paused:
                    await self._clock.wait(self._wake, poll)
                    self._wake.clear()
                    continue
                if self.relay.is_open:
                    await self.relay.wait_closed(self._stop)
                    continue
                try:
                    batch = await self._claim(owner, size)
                except Exception as exc:
                    log.exception("claiming email jobs failed", extra={"service": self.name})
                    self._note_error(f"claim failed: {exc}")
                    await self._clock.wait(self._stop, poll)
                    continue
                if batch:
                    size = claim_size(*await self._work(batch, transport))
                else:
                    await self._idle(poll)
        finally:
            await transport.close()

    async def _claim(self, owner: str, size: int = CLAIM_BATCH) -> list[ClaimedJob]:
        self._wake.clear()
        self._claiming += 1
        try:
            now = self._clock.time()
            batch = await store.claim(
                self._db,
                owner=owner,
                now=now,
                lease_until=now + self._settings.email_lease_seconds,
                limit=size,
            )
            self._inflight += len(batch)
            return batch
        finally:
            self._claiming -= 1

    async def _idle(self, poll: float) -> None:
        timeout = poll
        try:
            upcoming = await store.next_attempt_at(self._db, self._clock.time())
        except Exception:
            upcoming = None
        if upcoming is not None:
            timeout = min(poll, max(0.0, upcoming - self._clock.time()))
        await self._clock.wait(self._wake, timeout)

    async def _work(self, batch: list[ClaimedJob], transport: Transport) -> tuple[int, float]:
        """Send `batch`; returns (sends made, their real time) for the next claim's size, or
        (0, 0.0) when the batch was cut short."""
        lease = self._settings.email_lease_seconds
        lease_until = self._clock.time() + lease
        outcomes = BatchOutcomes()
        index = 0
        ids = [job.id for job in batch]
        self._held.update(ids)
        started = time.perf_counter()
        sent = 0
        try:
            for index, job in enumerate(batch):
                if self._stop.is_set() or self._paused or self.relay.is_open:
                    await store.release(self._db, batch[index:], self._clock.time())
                    self._inflight -= len(batch) - index
                    return 0, 0.0
                if self._clock.time() > lease_until - lease / 2:
                    renewed = await self._extend(batch[index:], lease)
                    if renewed is None:
                        self._inflight -= len(batch) - index
                        return 0, 0.0
                    lease_until = renewed
                self._sending += 1
                try:
                    result = await transport.send(job)
                except Exception as exc:
                    result = classify(exc)
                finally:
                    self._sending -= 1
                if result.relay:
                    if self.relay.trip(result.error or "relay failure"):
                        self._note_error(f"SMTP relay unreachable: {result.error}")
                    if not self.relay.charge(job.id):
                        # Already charged for this outage (it resumed after a probe
                        # connected): handed back uncharged.
                        await store.release(self._db, [job], self._clock.time())
                        self._inflight -= 1
                        continue
                self._submit(job, result, outcomes)
                sent += 1
            return sent, time.perf_counter() - started
        except asyncio.CancelledError:
            # Stopped past the grace period: the job being sent may or may not have gone out.
            # Expire its lease so any engine retries it soon; hand back the untried rest.
            now = self._clock.time()
            await store.extend_leases(self._db, batch[index : index + 1], now, now)
            await store.release(self._db, batch[index + 1 :], now)
            raise
        finally:
            try:
                outcomes.close()
                if outcomes.queued:
                    self._flush.set()  # this worker waits for its outcomes: commit them now
                    await outcomes.written
            finally:
                self._held.difference_update(ids)

    async def _extend(self, rest: list[ClaimedJob], lease: float) -> float | None:
        """Extend the leases of the untried `rest` of a batch; the new expiry, or None when
        they can no longer be trusted to this worker: the write failed, missed some job, or
        landed so late (database locked, process stalled) that the housekeeper may already
        have handed them to another claim. Then none of them is sent here; the ones still
        held are released uncharged, the others are the reaper's."""
        asked = self._clock.time()
        until = asked + lease
        try:
            held = await store.extend_leases(self._db, rest, until, asked)
        except Exception as exc:
            log.exception("extending email leases failed", extra={"service": self.name})
            self._note_error(f"extending leases failed: {exc}")
            return None
        late = self._clock.time() - asked
        if held == len(rest) and late <= lease / 2:
            return until
        log.warning(
            "email leases of %d claimed jobs renewed %.0f s late (%d of %d held): not sending"
            " them from this worker",
            len(rest),
            late,
            held,
            len(rest),
            extra={"service": self.name},
        )
        try:
            await store.release(self._db, rest, self._clock.time())
        except Exception:
            log.exception("releasing email jobs failed", extra={"service": self.name})
        return None

    def _submit(self, job: ClaimedJob, result: SendResult, batch: BatchOutcomes) -> None:
        now = self._clock.time()
        s = self._settings
        if not result.relay:
            self.relay.reached()
        decision = decide(
            result.outcome,
            attempt=job.attempt,
            max_attempts=job.max_attempts,
            now=now,
            delays=s.email_retry_delays,
            rand=self._rand,
            relay=result.relay,
        )
        completion = store.Completion(
            job_id=job.id,
            owner=job.owner,
            attempt=job.attempt,
            at=now,
            outcome=str(result.outcome),
            status=decision.status,
            retry_at=decision.retry_at,
            code=result.code,
            error=result.error,
            message_id=job.message_id,
            encrypted=result.encrypted,
            created_at=job.created_at,
            relay=result.relay,
        )
        batch.queued += 1
        self._completions.append((completion, batch))
        self._queued.set()

    async def _completer(self) -> None:
        """Write outcomes in group commits, then publish what happened."""
        queue = self._completions
        while True:
            while not queue:
                self._queued.clear()
                await self._queued.wait()
            if len(queue) == 1 and not self._flush.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(COMMIT_WINDOW):  # see SystemClock.wait
                        await self._flush.wait()
            # No await from here to the drain: every worker that asked for a flush has all
            # its outcomes queued already, so they go into this commit.
            self._flush.clear()
            items = [queue.popleft() for _ in range(min(len(queue), COMPLETE_BATCH))]
            completions = [c for c, _ in items]
            try:
                refused_items = await store.complete(self._db, completions)
                refused = {(c.job_id, c.attempt) for c in refused_items}
            except Exception as exc:
                # The jobs keep their leases and are retried when those expire.
                log.exception("recording %d email outcomes failed", len(items))
                self._note_error(f"recording outcomes failed: {exc}")
                refused = {(c.job_id, c.attempt) for c in completions}
            self._inflight -= len(items)
            for completion, batch in items:
                batch.commit_done()
                ok = (completion.job_id, completion.attempt) not in refused
                self._publish_outcome(completion, ok)
            self._progress.set()

    def _publish_outcome(self, c: store.Completion, ok: bool) -> None:
        if not ok:
            log.warning(
                "email job %d: lease lost, outcome of attempt %d not recorded",
                c.job_id,
                c.attempt,
                extra={"job_id": c.job_id, "attempt": c.attempt},
            )
            self._events.publish(ev.CompletionRefused(at=c.at, job_id=c.job_id, attempt=c.attempt))
            return
        self._outcomes[c.status] += 1
        if c.outcome == Outcome.SENT:
            log.debug("email job %d sent", c.job_id, extra={"job_id": c.job_id})
            self._events.publish(
                ev.EmailSent(at=c.at, job_id=c.job_id, attempt=c.attempt, message_id=c.message_id,
                             created_at=c.created_at)
            )
            return
        # A relay outage is logged once by the circuit, not once per job it met.
        level = (
            logging.WARNING
            if c.status == "failed"
            else logging.DEBUG
            if c.relay
            else logging.INFO
        )
        log.log(
            level,
            "email job %d attempt %d: %s%s",
            c.job_id,
            c.attempt,
            c.error,
            "" if c.retry_at is None else f" (retry at {isoformat(c.retry_at)})",
            extra={"job_id": c.job_id, "attempt": c.attempt, "service": self.name},
        )
        self._events.publish(
            ev.EmailFailed(
                at=c.at,
                job_id=c.job_id,
                attempt=c.attempt,
                error=c.error or "",
                retry_at=c.retry_at,
            )
        )
