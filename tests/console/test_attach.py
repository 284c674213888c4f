"""Attach mode: the console without its own services, steering an engine that runs in another
process (`vertex-tui --no-ui`) over the same database, through the requests table."""

from __future__ import annotations

import functools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from vertex_tui.app import header_subtitle
from vertex_tui.engine.clock import SystemClock
from vertex_tui.screens.backups import BackupsScreen
from vertex_tui.widgets.dialogs import ConfirmDialog

if TYPE_CHECKING:
    from vertex_tui.engine.settings import Settings

    from .conftest import Console

pytestmark = pytest.mark.slow

SIZE = (100, 30)
SETTING_PREFIXES = ("VERTEX_", "SMTP_", "EMAIL_", "BACKUP_", "VIDEO_SCHEDULER_", "LIFECYCLE_",
                    "NOTIFY_")


@pytest.fixture
def engine_process(console_settings: Settings, tmp_path: Path
                   ) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Start `python -m vertex_tui --no-ui` on the test database (stopped at teardown)."""
    started: list[subprocess.Popen[bytes]] = []
    s = console_settings

    def start() -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
        env.update({
            "PYTHONUNBUFFERED": "1",
            "VERTEX_DB_PATH": str(s.db_path), "VERTEX_STORAGE_DIR": str(s.storage_dir),
            "VERTEX_BACKUP_DIR": str(s.backup_dir), "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(s.smtp_port), "SMTP_STARTTLS": "false", "EMAIL_QUEUE_WORKERS": "1",
            "EMAIL_POLL_INTERVAL": "0.5", "LIFECYCLE_CHECK_INTERVAL_SECONDS": "3600",
            "VIDEO_SCHEDULER_CHECK_INTERVAL": "3600",
        })
        log = (tmp_path / f"engine-{len(started)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "vertex_tui", "--no-ui"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        log.close()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def engine_log(tmp_path: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("engine-*.log")))


async def test_attached_console_runs_a_backup_in_the_engine_process(
        console: Console, engine_process: Callable[[], subprocess.Popen[bytes]],
        tmp_path: Path) -> None:
    proc = engine_process()
    prefix = f"{socket.gethostname()}:{proc.pid}:"

    def alive() -> list[Any]:
        if proc.poll() is not None:
            pytest.fail(f"the engine process exited:\n{engine_log(tmp_path)}")
        try:
            return console.query("SELECT owner FROM leases WHERE name LIKE 'engine:%'")
        except sqlite3.OperationalError:  # not created or not migrated yet
            return []

    await console.wait_for(alive,
                           message="the engine process's heartbeat")
    assert next(owner for (owner,) in alive()).startswith(prefix)

    # The console's engine runs nothing and uses the real clock, as `vertex-tui --attach`.
    engine = await console.engine(clock=SystemClock())
    app = console.app(engine, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.wait_for(lambda: "engine alive (1)" in app.sub_title,
                               message="the header to see the engine")
        assert app.sub_title == header_subtitle(
            "ATTACHED · engine alive (1) ·", str(console.settings.db_path), SIZE[0],
            len(app.title))
        await pilot.press("b")
        await console.settle(pilot)
        assert isinstance(app.screen, BackupsScreen)
        await pilot.press("t")  # the first job: database
        await console.wait_for(lambda: isinstance(app.screen, ConfirmDialog),
                               message="the confirm dialog")
        await pilot.press("y")
        await console.wait_for(
            lambda: console.query("SELECT outcome FROM requests") == [("ok",)],
            message="the request handled by the engine process", timeout=60)
        await console.settle(pilot)

        (owner, status, path), = console.query("SELECT owner, status, path FROM backups")
        assert owner.startswith(prefix) and owner != engine.owner
        assert status == "ok" and Path(path).is_file()
        (action, args, picked_by, outcome), = console.query(
            "SELECT action, args, picked_by, outcome FROM requests")
        assert (action, args, outcome) == ("backup.run", '{"job": "database"}', "ok")
        assert picked_by.startswith(prefix)
        notes = console.notes(app)
        assert ("information", "database backup: requested from the running engine…") in notes
        assert any(m.startswith(f"database backup: done {path}") for _, m in notes), notes
        # The history on screen is the one the other process wrote.
        assert [r[1] for r in console.rows(pilot, "#backup-history")] == ["database"]

        # The engine stops: the header says so at its next check.
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        app.check_engines()
        await console.wait_for(lambda: "NO ENGINE RUNNING" in app.sub_title,
                               message="the header to see no engine")
        assert app.sub_title == header_subtitle(
            "ATTACHED · NO ENGINE RUNNING ·", str(console.settings.db_path), SIZE[0],
            len(app.title))


async def test_attached_request_nobody_picks_up_stays_pending(
        console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine is alive but does not pick the request up (it serves no requests, or dies
    after the console looked): the console says so instead of hanging or crashing. (With no
    engine alive at all it asks first: tests/console/test_panels.py.)"""
    from vertex_tui import bridge, bridge_requests

    monkeypatch.setattr(bridge, "wait_for_request",
                        functools.partial(bridge_requests.wait_for_request, timeout=1.0))
    await console.engine(run=["video"], clock=SystemClock())  # beats; serves no requests
    engine = await console.engine(clock=SystemClock())
    app = console.app(engine, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.wait_for(lambda: "engine alive (1)" in app.sub_title,
                               message="the header to see the engine")
        await pilot.press("l", "c")
        await console.wait_for(lambda: any(s == "warning" for s, _ in console.notes(app)),
                               message="a warning")
        await console.settle(pilot)
        assert any("no engine picked up the request" in m for _, m in console.notes(app))
        assert console.query("SELECT action, picked_by FROM requests") == [
            ("lifecycle.check", None)]
        assert console.query("SELECT COUNT(*) FROM service_runs WHERE service = 'lifecycle'"
                             ) == [(0,)]
