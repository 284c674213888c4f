"""The engine's services on a real PostgreSQL where READ COMMITTED lets other transactions
commit in the middle of a pass: dirty marks committed during a lifecycle or video pass stay
for the next one, a pass mails exactly the notices it inserted, a video's position is fenced
against a concurrent add, leases follow the server's clock, and a holder is dead when its
heartbeat is stale.

Interleavings are made, not hoped for: a second connection holds `LOCK TABLE ... IN SHARE
MODE` on the table the pass writes last, the test waits until the pass's backend waits on
that lock (`pg_stat_activity`), commits its own change, then lets the pass go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import psycopg
import pytest
from support.db import query

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import DatabaseUrl, Settings

H = 3_600.0
DAY = 86_400.0
T0 = 1_800_000_000.0


async def lock_waiters(url: str) -> int:
    rows = await asyncio.to_thread(
        query, url, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'")
    return int(rows[0][0])


@contextlib.asynccontextmanager
async def held(url: str, table: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A transaction holding `table` in SHARE mode (no one else writes it) until the block
    ends; it may write there itself."""
    conn = await psycopg.AsyncConnection.connect(url)
    try:
        await conn.execute(f"LOCK TABLE {table} IN SHARE MODE")
        yield conn
        await conn.commit()
    finally:
        await conn.close()


async def until_blocked(url: str, task: asyncio.Task[Any], what: str) -> None:
    deadline = time.monotonic() + 30
    while await lock_waiters(url) == 0:
        assert not task.done(), f"{what} finished without waiting: {task.result()}"
        assert time.monotonic() < deadline, f"{what} never waited on the lock"
        await asyncio.sleep(0.02)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def pg_settings(settings_factory: Callable[..., Settings], pg_url: str) -> Settings:
    return settings_factory(database_url=DatabaseUrl(pg_url))


# ---- lifecycle --------------------------------------------------------------------------------


async def test_a_mark_committed_during_a_lifecycle_pass_stays_for_the_next(
        pg_settings: Settings, pg_url: str, clock: FakeClock) -> None:
    async with Engine(pg_settings, run=[], clock=clock) as engine:
        late = await engine.lifecycle.add_portrait(title="late", owner="l@x.test",
                                                   subscription_end=T0 + 90 * DAY)
        assert (await engine.lifecycle.check())["status"] == "ok"
        await engine.lifecycle.add_portrait(title="soon", owner="s@x.test",
                                            subscription_end=T0 + 3 * DAY)
        clock.advance(60)
        async with held(pg_url, "email_jobs"):
            task = asyncio.create_task(engine.lifecycle.check())
            await until_blocked(pg_url, task, "the lifecycle pass")
            # Another process moves an end into the past and commits while the pass runs.
            await asyncio.to_thread(query, pg_url,
                                    "UPDATE portraits SET subscription_end = ? WHERE id = ?",
                                    (T0 - H, late))
        result = await task
        assert result["status"] == "ok", result
        assert result["sent"] == {"7days": 1}
        assert query(pg_url, "SELECT entity_kind, entity_id FROM lifecycle_dirty") == [
            ("portrait", late)], "the mark committed during the pass was deleted by it"
        clock.advance(60)
        again = await engine.lifecycle.check()
        assert again["sent"] == {"expired": 1}
        assert query(pg_url, "SELECT lifecycle_status FROM portraits WHERE id = ?",
                     (late,)) == [("archived",)]


async def test_a_pass_mails_only_the_notices_it_inserted(
        pg_settings: Settings, pg_url: str, clock: FakeClock) -> None:
    async with Engine(pg_settings, run=[], clock=clock) as engine:
        mine = await engine.lifecycle.add_portrait(title="mine", owner="m@x.test",
                                                   subscription_end=T0 + 3 * DAY)
        other = await engine.lifecycle.add_portrait(title="other", owner="o@x.test",
                                                    subscription_end=None)
        async with held(pg_url, "email_jobs") as conn:
            task = asyncio.create_task(engine.lifecycle.check())
            await until_blocked(pg_url, task, "the lifecycle pass")
            # Another writer's notice and its mail, committed while the pass waits.
            await conn.execute(
                "INSERT INTO lifecycle_notifications (entity_kind, entity_id, kind, period_end,"
                " status, message_id, created_at) VALUES ('portrait', %s, '7days', 1, 'sent',"
                " '<theirs@x.test>', 0)", (other,))
            await conn.execute(
                "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject,"
                " body, max_attempts, created_at, updated_at, next_attempt_at) VALUES"
                " ('<theirs@x.test>', 's@x.test', '[\"o@x.test\"]', 'o@x.test', 'theirs', 'b',"
                " 5, 0, 0, 0)")
        result = await task
        assert result["status"] == "ok", result
        assert result["sent"] == {"7days": 1} and result["emails"] == 1
        mails = query(pg_url, "SELECT message_id, to_header FROM email_jobs ORDER BY id")
        assert sorted(mails) == sorted([("<theirs@x.test>", "o@x.test"),
                                        (mails[-1][0], "m@x.test")])
        assert f".{mine}." in mails[-1][0]


async def test_notice_subject_and_body_on_postgresql(pg_settings: Settings, pg_url: str,
                                                     clock: FakeClock) -> None:
    end = T0 + 2 * DAY + 0.5
    async with Engine(pg_settings, run=[], clock=clock) as engine:
        pid = await engine.lifecycle.add_project(name="Two\nlines\u2028here", owner="a@x.test",
                                                 subscription_end=end)
        assert (await engine.lifecycle.check())["sent"] == {"7days": 1}
    [(message_id, subject, body, recipients)] = query(
        pg_url, "SELECT message_id, subject, body, recipients FROM email_jobs")
    assert subject == "Your subscription for Two lines here ends in 7 days"
    assert "ends on 2027-01-17 08:00 UTC." in body
    assert message_id == f"<lifecycle.project.{pid}.7days.{end!r}@{message_id.split('@')[1]}"
    assert recipients == '["a@x.test"]'


# ---- videos -----------------------------------------------------------------------------------


async def until_waiting(url: str, n: int, tasks: list[asyncio.Task[Any]], what: str) -> None:
    deadline = time.monotonic() + 30
    while await lock_waiters(url) < n:
        assert not any(t.done() for t in tasks), f"{what}: one finished without waiting"
        assert time.monotonic() < deadline, f"{what}: fewer than {n} waited on the lock"
        await asyncio.sleep(0.02)


async def test_a_video_mark_committed_during_a_pass_is_not_lost(
        pg_settings: Settings, pg_url: str, clock: FakeClock) -> None:
    async with Engine(pg_settings, run=[], clock=clock) as engine:
        first = await engine.lifecycle.add_portrait(title="a", owner="a@x.test",
                                                    subscription_end=None)
        later = await engine.lifecycle.add_portrait(title="b", owner="b@x.test",
                                                    subscription_end=None)
        await engine.video.add_video(portrait_id=first, title="first")
        assert (await engine.video.check())["activated"] == 1
        clock.advance(60)
        async with held(pg_url, "video_dirty") as conn:
            task = asyncio.create_task(engine.video.check())
            await until_blocked(pg_url, task, "the video pass")
            # Another process adds a video (its trigger marks the portrait) and commits.
            await conn.execute("INSERT INTO videos (portrait_id, title, position, created_at)"
                               " VALUES (%s, 'late', 0, 0)", (later,))
        assert (await task)["status"] == "ok"
        clock.advance(60)
        assert (await engine.video.check())["status"] == "ok"
        assert query(pg_url, "SELECT status FROM videos WHERE portrait_id = ?", (later,)) == [
            ("active",)], "the mark committed during the pass was deleted unprocessed"


async def test_concurrent_adds_to_one_portrait_get_distinct_positions(
        pg_settings: Settings, pg_url: str, clock: FakeClock) -> None:
    async with Engine(pg_settings, run=[], clock=clock) as engine:
        portrait = await engine.lifecycle.add_portrait(title="p", owner="p@x.test",
                                                       subscription_end=None)
        await engine.video.add_video(portrait_id=portrait, title="v0")
        async with held(pg_url, "videos"):
            tasks = [asyncio.create_task(engine.video.add_video(portrait_id=portrait,
                                                                title=f"v{i}"))
                     for i in range(1, 6)]
            await until_waiting(pg_url, 5, tasks, "add_video")
        ids = await asyncio.gather(*tasks)
    positions = dict(query(pg_url, "SELECT id, position FROM videos"))
    assert sorted(positions[i] for i in ids) == [1, 2, 3, 4, 5]


# ---- leases and the server's clock ------------------------------------------------------------


async def test_skewed_hosts_neither_steal_live_leases_nor_wait_on_dead_ones(
        pg_url: str) -> None:
    from vertex_tui.engine.store import engines as engines_store
    from vertex_tui.engine.store import leases as store
    from vertex_tui.engine.store.pg import PgDatabase

    db = await PgDatabase.open(pg_url)
    try:
        real = time.time()
        ahead, behind = real + 3600, real - 3600  # the clocks of two hosts, an hour off
        # The slow host holds a live lease; the fast one must not take it.
        assert await store.acquire(db, "video", "slow:1:a", behind, behind + 60)
        assert not await store.acquire(db, "video", "fast:2:b", ahead, ahead + 60)
        assert await store.holder(db, "video", ahead) == "slow:1:a"
        assert await store.live_owners(db, ahead) == ["slow:1:a"]
        # The fast host's short lease dies; the slow host takes it at once, not an hour on.
        assert await store.acquire(db, "backup", "fast:2:b", ahead, ahead + 0.5)
        assert await store.acquire(db, "engine:fast:2:b", "fast:2:b", ahead, ahead + 0.5)
        assert await store.holder(db, "backup", behind) == "fast:2:b"
        await asyncio.sleep(0.7)
        assert await store.holder(db, "backup", behind) is None
        assert await engines_store.heartbeat_stale(db, "fast:2:b", behind)
        assert await store.acquire(db, "backup", "slow:1:a", behind, behind + 60)
        assert await store.alive_engines(db, behind) == []
        # An expiry is the server's time plus the ttl, whatever the caller's clock said.
        [(acquired, expires)] = await db.read(
            "SELECT acquired_at, expires_at FROM leases WHERE name = 'backup'")
        assert abs(acquired - time.time()) < 60 and expires - acquired == pytest.approx(60)
    finally:
        await db.close()


# ---- doctor -------------------------------------------------------------------------------------


async def test_doctor_judges_leases_on_the_servers_clock_and_by_heartbeat(
        pg_settings: Settings, pg_url: str) -> None:
    from vertex_tui.engine.doctor import examine

    real = time.time()
    for name, owner, expires in [
            ("engine:far:1:dead", "far:1:dead", real - 5),  # its heartbeat went stale
            ("backup:database", "far:1:dead", real + 6 * H),  # outlives its dead holder
            ("engine:near:2:live", "near:2:live", real + 30),
            ("lifecycle", "near:2:live", real + 300),
            ("video", "gone:3:x", real - 1)]:  # plainly expired
        query(pg_url, "INSERT INTO leases (name, owner, acquired_at, expires_at)"
              " VALUES (?, ?, ?, ?)", (name, owner, real - 60, expires))
    # This host's clock runs an hour ahead: on it every lease would look expired.
    report = await examine(pg_settings, FakeClock(real + H))
    assert sorted(r.name for r in report.stale_leases) == [
        "backup:database", "engine:far:1:dead", "video"]
    assert report.server is not None and "integrity" in report.to_json()
