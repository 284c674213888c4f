"""Table tests of the pure retention policy (`retention.to_delete`).

Like restic's `forget`, a backup is kept if ANY rule keeps it (last N, newest of each of the
last N days / ISO weeks / months in the configured time zone). On top: the newest verified
backup is never deleted, and nothing is deleted while the newest backup of the kind failed.
Only good (status ok + verified) backups are ever candidates for deletion.

No database here, so nothing to run per backend (rotation over real rows on PostgreSQL:
test_pg_backup.py and the rotation preview in test_backup_overview.py).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import pytest

from vertex_tui.engine.backup.retention import BackupInfo, RetentionPolicy, to_delete


def ts(iso: str) -> float:
    """An ISO time (UTC unless it carries an offset) as epoch seconds."""
    dt = datetime.fromisoformat(iso)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def b(id_: int, when: str, status: str = "ok", verified: bool = True) -> BackupInfo:
    return BackupInfo(id=id_, started_at=ts(when), status=status, verified=verified)


def kept(backups: list[BackupInfo], policy: RetentionPolicy) -> set[int]:
    """The good backups that survive (what a reader of a retention table checks)."""
    doomed = to_delete(backups, policy)
    return {x.id for x in backups if x.good} - doomed


def daily(first: date, last: date, hour: int = 2) -> tuple[list[BackupInfo], dict[date, int]]:
    """One good backup a day at `hour`:00 UTC from `first` to `last`; ids grow with time."""
    backups, ids = [], {}
    day, n = first, 1
    while day <= last:
        backups.append(b(n, f"{day.isoformat()}T{hour:02d}:00:00"))
        ids[day] = n
        day += timedelta(days=1)
        n += 1
    return backups, ids


# ---- keep_last ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "keep_last", "expected_deleted"),
    [
        (10, 3, set(range(1, 8))),
        (10, 1, set(range(1, 10))),
        (10, 10, set()),
        (3, 7, set()),
        (1, 1, set()),
    ],
)
def test_keep_last_only(count: int, keep_last: int, expected_deleted: set[int]) -> None:
    backups = [b(i, f"2025-01-{i:02d}T02:00:00") for i in range(1, count + 1)]
    assert to_delete(backups, RetentionPolicy(keep_last=keep_last)) == expected_deleted


def test_input_order_does_not_matter() -> None:
    backups = [b(i, f"2025-03-{i:02d}T02:00:00") for i in range(1, 21)]
    policy = RetentionPolicy(keep_last=4, keep_weekly=2)
    expected = to_delete(backups, policy)
    shuffled = backups[:]
    random.Random(3).shuffle(shuffled)
    assert to_delete(shuffled, policy) == expected
    assert to_delete(list(reversed(backups)), policy) == expected


def test_equal_start_times_break_ties_by_id() -> None:
    backups = [b(i, "2025-05-01T02:00:00") for i in range(1, 5)]
    assert to_delete(backups, RetentionPolicy(keep_last=2)) == {1, 2}


def test_empty_history_deletes_nothing() -> None:
    assert to_delete([], RetentionPolicy(keep_last=1)) == set()


# ---- daily / weekly / monthly over years --------------------------------------------------------


def test_two_years_of_dailies_with_every_rule_keeps_exact_set() -> None:
    backups, ids = daily(date(2024, 1, 1), date(2025, 12, 31))
    policy = RetentionPolicy(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=12)
    keep_days = (
        # keep_last 3 ⊂ keep_daily 7: Dec 25..31
        [date(2025, 12, d) for d in range(25, 32)]
        # ISO weeks 2026-W01 (Dec 29..31 -> 31), 2025-W52 (28), W51 (21), W50 (14)
        + [date(2025, 12, 21), date(2025, 12, 14)]
        # newest of each of the last 12 months (Dec 2025 already kept by the 31st)
        + [
            date(2025, 11, 30), date(2025, 10, 31), date(2025, 9, 30), date(2025, 8, 31),
            date(2025, 7, 31), date(2025, 6, 30), date(2025, 5, 31), date(2025, 4, 30),
            date(2025, 3, 31), date(2025, 2, 28), date(2025, 1, 31),
        ]
    )  # fmt: skip
    assert len(keep_days) == 20
    assert kept(backups, policy) == {ids[d] for d in keep_days}
    assert len(to_delete(backups, policy)) == len(backups) - 20


@pytest.mark.parametrize(
    ("policy", "keep_days"),
    [
        # keep_last=1 and 14 months reach back across the year boundary, into a leap year.
        (
            RetentionPolicy(keep_last=1, keep_monthly=14),
            [date(2024, 11, 30), date(2024, 12, 31)]
            + [date(2025, m, 1) - timedelta(days=1) for m in range(2, 13)]
            + [date(2025, 12, 31)],
        ),
        (
            RetentionPolicy(keep_last=1, keep_monthly=24),
            [date(y, m, 1) - timedelta(days=1) for y in (2024, 2025) for m in range(2, 13)]
            + [date(2024, 12, 31), date(2025, 12, 31)],
        ),
        # More months asked for than exist: every month end is kept, nothing else.
        (
            RetentionPolicy(keep_last=1, keep_monthly=100),
            [date(y, m, 1) - timedelta(days=1) for y in (2024, 2025) for m in range(2, 13)]
            + [date(2024, 12, 31), date(2025, 12, 31)],
        ),
        (
            RetentionPolicy(keep_last=2, keep_daily=3),
            [date(2025, 12, 29), date(2025, 12, 30), date(2025, 12, 31)],
        ),
        (
            RetentionPolicy(keep_last=1, keep_weekly=3),
            [date(2025, 12, 31), date(2025, 12, 28), date(2025, 12, 21)],
        ),
    ],
)
def test_rule_combinations_keep_exact_ids(policy: RetentionPolicy, keep_days: list[date]) -> None:
    backups, ids = daily(date(2024, 1, 1), date(2025, 12, 31))
    assert date(2024, 2, 29) in ids  # a leap day is in the range
    assert kept(backups, policy) == {ids[d] for d in keep_days}


def test_leap_day_is_the_february_month_end() -> None:
    backups, ids = daily(date(2024, 1, 1), date(2024, 3, 31))
    policy = RetentionPolicy(keep_last=1, keep_monthly=3)
    assert kept(backups, policy) == {
        ids[date(2024, 3, 31)],
        ids[date(2024, 2, 29)],
        ids[date(2024, 1, 31)],
    }


def test_weekly_buckets_are_iso_weeks_across_the_new_year() -> None:
    # 2020-12-28 (Mon) .. 2021-01-03 (Sun) are all ISO week 2020-W53; 2021-01-04 is 2021-W01.
    backups = [
        b(1, "2020-12-21T02:00:00"),  # 2020-W52
        b(2, "2020-12-28T02:00:00"),  # 2020-W53
        b(3, "2020-12-31T02:00:00"),  # 2020-W53
        b(4, "2021-01-03T02:00:00"),  # 2020-W53 (calendar year 2021!)
        b(5, "2021-01-04T02:00:00"),  # 2021-W01
    ]
    assert kept(backups, RetentionPolicy(keep_last=1, keep_weekly=2)) == {5, 4}
    assert kept(backups, RetentionPolicy(keep_last=1, keep_weekly=3)) == {5, 4, 1}


def test_sparse_backups_count_buckets_that_have_a_backup() -> None:
    # restic semantics: "last 3 days" means the 3 most recent days that HAVE a backup.
    backups = [
        b(1, "2023-06-01T02:00:00"),
        b(2, "2024-02-10T02:00:00"),
        b(3, "2024-02-10T14:00:00"),
        b(4, "2025-01-05T02:00:00"),
        b(5, "2025-01-05T03:00:00"),
    ]
    assert kept(backups, RetentionPolicy(keep_last=1, keep_daily=3)) == {5, 3, 1}
    assert to_delete(backups, RetentionPolicy(keep_last=1, keep_daily=3)) == {2, 4}


# ---- time zones --------------------------------------------------------------------------------


def test_day_bucket_follows_the_configured_time_zone() -> None:
    backups = [
        b(1, "2026-01-10T12:00:00"),
        b(2, "2026-01-10T23:30:00"),  # Jan 10 in UTC, Jan 11 00:30 in Europe/Berlin
        b(3, "2026-01-11T12:00:00"),
    ]
    utc = RetentionPolicy(keep_last=1, keep_daily=2, timezone="UTC")
    berlin = RetentionPolicy(keep_last=1, keep_daily=2, timezone="Europe/Berlin")
    assert to_delete(backups, utc) == {1}
    assert to_delete(backups, berlin) == {2}


def test_month_bucket_follows_the_configured_time_zone() -> None:
    backups = [
        b(1, "2025-01-15T12:00:00"),
        b(2, "2025-01-31T23:30:00"),  # still January in UTC, February 1st in Berlin
        b(3, "2025-02-15T12:00:00"),
    ]
    assert to_delete(backups, RetentionPolicy(keep_last=1, keep_monthly=2)) == {1}
    assert to_delete(
        backups, RetentionPolicy(keep_last=1, keep_monthly=2, timezone="Europe/Berlin")
    ) == {2}


def test_week_bucket_follows_the_configured_time_zone() -> None:
    backups = [
        b(1, "2025-03-05T12:00:00"),  # Wednesday, W10
        b(2, "2025-03-09T23:30:00"),  # Sunday W10 in UTC; Monday 00:30, W11, in Berlin
        b(3, "2025-03-12T12:00:00"),  # Wednesday, W11
    ]
    assert to_delete(backups, RetentionPolicy(keep_last=1, keep_weekly=2)) == {1}
    assert to_delete(
        backups, RetentionPolicy(keep_last=1, keep_weekly=2, timezone="Europe/Berlin")
    ) == {2}


def test_day_buckets_across_a_dst_change() -> None:
    # Berlin moves to CEST on 2026-03-29: 22:30 UTC is 23:30 local before, 00:30 after.
    backups = [
        b(1, "2026-03-28T21:30:00"),  # Mar 28 22:30 CET
        b(2, "2026-03-28T22:30:00"),  # Mar 28 23:30 CET
        b(3, "2026-03-29T22:30:00"),  # Mar 30 00:30 CEST
        b(4, "2026-03-30T12:00:00"),  # Mar 30
    ]
    policy = RetentionPolicy(keep_last=1, keep_daily=2, timezone="Europe/Berlin")
    assert kept(backups, policy) == {4, 2}


# ---- guards ---------------------------------------------------------------------------------


def test_newest_verified_is_never_deleted_even_with_keep_last_zero() -> None:
    backups = [b(i, f"2025-06-{i:02d}T02:00:00") for i in range(1, 6)]
    assert to_delete(backups, RetentionPolicy(keep_last=0)) == {1, 2, 3, 4}


def test_newest_verified_survives_when_newer_backups_are_unverified() -> None:
    backups = [
        b(1, "2025-06-01T02:00:00"),
        b(2, "2025-06-02T02:00:00"),
        b(3, "2025-06-03T02:00:00", verified=False),
        b(4, "2025-06-04T02:00:00", verified=False),
    ]
    doomed = to_delete(backups, RetentionPolicy(keep_last=0))
    assert doomed == {1}
    assert 2 not in doomed


def test_last_backup_failed_deletes_nothing() -> None:
    backups = [b(i, f"2025-06-{i:02d}T02:00:00") for i in range(1, 10)]
    backups.append(b(10, "2025-06-10T02:00:00", status="failed", verified=False))
    policy = RetentionPolicy(keep_last=1, keep_daily=1)
    assert to_delete(backups, policy) == set()
    # The same history without the failure would lose 8 backups.
    assert len(to_delete(backups[:-1], policy)) == 8


def test_last_finished_backup_failed_while_a_newer_one_runs_deletes_nothing() -> None:
    backups = [b(i, f"2025-06-{i:02d}T02:00:00") for i in range(1, 5)]
    backups += [
        b(5, "2025-06-05T02:00:00", status="failed", verified=False),
        b(6, "2025-06-06T02:00:00", status="running", verified=False),
    ]
    assert to_delete(backups, RetentionPolicy(keep_last=1)) == set()


def test_older_failure_does_not_block_rotation_nor_count_as_kept() -> None:
    backups = [
        b(1, "2025-06-01T02:00:00"),
        b(2, "2025-06-02T02:00:00"),
        b(3, "2025-06-03T02:00:00", status="failed", verified=False),
        b(4, "2025-06-04T02:00:00"),
    ]
    assert to_delete(backups, RetentionPolicy(keep_last=2)) == {1}


def test_running_and_deleted_rows_are_ignored() -> None:
    backups = [
        b(1, "2025-06-01T02:00:00"),
        b(2, "2025-06-02T02:00:00", status="deleted"),
        b(3, "2025-06-03T02:00:00"),
        b(4, "2025-06-04T02:00:00"),
        b(5, "2025-06-05T02:00:00", status="running", verified=False),
        b(6, "2025-06-06T02:00:00", status="deleted"),
    ]
    doomed = to_delete(backups, RetentionPolicy(keep_last=2))
    # keep_last counts good backups only (4, 3): a deleted or running row takes no slot.
    assert doomed == {1}
    assert not doomed & {2, 5, 6}


def test_a_deleted_newest_row_does_not_hide_an_older_failure() -> None:
    backups = [
        b(1, "2025-06-01T02:00:00"),
        b(2, "2025-06-02T02:00:00"),
        b(3, "2025-06-03T02:00:00", status="failed", verified=False),
        b(4, "2025-06-04T02:00:00", status="deleted"),
    ]
    assert to_delete(backups, RetentionPolicy(keep_last=1)) == set()


def test_unverified_backups_take_no_slot_and_are_never_deleted() -> None:
    backups = [
        b(1, "2025-06-01T02:00:00"),
        b(2, "2025-06-02T02:00:00"),
        b(3, "2025-06-03T02:00:00", verified=False),
        b(4, "2025-06-04T02:00:00"),
        b(5, "2025-06-05T02:00:00", verified=False),
    ]
    doomed = to_delete(backups, RetentionPolicy(keep_last=2))
    assert doomed == {1}
    assert not doomed & {3, 5}


def test_no_good_backup_deletes_nothing() -> None:
    backups = [
        b(1, "2025-06-01T02:00:00", verified=False),
        b(2, "2025-06-02T02:00:00", verified=False),
        b(3, "2025-06-03T02:00:00", status="deleted"),
    ]
    assert to_delete(backups, RetentionPolicy(keep_last=1)) == set()


def test_result_only_ever_names_good_backups() -> None:
    rng = random.Random(11)
    statuses = ["ok", "ok", "ok", "failed", "running", "deleted"]
    start = ts("2023-01-01T00:00:00")
    for _ in range(200):
        backups = []
        for i in range(1, rng.randint(1, 40)):
            status = rng.choice(statuses)
            verified = status == "ok" and rng.random() < 0.8
            backups.append(
                BackupInfo(
                    id=i,
                    started_at=start + rng.randint(0, 3 * 365) * 86400 + rng.randint(0, 86399),
                    status=status,
                    verified=verified,
                )
            )
        policy = RetentionPolicy(
            keep_last=rng.randint(0, 5),
            keep_daily=rng.randint(0, 5),
            keep_weekly=rng.randint(0, 3),
            keep_monthly=rng.randint(0, 3),
            timezone="Europe/Berlin",
        )
        doomed = to_delete(backups, policy)
        good = [x for x in backups if x.good]
        assert doomed <= {x.id for x in good}
        if good:
            newest = max(good, key=lambda x: (x.started_at, x.id))
            assert newest.id not in doomed
        live = [x for x in backups if x.status in ("ok", "failed")]
        if live and max(live, key=lambda x: (x.started_at, x.id)).status == "failed":
            assert doomed == set()
        # Keep-last: the newest `keep_last` good backups survive whatever the other rules do.
        newest_good = sorted(good, key=lambda x: (x.started_at, x.id), reverse=True)
        assert not doomed & {x.id for x in newest_good[: policy.keep_last]}
