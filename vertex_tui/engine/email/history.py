"""The email history policy: buckets, ranges, percentiles and retention, as pure functions.

The rollup (`email.rollup`, see `rollup.py`) keeps one row per minute for 48 hours and one
per hour for 30 days in `email_history`, so the table never holds more than 2,880 + 720
rows. A range is shown in one grain:

    1h   60 one-minute buckets
    24h  24 one-hour buckets
    7d   168 one-hour buckets

Each bucket is named by its start (`at`) and counts what happened in [at, at + grain):
jobs enqueued (created), sent and failed (finished), attempts that were retries (attempt > 1
in a round, or the first attempt of a round an operator retried), and the delivery latency
(enqueue -> sent) of the jobs sent in it, as exact percentiles by nearest rank: the p-th
percentile of n sorted values is the value at rank ceil(n * p / 100) (1-based). Exact per
bucket because each bucket, minute or hour, is computed from the jobs themselves, never
merged from smaller buckets (percentiles do not add up). `depth` is the queue depth
(pending + sending) sampled when the minute was closed (an hour: its last sampled minute).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MINUTE = 60
HOUR = 3600

# How long rows of each grain are kept.
RETENTION: dict[int, float] = {MINUTE: 48 * 3600.0, HOUR: 30 * 86400.0}

# A bucket is rolled up this many seconds after its end, not before.
SETTLE = 5.0

# range name -> (grain in seconds, number of buckets, the current one included)
RANGES: dict[str, tuple[int, int]] = {"1h": (MINUTE, 60), "24h": (HOUR, 24), "7d": (HOUR, 168)}


@dataclass(frozen=True, kw_only=True)
class Bucket:
    """One bucket of the history (a row of `email_history`, or computed from the jobs)."""

    at: float  # start, epoch seconds UTC
    enqueued: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    p50_ms: int | None = None
    p95_ms: int | None = None
    depth: int | None = None

    @property
    def active(self) -> bool:
        return bool(self.enqueued or self.sent or self.failed or self.retried)


def floor(t: float, grain: int) -> float:
    """The start of the bucket of `grain` seconds that holds time `t`."""
    return float(math.floor(t / grain) * grain)


def parse_range(name: str) -> tuple[int, int]:
    """(grain, buckets) of a range name; ValueError naming the known ones."""
    try:
        return RANGES[name]
    except KeyError:
        raise ValueError(f"unknown range {name!r}; expected one of "
                         + ", ".join(RANGES)) from None


def bucket_starts(now: float, grain: int, count: int) -> list[float]:
    """The starts of the `count` buckets up to and including the one holding `now`,
    oldest first."""
    current = floor(now, grain)
    return [current - grain * i for i in range(count - 1, -1, -1)]


def nearest_rank(n: int, pct: int) -> int:
    """The 1-based rank of the `pct`-th percentile of `n` sorted values (n >= 1), i.e.
    ceil(n * pct / 100) in integers — the same expression the SQL uses."""
    if n < 1:
        raise ValueError("no values")
    return max(1, (n * pct + 99) // 100)


def percentile(values: Sequence[int], pct: int) -> int | None:
    """The nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    return sorted(values)[nearest_rank(len(values), pct) - 1]


def roll_window(now: float, last_rolled: float | None, grain: int) -> tuple[float, float] | None:
    """Which complete buckets a rollup at `now` computes: [start, end).

    Those after the last bucket rolled before (a bucket is written once: re-rolling it
    later would erase what `email cleanup` has since deleted from the jobs), or from the
    retention limit, whichever is later, up to the last bucket that ended at least
    `SETTLE` seconds ago (an attempt another engine records a moment late still lands in
    its bucket before that is written). None: nothing to roll.
    """
    end = floor(now - SETTLE, grain)
    start = end - RETENTION[grain]
    if last_rolled is not None:
        start = max(start, last_rolled + grain)
    return (start, end) if start < end else None


def prune_before(now: float, grain: int) -> float:
    """Rows of `grain` that start before this are deleted."""
    return floor(now, grain) - RETENTION[grain]


def live_from(range_start: float, watermark: float | None) -> float:
    """Where a history query stops reading rolled-up rows and computes from the jobs: the
    end of the last bucket rolled up (`watermark`), never before the range's start."""
    return range_start if watermark is None else max(range_start, watermark)


def fill(starts: Sequence[float], buckets: Sequence[Bucket]) -> list[Bucket]:
    """One bucket per start, oldest first: those found, and empty ones (nothing happened,
    depth not sampled) in the gaps."""
    found = {b.at: b for b in buckets}
    return [found.get(at) or Bucket(at=at) for at in starts]
