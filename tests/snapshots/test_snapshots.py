"""Snapshots of every console screen (SVG baselines in __snapshots__/).

Frozen: the engine's clock is a FakeClock at a fixed instant, the data is seeded the same way
every time (mail delivered to a real loopback sink at fixed fake times), the paths are
relative to the test's folder, and what is measured (backup sizes and durations) is set to
fixed values afterwards. The console runs attached to the database, next to a heartbeat of
an engine that is alive (a fixed owner name), as an operator sees a healthy system.

snap_compare runs the app on a loop of its own, so the app opens its engine in `on_load`
(before any screen asks it for data) and closes it in `on_unmount`. Review the report
before running `pytest --snapshot-update`.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from textual.pilot import Pilot

from vertex_tui.app import VertexApp
from vertex_tui.engine.builtin import builtin_registry
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import Settings

if TYPE_CHECKING:
    from conftest import TestSink

NOW = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
MINUTE, HOUR, DAY = 60.0, 3600.0, 86_400.0
PEER = "ops-1:4242:0a1b2c3d"  # the engine that runs the services (a fixed name)
WIDE, SMALL = (120, 40), (80, 24)

SUBJECTS = ("Your portrait is ready", "Receipt for your order", "Welcome to Vertex AR",
            "Your animation was updated")


def mail(n: int, to: str | None = None) -> dict[str, str]:
    return {"to": to or f"user{n}@example.org", "subject": f"{SUBJECTS[n % 4]} #{n}",
            "body": "Hello from Vertex AR.\n"}


async def deliver(settings: Settings, clock: FakeClock, messages: Iterable[dict[str, str]],
                  ) -> None:
    """Enqueue and let one worker deliver (or see refused) every message, at `clock` time."""
    async with Engine(settings, run=["email"], clock=clock, owner=PEER) as engine:
        await engine.email.enqueue_many(list(messages))
        for _ in range(2000):
            stats = await engine.email.stats()
            if stats.pending == 0 and stats.sending == 0:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("the sink did not take the seeded mail in 20 s")


async def seed(settings: Settings) -> None:
    """Projects, portraits, videos, mail, backups and passes, at fixed fake times."""
    clock = FakeClock(NOW - 3 * DAY)
    portraits = settings.storage_dir / "portraits"
    portraits.mkdir(parents=True)
    for i in range(3):
        (portraits / f"portrait-{i}.jpg").write_bytes(bytes([i]) * 4096)
    async with Engine(settings, run=[], clock=clock, owner=PEER) as engine:
        lc, video = engine.lifecycle, engine.video
        museum = await lc.add_project(name="Museum", owner="museum@example.org",
                                      subscription_end=NOW + 40 * DAY)
        gallery = await lc.add_project(name="Gallery", owner="gallery@example.org",
                                       subscription_end=NOW + 5 * DAY)
        ends = [-20, -2, 0.5, 3, 6, 12, 30, 90]
        for n, off in enumerate(ends):
            portrait = await lc.add_portrait(
                title=f"Portrait {n + 1}", owner=f"owner{n + 1}@example.org",
                project_id=(museum, gallery)[n % 2], subscription_end=NOW + off * DAY)
            mode = ("cyclic", "sequential", "none")[n % 3]
            for k in range(1 + n % 3):
                start = NOW - 2 * DAY + k * HOUR if k else None
                end = NOW + (k + 1) * 3 * HOUR if k == 2 else None
                await video.add_video(portrait_id=portrait, title=f"Clip {n + 1}.{k + 1}",
                                      start=start, end=end, rotation=mode)
        for kind in ("database", "storage", "full"):
            await engine.backup.run(kind, trigger="schedule")
            clock.advance(HOUR)
    # Mail sent and refused over the last hour, so the sparkline has a shape.
    clock.set(NOW - 58 * MINUTE)
    number = 0
    for step, count in enumerate((3, 6, 2, 8, 5, 4, 7, 3, 6, 2, 5)):
        batch = [mail(number + i, to=f"bounce{number + i}@example.org" if i == 1 and step % 4
                      == 0 else None) for i in range(count)]
        number += count
        await deliver(settings, clock, batch)
        clock.advance(3 * MINUTE)
    async with Engine(settings, run=[], clock=clock, owner=PEER) as engine:
        clock.set(NOW - 20 * MINUTE)
        await engine.backup.run("drill", trigger="schedule")
        clock.set(NOW - 10 * MINUTE)
        await engine.lifecycle.check()
        clock.set(NOW - 5 * MINUTE)
        await engine.video.check()
        clock.set(NOW - 2 * MINUTE)
        await engine.email.enqueue_many([mail(number + i) for i in range(4)])
    freeze_measurements(settings.db_path)


def freeze_measurements(db_path: Path) -> None:
    """What was measured (not decided) varies run to run: set it to fixed values, and make
    every Message-ID and lease look the same each time. The engine that seeded the data
    keeps a heartbeat, as a running engine does."""
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute("UPDATE backups SET duration = 0.25 + id / 100.0,"
                         " size = 40960 * id, verify_seconds = 0.01, sha256 = printf('%064d', id)")
            conn.execute("UPDATE restore_drills SET duration = 0.5")
            conn.execute("UPDATE service_runs SET counts = json_remove(counts, '$.seconds')")
            conn.execute("UPDATE email_jobs SET message_id = printf('<%d.seed@vertex.test>', id)")
            conn.execute("UPDATE audit_log SET actor = 'operator'")  # the Log screen shows it
            conn.execute("DELETE FROM leases")
            conn.execute("INSERT INTO leases (name, owner, acquired_at, expires_at)"
                         " VALUES (?, ?, ?, ?), ('lifecycle', ?, ?, ?), ('video', ?, ?, ?)",
                         (f"engine:{PEER}", PEER, NOW - DAY, NOW + 365 * DAY,
                          PEER, NOW - DAY, NOW + 365 * DAY, PEER, NOW - DAY, NOW + 365 * DAY))
    finally:
        conn.close()


class SnapshotApp(VertexApp):
    """The console on an engine it opens itself on the app's own loop (snap_compare runs
    the app; an engine opened on another loop cannot be used from this one)."""

    def __init__(self, settings: Settings) -> None:
        self._stack = AsyncExitStack()
        # The built-in services only: a plug-in installed in the test's venv must not redraw
        # the baselines.
        engine = Engine(settings, run=[], clock=FakeClock(NOW), owner="console:1:snapshot",
                        registry=builtin_registry())
        super().__init__(engine, attached=True, live_refresh=False)

    async def on_load(self) -> None:
        await self._stack.enter_async_context(self.engine)

    async def on_unmount(self) -> None:
        await self._stack.aclose()


# What the running engine (PEER) publishes of its jobs: schedule, enabled, next run.
PUBLISHED = {
    "email.reap": ("every 1 s", True, NOW + 1),
    "video.check": ("every 300 s", True, NOW + 100),
    "lifecycle.check": ("every 3600 s", True, NOW + 50 * MINUTE),
    "backup.database": ("cron 0 2 * * *", True, NOW + 18 * HOUR),
    "backup.rotation": ("cron 0 4 * * *", True, NOW + 20 * HOUR),
    "backup.storage": ("cron 0 3 * * 0", True, NOW + 43 * HOUR),
    "backup.full": ("cron 0 3 * * 0", True, NOW + 43 * HOUR),
    "backup.drill": ("cron 30 4 * * 0", False, None),
}


def publish_schedule(db_path: Path, paused: Iterable[str]) -> None:
    """The schedule PEER publishes with its heartbeat, and jobs an operator paused."""
    doc = {name: {"schedule": schedule, "enabled": enabled, "paused": name in paused,
                  "next_run": None if name in paused else at, "params": {}}
           for name, (schedule, enabled, at) in PUBLISHED.items()}
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute("INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)",
                         (f"schedule:{PEER}", json.dumps(doc, sort_keys=True), NOW - 5))
            conn.executemany(
                "INSERT INTO engine_flags (name, value, updated_at) VALUES (?, ?, ?)",
                [(f"job_paused:{name}", json.dumps({"by": "ops"}), NOW - HOUR)
                 for name in paused])
            # The runs' durations and backup sizes were measured: fixed values instead.
            conn.execute("UPDATE service_runs SET finished_at = started_at + 0.5 + id / 100.0,"
                         " counts = CASE WHEN json_extract(counts, '$.bytes') IS NULL"
                         " THEN counts ELSE json_set(counts, '$.bytes', 40960 * id) END")
    finally:
        conn.close()


def settled(*keys: str) -> Callable[[Pilot[Any]], Any]:
    """run_before: wait for every worker (snapshots, the engine check), press `keys`, wait."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()

    return run_before


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        settings_factory: Callable[..., Settings], sink_550: TestSink) -> SnapshotApp:
    """A console on seeded data; paths are relative to tmp_path (the working folder)."""
    monkeypatch.chdir(tmp_path)
    settings = settings_factory(
        sink=sink_550, db_path=Path("vertex.db"), storage_dir=Path("storage"),
        backup_dir=Path("backups"), backup_storage_enabled=True, timezone="UTC")
    asyncio.run(seed(settings))
    return SnapshotApp(settings)


@pytest.fixture
def jobs_app(app: SnapshotApp) -> SnapshotApp:
    """The same console, with the engine's published schedule and one job paused."""
    publish_schedule(app.engine.settings.db_path, paused=["backup.storage"])
    return app


# Every screen at 80x24 (the smallest terminal it must serve) and 120x40 (a wide one).
SCREENS = {"dashboard": (), "email_queue": ("e",), "backups": ("b",), "lifecycle": ("l",),
           "videos": ("v",), "log": ("o",)}
SIZES = {"80x24": SMALL, "120x40": WIDE}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("screen", list(SCREENS))
def test_screen(snap_compare: Any, app: SnapshotApp, screen: str, size: str) -> None:
    assert snap_compare(app, terminal_size=SIZES[size], run_before=settled(*SCREENS[screen]))


@pytest.mark.parametrize("size", list(SIZES))
def test_help_on_the_email_screen(snap_compare: Any, app: SnapshotApp, size: str) -> None:
    assert snap_compare(app, terminal_size=SIZES[size], run_before=settled("e", "question_mark"))


def test_email_queue_failed_filter(snap_compare: Any, app: SnapshotApp) -> None:
    assert snap_compare(app, terminal_size=WIDE, run_before=settled("e", "5"))


def test_email_queue_paused_80x24(snap_compare: Any, app: SnapshotApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settled("e", "p")(pilot)
        pilot.app.clear_notifications()  # its toast lasts a few (real) seconds
        await pilot.pause()

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def test_email_retry_all_dialog(snap_compare: Any, app: SnapshotApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settled("e")(pilot)
        await pilot.press("R")
        for _ in range(500):
            if pilot.app.screen.query("#dialog-message"):
                break
            await pilot.pause(0.01)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SMALL, run_before=run_before)


def test_email_job_detail(snap_compare: Any, app: SnapshotApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settled("e", "5")(pilot)
        await pilot.press("enter")
        for _ in range(500):
            if pilot.app.screen.query("#dialog-body"):
                break
            await pilot.pause(0.01)
        await pilot.pause()

    assert snap_compare(app, terminal_size=WIDE, run_before=run_before)


def test_jobs(snap_compare: Any, jobs_app: SnapshotApp) -> None:
    assert snap_compare(jobs_app, terminal_size=WIDE, run_before=settled("j"))


def test_jobs_80x24(snap_compare: Any, jobs_app: SnapshotApp) -> None:
    assert snap_compare(jobs_app, terminal_size=SMALL, run_before=settled("j"))


def test_job_history(snap_compare: Any, jobs_app: SnapshotApp) -> None:
    async def run_before(pilot: Pilot[Any]) -> None:
        await settled("j")(pilot)
        table = pilot.app.screen.query_one("#jobs-table")
        for _ in range(500):  # the Jobs screen's first load (a lazily built screen)
            if table.row_count == len(PUBLISHED):  # type: ignore[attr-defined]
                break
            await pilot.pause(0.01)
        await settled()(pilot)
        for _ in range(len(PUBLISHED)):
            if pilot.app.screen.selected_job() == "backup.database":  # type: ignore[attr-defined]
                break
            await pilot.press("down")
        await settled("h")(pilot)
        for _ in range(500):
            if pilot.app.screen.query("#history-table") and pilot.app.screen.query_one(
                    "#history-table").row_count:  # type: ignore[attr-defined]
                break
            await pilot.pause(0.01)
        await settled()(pilot)

    assert snap_compare(jobs_app, terminal_size=WIDE, run_before=run_before)


def test_log_search_bad_term_80x24(snap_compare: Any, app: SnapshotApp) -> None:
    """A search with a term the Log screen does not know: one sentence under the box."""
    keys = ["o", "slash", *"service:email status:failed", "enter"]
    assert snap_compare(app, terminal_size=SMALL, run_before=settled(*keys))


def test_jobs_search_80x24(snap_compare: Any, jobs_app: SnapshotApp) -> None:
    """`/` on the Jobs screen: the backup jobs, the summary names the search."""
    keys = ["j", "slash", *"service:backup", "enter"]
    assert snap_compare(jobs_app, terminal_size=SMALL, run_before=settled(*keys))
