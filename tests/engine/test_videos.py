"""The video animation scheduler: the pure rotation policy, and passes over a real database —
activation at start, deactivation at end, rotation orders, archiving, archived portraits,
the one-active-video index, concurrent passes, the admin digest, events, runs and summary."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.videos import next_video

if TYPE_CHECKING:
    from conftest import Query

H = 3_600.0
DAY = 86_400.0
T0 = 1_800_000_000.0
ROTATE = 3_600  # VIDEO_SCHEDULER_ROTATION_INTERVAL in these tests


# ---- the pure policy -------------------------------------------------------------------------

VIDEOS = ((0, 10), (1, 11), (2, 12), (3, 13))  # (position, id)


def eligible_without(current: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    return tuple(v for v in VIDEOS if v != current)


@pytest.mark.parametrize(
    ("mode", "current", "eligible", "expected"),
    [
        ("none", (0, 10), eligible_without((0, 10)), None),
        ("sequential", (0, 10), eligible_without((0, 10)), 11),
        ("sequential", (1, 11), eligible_without((1, 11)), 12),
        ("sequential", (2, 12), eligible_without((2, 12)), 13),
        ("sequential", (3, 13), eligible_without((3, 13)), None),  # stops at the end
        ("cyclic", (0, 10), eligible_without((0, 10)), 11),
        ("cyclic", (2, 12), eligible_without((2, 12)), 13),
        ("cyclic", (3, 13), eligible_without((3, 13)), 10),  # wraps
        # Only eligible videos count: gaps are skipped, in position order.
        ("sequential", (0, 10), ((3, 13), (2, 12)), 12),
        ("cyclic", (3, 13), ((2, 12), (1, 11)), 11),
        ("sequential", (2, 12), ((0, 10), (1, 11)), None),
        ("cyclic", (2, 12), ((0, 10), (1, 11)), 10),
        # Nothing else eligible: keep the current one, whatever the mode.
        ("sequential", (0, 10), (), None),
        ("cyclic", (0, 10), (), None),
        ("random", (0, 10), (), None),
        ("random", (0, 10), ((0, 10),), None),
        ("cyclic", (1, 11), ((1, 11),), None),
        # Equal positions are ordered by id.
        ("sequential", (1, 11), ((1, 15), (1, 12), (2, 9)), 12),
        ("cyclic", (5, 20), ((1, 15), (1, 12)), 12),
    ],
)
def test_next_video_table(mode: str, current: tuple[int, int],
                          eligible: tuple[tuple[int, int], ...], expected: int | None) -> None:
    assert next_video(mode, current, eligible, random.Random(0)) == expected


@pytest.mark.parametrize("seed", range(5))
def test_random_never_repeats_the_current_and_reaches_every_other(seed: int) -> None:
    rand = random.Random(seed)
    current = VIDEOS[0]
    seen = set()
    for _ in range(200):
        # The current video may be listed among the eligible ones: still never chosen.
        target = next_video("random", current, VIDEOS, rand)
        assert target is not None and target != current[1]
        seen.add(target)
        current = next(v for v in VIDEOS if v[1] == target)
    assert seen == {v[1] for v in VIDEOS}


def test_random_is_repeatable_with_a_seed() -> None:
    picks = [[next_video("random", (0, 10), VIDEOS, r) for _ in range(20)]
             for r in (random.Random(42), random.Random(42))]
    assert picks[0] == picks[1]


def test_sequential_walk_stops_and_cyclic_walk_wraps() -> None:
    def walk(mode: str, steps: int) -> list[int]:
        current = VIDEOS[0]
        order = [current[1]]
        for _ in range(steps):
            target = next_video(mode, current, eligible_without(current))
            if target is not None:
                current = next(v for v in VIDEOS if v[1] == target)
            order.append(current[1])
        return order

    assert walk("sequential", 6) == [10, 11, 12, 13, 13, 13, 13]
    assert walk("cyclic", 6) == [10, 11, 12, 13, 10, 11, 12]


# ---- passes over a database ------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def vsettings(backend_settings_factory: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings of this test's backend: every test using it runs on SQLite and PostgreSQL."""
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"video_rotation_interval": ROTATE,
                                  "video_archive_after_hours": 2}
        values.update(overrides)
        return backend_settings_factory(**values)

    return make


async def statuses(engine: Engine, portrait: int | None = None) -> dict[int, str]:
    if portrait is None:
        rows = await engine.db.read("SELECT id, status FROM videos ORDER BY id")
    else:
        rows = await engine.db.read("SELECT id, status FROM videos WHERE portrait_id = ?"
                                    " ORDER BY id", (portrait,))
    return {r[0]: r[1] for r in rows}


async def active_of(engine: Engine, portrait: int) -> int | None:
    rows = await engine.db.read("SELECT id FROM videos WHERE portrait_id = ? AND"
                                " status = 'active'", (portrait,))
    assert len(rows) <= 1
    return rows[0][0] if rows else None


async def portrait(engine: Engine, end: float | None = None, title: str = "P") -> int:
    return await engine.lifecycle.add_portrait(title=title, owner="o@example.com",
                                               subscription_end=end)


async def check_at(engine: Engine, clock: FakeClock, t: float) -> dict[str, Any]:
    clock.set(t)
    result = await engine.video.check()
    assert result["status"] == "ok", result
    return result


async def test_activation_at_start_and_deactivation_at_end(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine)
        v = await engine.video.add_video(portrait_id=p, title="v", start=T0 + H, end=T0 + 2 * H)
        await check_at(engine, clock, T0)
        assert (await statuses(engine))[v] == "scheduled"
        await check_at(engine, clock, T0 + H - 1)
        assert (await statuses(engine))[v] == "scheduled"
        result = await check_at(engine, clock, T0 + H)
        assert result["activated"] == 1
        assert (await statuses(engine))[v] == "active"
        row = await engine.db.read_one("SELECT activated_at FROM videos WHERE id = ?", (v,))
        assert row is not None and row[0] == T0 + H
        await check_at(engine, clock, T0 + 2 * H - 1)
        assert (await statuses(engine))[v] == "active"
        result = await check_at(engine, clock, T0 + 2 * H)
        assert result["deactivated"] == 1
        assert (await statuses(engine))[v] == "inactive"


async def test_a_late_pass_skips_a_window_that_already_closed(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine)
        await check_at(engine, clock, T0)
        short = await engine.video.add_video(portrait_id=p, title="short", start=T0 + H,
                                             end=T0 + 2 * H)
        later = await engine.video.add_video(portrait_id=p, title="later", start=T0 + H)
        result = await check_at(engine, clock, T0 + 3 * H)
        assert result["activated"] == 1
        assert await statuses(engine) == {short: "scheduled", later: "active"}


async def test_the_next_eligible_video_takes_over_when_the_active_one_ends(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine)
        a = await engine.video.add_video(portrait_id=p, title="a", end=T0 + 2 * H)
        b = await engine.video.add_video(portrait_id=p, title="b", start=T0 + H)
        await check_at(engine, clock, T0)
        await check_at(engine, clock, T0 + H)
        assert await statuses(engine) == {a: "active", b: "scheduled"}
        await check_at(engine, clock, T0 + 2 * H)
        assert await statuses(engine) == {a: "inactive", b: "active"}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("sequential", [0, 0, 1, 2, 3, 3, 3]),  # stops at the end
        ("cyclic", [0, 0, 1, 2, 3, 0, 1]),  # wraps
        ("none", [0, 0, 0, 0, 0, 0, 0]),
    ],
)
async def test_rotation_orders(
    vsettings: Callable[..., Settings], clock: FakeClock, mode: str, expected: list[int]
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine)
        ids = [await engine.video.add_video(portrait_id=p, title=f"v{i}", rotation=mode)
               for i in range(4)]
        order = []
        for t in (T0, T0 + ROTATE - 1, T0 + ROTATE, T0 + 2 * ROTATE, T0 + 3 * ROTATE,
                  T0 + 4 * ROTATE, T0 + 5 * ROTATE):
            await check_at(engine, clock, t)
            current = await active_of(engine, p)
            assert current is not None
            order.append(ids.index(current))
        assert order == expected
        rotated = await engine.db.read("SELECT count(*) FROM videos WHERE status = 'inactive'")
        assert rotated[0][0] == (0 if mode == "none" else 3)


async def test_rotation_skips_videos_outside_their_window(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine)
        a = await engine.video.add_video(portrait_id=p, title="a", rotation="cyclic")
        await engine.video.add_video(portrait_id=p, title="not yet", rotation="cyclic",
                                     start=T0 + 10 * DAY)
        await engine.video.add_video(portrait_id=p, title="over", rotation="cyclic",
                                     start=T0 - 2 * DAY, end=T0 - DAY)
        d = await engine.video.add_video(portrait_id=p, title="d", rotation="cyclic")
        order = []
        for k in range(5):
            await check_at(engine, clock, T0 + k * ROTATE)
            order.append(await active_of(engine, p))
        assert order == [a, d, a, d, a]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_rotation_never_repeats_the_current_video(
    vsettings: Callable[..., Settings], clock: FakeClock, seed: int
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        engine.video._rand = random.Random(seed)
        p = await portrait(engine)
        ids = [await engine.video.add_video(portrait_id=p, title=f"v{i}", rotation="random")
               for i in range(4)]
        order = []
        for k in range(40):
            await check_at(engine, clock, T0 + k * ROTATE)
            order.append(await active_of(engine, p))
        assert all(x != y for x, y in itertools.pairwise(order)), order
        assert set(order) == set(ids)


async def test_random_rotation_with_one_other_video_alternates(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        engine.video._rand = random.Random(5)
        p = await portrait(engine)
        a = await engine.video.add_video(portrait_id=p, title="a", rotation="random")
        b = await engine.video.add_video(portrait_id=p, title="b", rotation="random")
        order = []
        for k in range(6):
            await check_at(engine, clock, T0 + k * ROTATE)
            order.append(await active_of(engine, p))
        assert order == [a, b, a, b, a, b]


async def test_archiving_after_the_configured_hours(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(video_archive_after_hours=2), run=[], clock=clock) as engine:
        p = await portrait(engine)
        played = await engine.video.add_video(portrait_id=p, title="played", end=T0 + H)
        never = await engine.video.add_video(portrait_id=p, title="never", start=T0,
                                             end=T0 + H)
        forever = await engine.video.add_video(portrait_id=p, title="forever", start=T0 + 2 * H)
        await check_at(engine, clock, T0)
        assert await statuses(engine) == {played: "active", never: "scheduled",
                                          forever: "scheduled"}
        await check_at(engine, clock, T0 + H)
        assert (await statuses(engine))[played] == "inactive"
        result = await check_at(engine, clock, T0 + 3 * H - 1)
        assert result["archived"] == 0
        result = await check_at(engine, clock, T0 + 3 * H)
        assert result["archived"] == 2
        assert await statuses(engine) == {played: "archived", never: "archived",
                                          forever: "active"}
        row = await engine.db.read_one("SELECT archived_at FROM videos WHERE id = ?", (played,))
        assert row is not None and row[0] == T0 + 3 * H


async def test_archive_after_zero_hours_archives_in_the_pass_that_ends_it(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(video_archive_after_hours=0), run=[], clock=clock) as engine:
        p = await portrait(engine)
        v = await engine.video.add_video(portrait_id=p, title="v", end=T0 + H)
        await check_at(engine, clock, T0)
        result = await check_at(engine, clock, T0 + H)
        assert result["deactivated"] == 1 and result["archived"] == 1
        assert await statuses(engine) == {v: "archived"}


async def test_videos_of_archived_portraits_are_never_activated(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        ended = await portrait(engine, end=T0 - DAY, title="ended")
        live = await portrait(engine, end=T0 + 2 * H, title="live")
        v1 = await engine.video.add_video(portrait_id=ended, title="v1")
        v2 = await engine.video.add_video(portrait_id=live, title="v2", rotation="cyclic")
        v3 = await engine.video.add_video(portrait_id=live, title="v3", rotation="cyclic")
        await check_at(engine, clock, T0)
        assert await statuses(engine) == {v1: "scheduled", v2: "active", v3: "scheduled"}
        # The live portrait ends: its video goes off and nothing rotates in.
        await check_at(engine, clock, T0 + 2 * H)
        assert await statuses(engine) == {v1: "scheduled", v2: "inactive", v3: "scheduled"}
        for k in range(1, 4):
            v = await engine.video.add_video(portrait_id=ended, title=f"late{k}")
            await check_at(engine, clock, T0 + (2 + k) * ROTATE)
            assert (await statuses(engine))[v] == "scheduled"
        n = await engine.db.read("SELECT count(*) FROM videos WHERE status = 'active'")
        assert n[0][0] == 0


async def test_a_backdated_portrait_end_deactivates_its_video_at_the_next_pass(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    """The end moved to before the previous pass (a cancellation dated earlier): the portrait
    is archived, so its video must stop, not play on forever."""
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine, end=T0 + 30 * DAY)
        v = await engine.video.add_video(portrait_id=p, title="v")
        await check_at(engine, clock, T0)
        await check_at(engine, clock, T0 + 600)
        await engine.lifecycle.renew("portrait", p, T0 - 10)
        result = await check_at(engine, clock, T0 + 1200)
        assert result["deactivated"] == 1
        assert await statuses(engine) == {v: "inactive"}


async def test_a_renewed_portrait_plays_its_videos_again(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine, end=T0 + H)
        v = await engine.video.add_video(portrait_id=p, title="v")
        await check_at(engine, clock, T0)
        await check_at(engine, clock, T0 + 2 * H)
        assert await statuses(engine) == {v: "inactive"}
        await engine.lifecycle.renew("portrait", p, T0 + 30 * DAY)
        result = await check_at(engine, clock, T0 + 3 * H)
        assert result["activated"] == 1
        assert await statuses(engine) == {v: "active"}


async def test_the_database_refuses_a_second_active_video(
    vsettings: Callable[..., Settings], clock: FakeClock, query: Query
) -> None:
    settings = vsettings()
    async with Engine(settings, run=[], clock=clock) as engine:
        p = await portrait(engine)
        a = await engine.video.add_video(portrait_id=p, title="a")
        b = await engine.video.add_video(portrait_id=p, title="b")
        other = await portrait(engine, title="other")
        c = await engine.video.add_video(portrait_id=other, title="c")
        await check_at(engine, clock, T0)
        assert await statuses(engine) == {a: "active", b: "scheduled", c: "active"}
    unique = (sqlite3.IntegrityError, psycopg.errors.UniqueViolation)
    with pytest.raises(unique, match=r"(?i)unique"):
        query(settings, "UPDATE videos SET status = 'active' WHERE id = ?", (b,))
    with pytest.raises(unique, match=r"(?i)unique"):
        query(settings, "INSERT INTO videos (portrait_id, title, status, created_at)"
              " VALUES (?, 'x', 'active', 0)", (p,))
    # Inactive and archived ones are not limited.
    query(settings, "UPDATE videos SET status = 'inactive' WHERE id = ?", (b,))
    query(settings, "INSERT INTO videos (portrait_id, title, status, created_at)"
          " VALUES (?, 'y', 'archived', 0)", (p,))
    rows = query(settings, "SELECT portrait_id, count(*) FROM videos WHERE status = 'active'"
                 " GROUP BY 1")
    assert sorted(rows) == [(p, 1), (other, 1)]


async def populate(engine: Engine, portraits: int, per: int) -> list[int]:
    ids = []
    modes = ("none", "sequential", "cyclic", "random")
    for i in range(portraits):
        p = await portrait(engine, end=T0 + (i % 5 + 1) * 6 * H if i % 3 == 0 else None,
                           title=f"p{i}")
        ids.append(p)
        for k in range(per):
            start = T0 + (k * 7 + i) % 4 * H
            end = None if k % 2 else start + (k + 2) * H
            await engine.video.add_video(portrait_id=p, title=f"v{i}.{k}", start=start,
                                         end=end, rotation=modes[(i + k) % 4])
    return ids


async def assert_one_active_per_live_portrait(engine: Engine, now: float) -> None:
    """No portrait has two active videos; a live portrait with an eligible video has one;
    an ended portrait has none."""
    rows = await engine.db.read(
        "SELECT p.id, p.subscription_end,"
        " (SELECT count(*) FROM videos v WHERE v.portrait_id = p.id AND v.status = 'active'),"
        " (SELECT count(*) FROM videos v WHERE v.portrait_id = p.id"
        "  AND v.status IN ('scheduled', 'inactive', 'active')"
        "  AND (v.start_at IS NULL OR v.start_at <= :now) AND (v.end_at IS NULL"
        "  OR v.end_at > :now))"
        " FROM portraits p", {"now": now})
    for pid, end, active, eligible in rows:
        live = end is None or end > now
        assert active <= 1, pid
        assert active == (1 if live and eligible else 0), (pid, end, active, eligible)


async def test_concurrent_passes_never_leave_two_active_videos(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = vsettings()
    async with Engine(settings, run=[], clock=clock) as a, \
            Engine(settings, run=[], clock=clock) as b:
        a.video._rand = random.Random(1)
        b.video._rand = random.Random(2)
        await populate(a, portraits=40, per=4)
        results = await asyncio.gather(a.video.check(), b.video.check())
        assert sorted(r["status"] for r in results) == ["ok", "skipped"]
        await assert_one_active_per_live_portrait(a, T0)
        # Bypass the lease: both passes at once, many times, as time moves through starts,
        # ends, rotations and portrait ends.
        for k in range(1, 16):
            clock.set(T0 + k * 1_800)
            counts = await asyncio.gather(a.video.run_pass(clock.time()),
                                          b.video.run_pass(clock.time()))
            assert all(isinstance(c, dict) for c in counts)
            await assert_one_active_per_live_portrait(a, clock.time())
        # And the leased way again, after the lease holder stepped aside.
        await a.leases.release("video")
        await b.leases.release("video")
        clock.advance(ROTATE)
        results = await asyncio.gather(a.video.check(), b.video.check())
        assert sorted(r["status"] for r in results) == ["ok", "skipped"]
        await assert_one_active_per_live_portrait(a, clock.time())


# ---- notifications, events, runs --------------------------------------------------------------


async def admin_mails(engine: Engine) -> list[dict[str, Any]]:
    rows = await engine.db.read("SELECT recipients, subject, body FROM email_jobs ORDER BY id")
    return [dict(r) for r in rows]


async def test_admin_digest_of_activations_deactivations_rotations(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    seen: list[ev.Event] = []
    settings = vsettings(notify_admin_email="ops@example.com")
    async with Engine(settings, run=[], clock=clock) as engine:
        engine.events.subscribe(seen.append)
        p = await portrait(engine)
        a = await engine.video.add_video(portrait_id=p, title="Alpha", rotation="cyclic")
        b = await engine.video.add_video(portrait_id=p, title="Beta", rotation="cyclic",
                                         end=T0 + ROTATE + H)
        result = await check_at(engine, clock, T0)
        assert result["digest_mailed"] is True
        mails = await admin_mails(engine)
        assert len(mails) == 1
        assert json.loads(mails[0]["recipients"]) == ["ops@example.com"]
        assert mails[0]["subject"] == "Video schedule: 1 activated, 0 deactivated, 0 rotated"
        assert f"activated video {a} 'Alpha' of portrait {p}" in mails[0]["body"]
        # No change, no mail.
        assert (await check_at(engine, clock, T0 + 60))["digest_mailed"] is False
        assert len(await admin_mails(engine)) == 1
        await check_at(engine, clock, T0 + ROTATE)
        mails = await admin_mails(engine)
        assert mails[-1]["subject"] == "Video schedule: 0 activated, 0 deactivated, 1 rotated"
        assert f"rotated portrait {p}: video {a} -> {b}" in mails[-1]["body"]
        # Beta ends: it goes off and Alpha, the one eligible video left, comes back.
        await check_at(engine, clock, T0 + ROTATE + H)
        mails = await admin_mails(engine)
        assert mails[-1]["subject"] == "Video schedule: 1 activated, 1 deactivated, 0 rotated"
        assert f"deactivated video {b} 'Beta'" in mails[-1]["body"]
        assert f"activated video {a} 'Alpha'" in mails[-1]["body"]
        assert len(mails) == 3
        enqueued = [e for e in seen if isinstance(e, ev.EmailEnqueued)]
        assert [e.count for e in enqueued] == [1, 1, 1]
        changed = [e for e in seen if isinstance(e, ev.VideosChanged)]
        assert [(e.activated, e.deactivated, e.rotated) for e in changed] == [
            (1, 0, 0), (0, 0, 1), (1, 1, 0)]


@pytest.mark.parametrize("overrides", [{}, {"notify_admin_email": "ops@example.com",
                                            "video_notifications_enabled": False}],
                         ids=["unset", "disabled"])
async def test_no_admin_digest_when_unset_or_disabled(
    vsettings: Callable[..., Settings], clock: FakeClock, overrides: dict[str, Any]
) -> None:
    async with Engine(vsettings(**overrides), run=[], clock=clock) as engine:
        p = await portrait(engine)
        await engine.video.add_video(portrait_id=p, title="a", rotation="cyclic", end=T0 + 2 * H)
        await engine.video.add_video(portrait_id=p, title="b", rotation="cyclic")
        for t in (T0, T0 + ROTATE, T0 + 2 * ROTATE, T0 + 3 * ROTATE):
            result = await check_at(engine, clock, t)
            assert result["digest_mailed"] is False
        changes = await engine.db.read("SELECT count(*) FROM videos WHERE status <> 'scheduled'")
        assert changes[0][0] == 2, "the videos did change"
        assert await admin_mails(engine) == []


async def test_digest_and_changes_commit_together(
    vsettings: Callable[..., Settings], clock: FakeClock, backend: str
) -> None:
    """The admin mail is in the pass's transaction: if it cannot be stored, the pass changes
    nothing and is recorded as an error; the next pass does it all."""
    settings = vsettings(notify_admin_email="ops@example.com")
    async with Engine(settings, run=[], clock=clock) as engine:
        p = await portrait(engine)
        v = await engine.video.add_video(portrait_id=p, title="v")
        pg = backend == "postgresql"
        if pg:
            await engine.db.write("CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS"
                                  " $$ BEGIN RAISE EXCEPTION 'no mail today'; END $$")
            await engine.db.write("CREATE TRIGGER boom BEFORE INSERT ON email_jobs"
                                  " FOR EACH ROW EXECUTE FUNCTION boom()")
        else:
            await engine.db.write("CREATE TRIGGER boom BEFORE INSERT ON email_jobs"
                                  " BEGIN SELECT RAISE(ABORT, 'no mail today'); END")
        result = await engine.video.check()
        assert result["status"] == "error" and "no mail today" in result["error"]
        assert await statuses(engine) == {v: "scheduled"}
        flag = await engine.db.read(
            "SELECT count(*) FROM engine_flags WHERE name = 'video.last_pass'")
        assert flag[0][0] == 0
        await engine.db.write("DROP TRIGGER boom ON email_jobs" if pg else "DROP TRIGGER boom")
        result = await check_at(engine, clock, T0 + 60)
        assert result["activated"] == 1 and result["digest_mailed"] is True
        assert len(await admin_mails(engine)) == 1
        runs = await engine.db.read("SELECT outcome, counts, error FROM service_runs"
                                    " WHERE service = 'video' ORDER BY id")
        assert [r[0] for r in runs] == ["error", "ok"]
        assert "no mail today" in runs[0][2]
        counts = json.loads(runs[1][1])
        assert counts["activated"] == 1 and counts["seconds"] >= 0


async def test_a_failing_video_pass_is_recorded_and_the_next_one_works(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    seen: list[ev.Event] = []
    async with Engine(vsettings(), run=["video"], clock=clock) as engine:
        engine.events.subscribe(seen.append)
        p = await portrait(engine)
        v = await engine.video.add_video(portrait_id=p, title="v")
        await engine.db.write("ALTER TABLE video_dirty RENAME TO video_dirty_away")
        result = await engine.video.check()
        assert result["status"] == "error"
        status = await engine.video.status()
        assert status["state"] == "error" and status["next_run"] is not None
        await engine.db.write("ALTER TABLE video_dirty_away RENAME TO video_dirty")
        result = await check_at(engine, clock, T0 + 60)
        assert result["activated"] == 1
        assert await statuses(engine) == {v: "active"}
        passes = [e for e in seen if isinstance(e, ev.PassCompleted) and e.service == "video"]
        assert [e.ok for e in passes] == [False, True]
        assert (await engine.video.status())["state"] in ("idle", "running")


async def test_a_video_pass_runs_only_under_its_lease(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine)
        v = await engine.video.add_video(portrait_id=p, title="v")
        from vertex_tui.engine.leases import Leases

        assert await Leases(engine.db, "elsewhere:1:x").acquire("video", T0, 300)
        result = await engine.video.check()
        assert result["status"] == "skipped"
        assert await statuses(engine) == {v: "scheduled"}
        row = await engine.db.read_one("SELECT outcome FROM service_runs WHERE service = 'video'")
        assert row is not None and row[0] == "skipped"


# ---- summary ------------------------------------------------------------------------------------


async def test_summary_counts_upcoming_changes_and_current_rotation(
    vsettings: Callable[..., Settings], clock: FakeClock
) -> None:
    async with Engine(vsettings(video_archive_after_hours=0), run=[], clock=clock) as engine:
        p = await portrait(engine, title="Rotating")
        a = await engine.video.add_video(portrait_id=p, title="a", rotation="cyclic")
        await engine.video.add_video(portrait_id=p, title="b", rotation="cyclic")
        q = await portrait(engine, title="Plain")
        gone = await engine.video.add_video(portrait_id=q, title="gone", end=T0 + 60)
        for k in range(25):
            await engine.video.add_video(portrait_id=q, title=f"s{k}", start=T0 + (k + 1) * H)
        await check_at(engine, clock, T0)
        await check_at(engine, clock, T0 + 60)
        doc = await engine.video.summary()
        assert {"scheduled", "active", "inactive", "archived", "upcoming",
                "rotating"} <= set(doc)
        # b waits for its rotation turn; "gone" ended and was archived at once (0 hours).
        assert (doc["scheduled"], doc["active"], doc["inactive"], doc["archived"]) == (
            26, 1, 0, 1)
        assert (await statuses(engine))[gone] == "archived"
        upcoming = doc["upcoming"]
        assert len(upcoming) == 20
        secs = [u["seconds_from_now"] for u in upcoming]
        assert secs == sorted(secs) and all(s >= 0 for s in secs)
        assert upcoming[0]["what"] == "activate" and upcoming[0]["seconds_from_now"] == H - 60
        assert any(u["what"] == "rotate" and u["video"] == a for u in upcoming)
        assert all(u["at"].endswith("+00:00") for u in upcoming)
        assert [(r["portrait"], r["video"], r["rotation"]) for r in doc["rotating"]] == [
            (p, a, "cyclic")]
        assert doc["rotating"][0]["portrait_title"] == "Rotating"


async def test_add_video_refuses_bad_input(
    vsettings: Callable[..., Settings], clock: FakeClock, tmp_path: Path
) -> None:
    from vertex_tui.engine.errors import NotFound, UsageError

    async with Engine(vsettings(), run=[], clock=clock) as engine:
        p = await portrait(engine)
        with pytest.raises(NotFound):
            await engine.video.add_video(portrait_id=p + 100, title="x")
        with pytest.raises(UsageError, match="rotation"):
            await engine.video.add_video(portrait_id=p, title="x", rotation="shuffle")
        with pytest.raises(UsageError, match="after its start"):
            await engine.video.add_video(portrait_id=p, title="x", start=T0, end=T0)
        with pytest.raises(UsageError, match="empty"):
            await engine.video.add_video(portrait_id=p, title="  ")
        first = await engine.video.add_video(portrait_id=p, title="first")
        second = await engine.video.add_video(portrait_id=p, title="second")
        rows = await engine.db.read("SELECT id, position FROM videos ORDER BY id")
        assert [tuple(r) for r in rows] == [(first, 0), (second, 1)]
