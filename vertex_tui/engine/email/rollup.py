"""The `email.rollup` job and the history query (`email history`, the dashboard).

Every minute (an `Interval` job on the engine's scheduler, singleton lease `email.rollup`)
the rollup computes the complete buckets after the last one it wrote — minutes, then
hours — from the jobs and their attempts, upserts them, samples the queue depth into the
minute just closed, and deletes rows past retention (`history.RETENTION`). It is safe with
several engines: the lease keeps one at a time on it, and a run is an idempotent upsert of
what the jobs say, so a second one (or a run after a crash) writes the same rows. Only runs
that rolled up some activity are recorded in `service_runs` (record "changes").

`history(range)` reads the rolled-up rows of the range and computes the rest — the current
bucket and any the rollup has not reached yet (an engine stopped, or no engine at all) —
from the jobs, so what was just delivered shows at once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vertex_tui.engine.email import history as policy
from vertex_tui.engine.email.history import HOUR, MINUTE, Bucket
from vertex_tui.engine.runs import LeasedRun
from vertex_tui.engine.service import Interval, Job
from vertex_tui.engine.store import history as store
from vertex_tui.engine.store.db import Database

ROLLUP = "email.rollup"
INTERVAL = 60.0


def rollup_job(db: Database) -> Job:
    """The job the email service declares (see `housekeeping.EmailJobs.jobs`)."""

    async def run(run: LeasedRun) -> dict[str, Any]:
        counts = await roll_up(db, run.started_at)
        # Recorded when it rolled up some mail; pruning alone (every minute once the table
        # is full) is not worth a service_runs row.
        run.counts = {k: v for k, v in counts.items() if not k.startswith("pruned_")}
        return {"status": "ok", **counts}

    return Job(name=ROLLUP, trigger=Interval(seconds=INTERVAL, first_after=10.0), run=run,
               lease=ROLLUP, lease_ttl=600.0, record="changes")


async def roll_up(db: Database, now: float) -> dict[str, int]:
    """One rollup at `now`: returns how many active minute and hour buckets it wrote and
    how many rows it pruned."""
    counts: dict[str, int] = {}
    for grain, key in ((MINUTE, "minutes"), (HOUR, "hours")):  # hours take minutes' depth
        window = policy.roll_window(now, await store.last_rolled(db, grain), grain)
        written: list[Bucket] = []
        if window is not None:
            start, end = window
            written = await store.compute(db, grain, start, end)
            last = end - grain
            sampled = await store.depth(db) if grain == MINUTE else None
            found = next((b for b in written if b.at == last), None)
            # The newest complete bucket is always written (the watermark of `history`);
            # the minute gets the depth sampled now, within a minute of its end.
            closing = found or Bucket(at=last)
            if sampled is not None:
                closing = replace(closing, depth=sampled)
            written = [b for b in written if b.at != last] + [closing]
            await store.upsert(db, grain, written)
        counts[key] = sum(1 for b in written if b.active)
        counts[f"pruned_{key}"] = await store.prune(db, grain, policy.prune_before(now, grain))
    return counts


async def history(db: Database, range_name: str, now: float) -> list[Bucket]:
    """The buckets of `range_name` ("1h", "24h", "7d") up to `now`, oldest first, the
    current one included (ValueError for an unknown range)."""
    grain, count = policy.parse_range(range_name)
    starts = policy.bucket_starts(now, grain, count)
    current = starts[-1]
    last = await store.last_rolled(db, grain)
    live_from = policy.live_from(starts[0], None if last is None else last + grain)
    rolled = await store.read(db, grain, starts[0], min(live_from, current))
    live = await store.compute(db, grain, min(live_from, current), current + grain)
    depth_now = await store.depth(db)
    live = [b if b.at != current else replace(b, depth=depth_now) for b in live]
    if not any(b.at == current for b in live):
        live.append(Bucket(at=current, depth=depth_now))
    return policy.fill(starts, [*rolled, *live])


def to_json(bucket: Bucket) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {"at": datetime.fromtimestamp(bucket.at, UTC).isoformat(),
            "enqueued": bucket.enqueued, "sent": bucket.sent, "failed": bucket.failed,
            "retried": bucket.retried, "p50_ms": bucket.p50_ms, "p95_ms": bucket.p95_ms,
            "depth": bucket.depth}
