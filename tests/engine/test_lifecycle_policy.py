"""The lifecycle policy: table tests of the pure `status_for` / `notice_for`, and the SQL pass
held to the same table — at every boundary (7 days, 24 hours, the end, one second either
side), over incremental passes, renewals, late passes, and across daylight-saving changes
(times are UTC epochs, so VERTEX_TIMEZONE=Europe/Berlin must shift nothing)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.lifecycle import notice_for, status_for
from vertex_tui.engine.settings import Settings

H = 3_600.0
DAY = 86_400.0
WEEK = 7 * DAY
NOW = 1_800_000_000.0
# DST changes in Europe/Berlin: 2026-03-29 01:00 UTC (02:00 CET -> 03:00 CEST) and
# 2026-10-25 01:00 UTC (03:00 CEST -> 02:00 CET).
DST_SPRING = datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp()
DST_AUTUMN = datetime(2026, 10, 25, 1, tzinfo=UTC).timestamp()

# (end - now, expected status, expected notice): the whole policy in one table.
TABLE: list[tuple[float | None, str, tuple[str, bool] | None]] = [
    (None, "active", None),
    (365 * DAY, "active", None),
    (WEEK + 1, "active", None),
    (WEEK + 0.001, "active", None),
    (WEEK, "expiring", ("7days", True)),
    (WEEK - 1, "expiring", ("7days", True)),
    (3 * DAY, "expiring", ("7days", True)),
    (DAY + 1, "expiring", ("7days", True)),
    (DAY + 0.001, "expiring", ("7days", True)),
    (DAY, "expiring", ("24hours", True)),
    (DAY - 1, "expiring", ("24hours", True)),
    (12 * H, "expiring", ("24hours", True)),  # a late pass: the 24-hour notice, not 7-day
    (1, "expiring", ("24hours", True)),
    (0.001, "expiring", ("24hours", True)),
    (0, "archived", ("expired", True)),
    (-0.001, "archived", ("expired", True)),
    (-1, "archived", ("expired", True)),
    (-DAY, "archived", ("expired", True)),
    (-WEEK + 1, "archived", ("expired", True)),
    (-WEEK, "archived", ("expired", False)),  # ended 7 days ago: recorded, not mailed
    (-WEEK - 1, "archived", ("expired", False)),
    (-3650 * DAY, "archived", ("expired", False)),
]
BOUNDARIES = [WEEK, DAY, 0.0, -WEEK]
OFFSETS = sorted({b + d for b in BOUNDARIES for d in (-1.0, 0.0, 1.0)}
                 | {30 * DAY, 3 * DAY, 12 * H, -3 * DAY, -400 * DAY})


def _id(case: tuple[float | None, str, Any]) -> str:
    return "none" if case[0] is None else f"{case[0]:+g}s"


# ---- the pure functions ----------------------------------------------------------------------


@pytest.mark.parametrize("case", TABLE, ids=_id)
@pytest.mark.parametrize("now", [NOW, DST_SPRING, DST_AUTUMN, 0.0])
def test_status_for_table(case: tuple[float | None, str, Any], now: float) -> None:
    offset, status, _ = case
    end = None if offset is None else now + offset
    assert status_for(end, now) == status


@pytest.mark.parametrize("case", TABLE, ids=_id)
@pytest.mark.parametrize("now", [NOW, DST_SPRING, DST_AUTUMN, 0.0])
def test_notice_for_table(case: tuple[float | None, str, Any], now: float) -> None:
    offset, _, notice = case
    end = None if offset is None else now + offset
    assert notice_for(end, now) == notice


def test_a_notice_applies_exactly_when_the_status_is_not_active() -> None:
    for offset in OFFSETS:
        end = NOW + offset
        assert (notice_for(end, NOW) is None) == (status_for(end, NOW) == "active"), offset


def test_walking_time_forward_gives_each_notice_in_order_of_urgency() -> None:
    end = NOW + 10 * DAY
    seen: list[str] = []
    t = NOW
    while t < end + 10 * DAY:
        notice = notice_for(end, t)
        if notice is not None and (not seen or seen[-1] != notice[0]):
            seen.append(notice[0])
        t += 600
    assert seen == ["7days", "24hours", "expired"]


# ---- the SQL pass held to the same table -----------------------------------------------------


async def state(engine: Engine) -> tuple[dict[tuple[str, int], str | None],
                                          dict[tuple[str, int], set[tuple[str, float, str]]]]:
    """(kind, id) -> lifecycle_status, and (kind, id) -> {(notice kind, period, status)}."""
    statuses: dict[tuple[str, int], str | None] = {}
    for table, kind in (("projects", "project"), ("portraits", "portrait")):
        for r in await engine.db.read(f"SELECT id, lifecycle_status FROM {table}"):
            statuses[(kind, r[0])] = r[1]
    notices: dict[tuple[str, int], set[tuple[str, float, str]]] = {}
    for r in await engine.db.read(
            "SELECT entity_kind, entity_id, kind, period_end, status FROM lifecycle_notifications"):
        notices.setdefault((r[0], r[1]), set()).add((r[2], r[3], r[4]))
    return statuses, notices


async def assert_outbox_one_to_one(engine: Engine) -> int:
    """Every 'sent' notice has exactly one email job (same Message-ID, owner as recipient);
    every lifecycle email job belongs to a 'sent' notice. Returns the number of emails."""
    rows = await engine.db.read(
        "SELECT n.entity_kind, n.message_id, e.recipients, coalesce(p.owner_email, q.owner_email)"
        " FROM lifecycle_notifications n"
        " LEFT JOIN email_jobs e ON e.message_id = n.message_id"
        " LEFT JOIN projects p ON n.entity_kind = 'project' AND p.id = n.entity_id"
        " LEFT JOIN portraits q ON n.entity_kind = 'portrait' AND q.id = n.entity_id"
        " WHERE n.status = 'sent'")
    for kind, message_id, recipients, owner in rows:
        assert message_id, f"a sent {kind} notice without a Message-ID"
        assert recipients == f'["{owner}"]', (message_id, recipients, owner)
    skipped_with_mail = await engine.db.read(
        "SELECT count(*) FROM lifecycle_notifications WHERE status = 'skipped'"
        " AND message_id IS NOT NULL")
    assert skipped_with_mail[0][0] == 0
    jobs = await engine.db.read(
        "SELECT count(*), count(DISTINCT message_id) FROM email_jobs"
        " WHERE headers LIKE '%lifecycle%'")
    assert jobs[0][0] == jobs[0][1] == len(rows)
    return len(rows)


@pytest.mark.parametrize("now", [NOW, DST_SPRING, DST_AUTUMN], ids=["plain", "spring", "autumn"])
@pytest.mark.parametrize("tz", ["UTC", "Europe/Berlin"])
async def test_one_pass_gives_the_pure_answer_for_every_table_row(
    settings_factory: Callable[..., Settings], now: float, tz: str
) -> None:
    clock = FakeClock(now - DAY)
    async with Engine(settings_factory(timezone=tz), run=[], clock=clock) as engine:
        ids: dict[tuple[str, int], float | None] = {}
        for offset, _, _ in TABLE:
            end = None if offset is None else now + offset
            pid = await engine.lifecycle.add_project(name="p", owner="p@example.com",
                                                     subscription_end=end)
            qid = await engine.lifecycle.add_portrait(title="q", owner="q@example.com",
                                                      subscription_end=end)
            ids[("project", pid)] = ids[("portrait", qid)] = end
        clock.set(now)
        result = await engine.lifecycle.check()
        assert result["status"] == "ok" and result["full"] is True
        statuses, notices = await state(engine)
        for key, end in ids.items():
            assert statuses[key] == status_for(end, now), (key, end)
            expected = notice_for(end, now)
            got = notices.get(key, set())
            if expected is None:
                assert got == set(), (key, end)
            else:
                kind, mailed = expected
                assert got == {(kind, end, "sent" if mailed else "skipped")}, (key, end)
        mailed = sum(1 for _, _, n in TABLE if n is not None and n[1]) * 2
        assert await assert_outbox_one_to_one(engine) == mailed
        assert result["emails"] == mailed


@dataclass
class Model:
    """The pure policy applied pass by pass: what the database must hold."""

    ends: dict[tuple[str, int], float | None] = field(default_factory=dict)
    statuses: dict[tuple[str, int], str | None] = field(default_factory=dict)
    notices: dict[tuple[str, int], set[tuple[str, float, str]]] = field(default_factory=dict)

    def add(self, key: tuple[str, int], end: float | None) -> None:
        self.ends[key] = end
        self.statuses[key] = None

    def run(self, now: float, notify: bool = True) -> None:
        for key, end in self.ends.items():
            self.statuses[key] = status_for(end, now)
            notice = notice_for(end, now)
            if not notify or notice is None or end is None:
                continue
            have = self.notices.setdefault(key, set())
            if any(k == notice[0] and p == end for k, p, _ in have):
                continue
            have.add((notice[0], end, "sent" if notice[1] else "skipped"))

    def emails(self) -> int:
        return sum(1 for s in self.notices.values() for _, _, st in s if st == "sent")


async def simulate(engine: Engine, clock: FakeClock, start: float, seed: int) -> Model:
    """Entities whose ends sit on every boundary of many pass times, created along the way;
    renewals; passes at uneven (sometimes very late) times. The database is compared with
    the model after every pass."""
    rnd = random.Random(seed)
    model = Model()
    gaps = [1.0, 59.0, H, 6 * H, 12 * H, DAY - 1, DAY, DAY + 1, 3 * DAY, WEEK + 1]
    times = [start]
    for _ in range(18):
        times.append(times[-1] + rnd.choice(gaps))

    async def add(end: float | None) -> None:
        pid = await engine.lifecycle.add_project(name=f"p{len(model.ends)}",
                                                 owner=f"p{len(model.ends)}@example.com",
                                                 subscription_end=end)
        model.add(("project", pid), end)
        qid = await engine.lifecycle.add_portrait(title=f"q{len(model.ends)}",
                                                  owner=f"q{len(model.ends)}@example.com",
                                                  subscription_end=end)
        model.add(("portrait", qid), end)

    # Entities created before the first pass, aimed at the boundaries of every later pass.
    await add(None)
    for t in times:
        for offset in OFFSETS:
            await add(t + offset)
    for i, t in enumerate(times):
        clock.set(t)
        if i % 4 == 2:
            # New entities between passes, some already inside a window.
            for offset in (WEEK, DAY, 0.0, -1.0, -WEEK - 1, 2 * WEEK):
                await add(t + offset)
        if i % 5 == 3:
            # Renewals: a new end is a new period with its own notices.
            for key in rnd.sample(sorted(k for k, e in model.ends.items() if e is not None), 8):
                new_end = t + rnd.choice(OFFSETS)
                await engine.lifecycle.renew(key[0], key[1], new_end)
                model.ends[key] = new_end
        result = await engine.lifecycle.check()
        assert result["status"] == "ok", result
        model.run(t)
        statuses, notices = await state(engine)
        for key in model.ends:
            assert statuses[key] == model.statuses[key], (i, key, model.ends[key])
            assert notices.get(key, set()) == model.notices.get(key, set()), (
                i, t - start, key, model.ends[key])
        assert await assert_outbox_one_to_one(engine) == model.emails()
    return model


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_incremental_passes_follow_the_pure_policy_pass_by_pass(
    settings_factory: Callable[..., Settings], seed: int
) -> None:
    clock = FakeClock(NOW - WEEK)
    async with Engine(settings_factory(), run=[], clock=clock) as engine:
        model = await simulate(engine, clock, NOW, seed)
    # The scenario exercised every kind of notice, mailed and skipped.
    kinds = {(k, st) for s in model.notices.values() for k, _, st in s}
    assert kinds >= {("7days", "sent"), ("24hours", "sent"), ("expired", "sent"),
                     ("expired", "skipped")}


async def test_across_dst_changes_berlin_and_utc_give_identical_results(
    settings_factory: Callable[..., Settings], tmp_path: Any
) -> None:
    dumps = []
    for tz in ("UTC", "Europe/Berlin"):
        for start in (DST_SPRING - 2 * DAY, DST_AUTUMN - 2 * DAY):
            db = tmp_path / f"{tz.replace('/', '_')}-{int(start)}.db"
            clock = FakeClock(start - WEEK)
            settings = settings_factory(db_path=db, timezone=tz)
            async with Engine(settings, run=[], clock=clock) as engine:
                model = await simulate(engine, clock, start, seed=11)
                dumps.append((tz, start, await state(engine), model.emails()))
    utc = [d for d in dumps if d[0] == "UTC"]
    berlin = [d for d in dumps if d[0] == "Europe/Berlin"]
    for (_, s1, st1, e1), (_, s2, st2, e2) in zip(utc, berlin, strict=True):
        assert s1 == s2
        assert st1 == st2
        assert e1 == e2 > 0


async def test_dst_boundaries_are_exact_utc_seconds(
    settings_factory: Callable[..., Settings],
) -> None:
    """An end at the spring-forward instant: the 7-day notice exactly 7*86400 s before it
    (not 7 local days, which would be 3600 s shorter), and the mail names the UTC time."""
    end = DST_SPRING
    clock = FakeClock(end - WEEK - 1)
    async with Engine(settings_factory(timezone="Europe/Berlin"), run=[], clock=clock) as engine:
        pid = await engine.lifecycle.add_portrait(title="Spring", owner="o@example.com",
                                                  subscription_end=end)
        assert (await engine.lifecycle.check())["sent"] == {}
        clock.set(end - WEEK)
        assert (await engine.lifecycle.check())["sent"] == {"7days": 1}
        clock.set(end - DAY - 1)
        assert (await engine.lifecycle.check())["sent"] == {}
        clock.set(end - DAY)
        assert (await engine.lifecycle.check())["sent"] == {"24hours": 1}
        clock.set(end - 1)
        assert (await engine.lifecycle.check())["sent"] == {}
        statuses, _ = await state(engine)
        assert statuses[("portrait", pid)] == "expiring"
        clock.set(end)
        assert (await engine.lifecycle.check())["sent"] == {"expired": 1}
        statuses, _ = await state(engine)
        assert statuses[("portrait", pid)] == "archived"
        bodies = [r[0] for r in await engine.db.read("SELECT body FROM email_jobs")]
        assert len(bodies) == 3
        assert all("2026-03-29 01:00 UTC" in b for b in bodies), bodies
        doc = await engine.lifecycle.summary()
        assert doc["notifications"] == {"7days": 1, "24hours": 1, "expired": 1}
