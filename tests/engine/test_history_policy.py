"""Table tests of the email history policy: buckets, ranges, percentiles, retention."""

from __future__ import annotations

import itertools

import pytest

from vertex_tui.engine.email import history as h
from vertex_tui.engine.email.history import HOUR, MINUTE, Bucket

T0 = 1_800_000_000.0  # on an hour boundary


@pytest.mark.parametrize(
    ("t", "grain", "expected"),
    [
        (T0, MINUTE, T0),
        (T0 + 59.999, MINUTE, T0),
        (T0 + 60, MINUTE, T0 + 60),
        (T0 - 0.001, MINUTE, T0 - 60),
        (T0 + 3599, HOUR, T0),
        (T0 + 3600, HOUR, T0 + 3600),
    ],
)
def test_floor(t: float, grain: int, expected: float) -> None:
    assert h.floor(t, grain) == expected


@pytest.mark.parametrize(
    ("name", "grain", "count"),
    [("1h", MINUTE, 60), ("24h", HOUR, 24), ("7d", HOUR, 168)],
)
def test_ranges(name: str, grain: int, count: int) -> None:
    assert h.parse_range(name) == (grain, count)
    starts = h.bucket_starts(T0 + 30.5 + grain * 5, grain, count)
    assert len(starts) == count
    assert starts[-1] == T0 + grain * 5  # the current bucket is the last
    assert all(b - a == grain for a, b in itertools.pairwise(starts))


def test_unknown_range_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown range '2h'; expected one of 1h, 24h, 7d"):
        h.parse_range("2h")


@pytest.mark.parametrize(
    ("n", "pct", "rank"),
    [
        (1, 50, 1), (1, 95, 1), (2, 50, 1), (2, 95, 2), (3, 50, 2), (4, 50, 2),
        (10, 95, 10), (20, 95, 19), (21, 95, 20), (100, 50, 50), (100, 95, 95),
        (101, 95, 96), (1000, 50, 500),
    ],
)
def test_nearest_rank(n: int, pct: int, rank: int) -> None:
    assert h.nearest_rank(n, pct) == rank


def test_nearest_rank_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError):
        h.nearest_rank(0, 50)


@pytest.mark.parametrize(
    ("values", "p50", "p95"),
    [
        ([], None, None),
        ([7], 7, 7),
        ([30, 10, 20], 20, 30),
        ([5, 1, 4, 2, 3], 3, 5),
        (list(range(1, 21)), 10, 19),
        (list(range(100, 0, -1)), 50, 95),
    ],
)
def test_percentile(values: list[int], p50: int | None, p95: int | None) -> None:
    assert h.percentile(values, 50) == p50
    assert h.percentile(values, 95) == p95


@pytest.mark.parametrize(
    ("now", "last", "grain", "window"),
    [
        # first rollup: everything complete within retention
        (T0 + 90, None, MINUTE, (T0 + 60 - 48 * 3600, T0 + 60)),
        (T0 + 90, None, HOUR, (T0 - 30 * 86400, T0)),
        # a bucket that ended less than SETTLE seconds ago waits for the next run
        (T0 + 63, None, MINUTE, (T0 - 48 * 3600, T0)),
        (T0 + 3602, None, HOUR, (T0 - 30 * 86400, T0)),
        # from the bucket after the last one rolled, up to the current one (excluded)
        (T0 + 185, T0 + 60, MINUTE, (T0 + 120, T0 + 180)),
        (T0 + 7300, T0, HOUR, (T0 + 3600, T0 + 7200)),
        # the last complete bucket was already rolled: nothing (never rolled twice)
        (T0 + 130, T0 + 60, MINUTE, None),
        (T0 + 9 * 3600 + 10, T0 + 8 * 3600, HOUR, None),
        # a long outage: never further back than retention
        (T0 + 72 * 3600 + 10, T0, MINUTE, (T0 + 24 * 3600, T0 + 72 * 3600)),
    ],
)
def test_roll_window(now: float, last: float | None, grain: int,
                     window: tuple[float, float] | None) -> None:
    assert h.roll_window(now, last, grain) == window


@pytest.mark.parametrize(
    ("now", "grain", "before"),
    [
        (T0 + 30, MINUTE, T0 - 48 * 3600),
        (T0 + 3599, HOUR, T0 - 30 * 86400),
    ],
)
def test_prune_before(now: float, grain: int, before: float) -> None:
    assert h.prune_before(now, grain) == before


def test_retention_bounds_the_table() -> None:
    assert h.RETENTION[MINUTE] / MINUTE + h.RETENTION[HOUR] / HOUR == 2880 + 720


@pytest.mark.parametrize(
    ("start", "watermark", "expected"),
    [(T0, None, T0), (T0, T0 - 60, T0), (T0, T0 + 600, T0 + 600)],
)
def test_live_from(start: float, watermark: float | None, expected: float) -> None:
    assert h.live_from(start, watermark) == expected


def test_fill_keeps_found_buckets_and_fills_gaps_with_empty_unsampled_ones() -> None:
    starts = [T0, T0 + 60, T0 + 120]
    found = Bucket(at=T0 + 60, sent=3, p50_ms=5, p95_ms=9, depth=2)
    stray = Bucket(at=T0 + 600, sent=1)  # outside the range: dropped
    got = h.fill(starts, [found, stray])
    assert got == [Bucket(at=T0), found, Bucket(at=T0 + 120)]
    assert got[0].depth is None and not got[0].active and got[1].active
