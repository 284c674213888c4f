"""The same console on SQLite and on PostgreSQL (`backend`): hosted and `--attach`, the
dashboard, the Email screen (list, search, retry, cancel), Jobs, the Log read from the
database and the Backups panel — with Pilot, the database read back after each action."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widgets import DataTable, Label, RichLog, Static

from vertex_tui.app import database_title, header_subtitle
from vertex_tui.engine import events as ev
from vertex_tui.engine.settings import DatabaseUrl
from vertex_tui.screens.backups import BackupsScreen
from vertex_tui.screens.dashboard import DashboardScreen
from vertex_tui.screens.email_queue import EmailQueueScreen
from vertex_tui.screens.jobs import JobsScreen
from vertex_tui.screens.lifecycle import LifecycleScreen
from vertex_tui.screens.log import LogScreen
from vertex_tui.screens.videos import VideosScreen
from vertex_tui.widgets.backup_panel import BackupPanel
from vertex_tui.widgets.dialogs import ConfirmDialog, TextDialog
from vertex_tui.widgets.engines_panel import EnginesPanel
from vertex_tui.widgets.service_card import ServiceCard

if TYPE_CHECKING:
    from collections.abc import Callable

    from textual.pilot import Pilot

    from vertex_tui.engine.settings import Settings

    from .conftest import Console

SIZE = (120, 40)


def mail(to: str, subject: str) -> dict[str, str]:
    return {"to": to, "subject": subject, "body": "Hello from the backend tests.\n"}


async def show(console: Console, pilot: Pilot[Any], key: str, kind: type) -> Any:
    await pilot.press(key)
    await console.wait_for(lambda: isinstance(pilot.app.screen, kind),
                           message=f"the {kind.__name__}")
    await console.settle(pilot)
    return pilot.app.screen


async def confirm(console: Console, pilot: Pilot[Any]) -> str:
    await console.wait_for(lambda: isinstance(pilot.app.screen, ConfirmDialog),
                           message="the confirmation")
    await pilot.pause()
    text = str(pilot.app.screen.query_one("#dialog-message", Label).render())
    await pilot.press("y")
    await console.wait_for(lambda: not isinstance(pilot.app.screen, ConfirmDialog),
                           message="the dialog to close")
    await console.settle(pilot)
    return text


def ids(console: Console, pilot: Pilot[Any]) -> list[int]:
    return [int(row[0].removeprefix("● ")) for row in console.rows(pilot, "#email-jobs")]


async def test_the_hosted_console_on_each_backend(backend_console: Console) -> None:
    console = backend_console
    sent = await console.deliver([mail(f"user{i}@example.org", f"Invoice {i}")
                                  for i in range(3)])
    failed = await console.deliver([mail(f"bounce{i}@example.org", f"Welcome {i}")
                                    for i in range(2)])
    engine = await console.engine()
    await engine.backup.run("database")
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        # The header names the database: the file, or the server and database of the URL.
        url = console.settings.database_url
        if url is None:
            assert app.sub_title == f"engine on {console.settings.db_path}"
        else:
            assert app.sub_title == f"engine on postgresql://{url.masked().split('@')[-1]}"
        assert isinstance(app.screen, DashboardScreen)
        card = app.screen.query_one("#card-email", ServiceCard)
        body = str(card.query_one(".card-body", Static).render())
        assert "failed 2" in body and "sent 3" in body, body

        # Email: the list, a search, retry of the failed ones, cancel of one.
        screen = await show(console, pilot, "e", EmailQueueScreen)
        assert ids(console, pilot) == sorted(sent + failed, reverse=True)
        assert str(screen.query_one("#email-page", Static).render()).startswith(
            "page 1 of 1 · 5 jobs")
        await pilot.press("slash", *"error:mailbox", "enter")
        await console.settle(pilot)
        assert ids(console, pilot) == sorted(failed, reverse=True)
        await pilot.press("enter")  # the detail: every attempt, from this database
        await console.wait_for(lambda: isinstance(app.screen, TextDialog), message="detail")
        await pilot.pause()
        detail = str(app.screen.query_one("#dialog-body", Static).render())
        assert "Status: failed" in detail and "550" in detail and "permanent" in detail, detail
        await pilot.press("escape")
        await console.settle(pilot)
        await pilot.press("R")
        assert (await confirm(console, pilot)).startswith(
            "Retry all 2 failed job(s) matching 'error:mailbox'?")
        assert {console.job_status(i) for i in failed} == {"pending"}
        await pilot.press("escape")
        await console.settle(pilot)
        table = screen.query_one("#email-jobs", DataTable)
        while screen.selected_job().id != failed[0]:
            await pilot.press("down")
        await pilot.press("x")
        assert (await confirm(console, pilot)).startswith(f"Cancel job {failed[0]} to ")
        assert console.job_status(failed[0]) == "cancelled"
        assert table.row_count == 5

        # Jobs: every job of every service, from this database.
        await show(console, pilot, "j", JobsScreen)
        names = {row[4] for row in console.rows(pilot, "#jobs-table")}
        assert {"backup.database", "lifecycle.check", "video.check", "email.reap"} <= names

        # Backups: the panel and the history of this database's backups.
        backups = await show(console, pilot, "b", BackupsScreen)
        history = console.rows(pilot, "#backup-history")
        assert [(row[1], row[3]) for row in history] == [("database", "ok")]
        panel = str(backups.query_one(BackupPanel).render())
        assert "database" in panel and "OK" in panel, panel
        # The restore command names this database's variable (a URL's password never shown).
        await pilot.press("tab", "R")
        await console.wait_for(lambda: isinstance(app.screen, TextDialog), message="restore")
        await pilot.pause()
        body = str(app.screen.query_one("#dialog-body", Static).render())
        url = console.settings.database_url
        if url is None:
            assert f"VERTEX_DB_PATH={console.settings.db_path} vertex-tui backup restore" in body
        else:
            assert "VERTEX_DATABASE_URL=… vertex-tui backup restore" in body
            assert url.reveal() not in body and str(console.settings.db_path) not in body
        await pilot.press("escape")


async def test_an_attached_console_reads_the_log_and_acts_on_each_backend(
        backend_console: Console) -> None:
    console = backend_console
    # A full engine elsewhere: alive, and it serves the attached console's requests.
    other = await console.engine(run=None, owner="ops-2:77:feedbeef")
    now = console.clock.time()
    other.events.publish(ev.BackupFinished(at=now - 60, kind="database", ok=False, path=None,
                                           size=None, error="disk full"))
    await other.event_log.flush()
    app = console.app(await console.engine(), attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        assert app.sub_title.startswith("ATTACHED")
        # The dashboard lists the live engine (from the database's heartbeats).
        engines = str(app.screen.query_one(EnginesPanel).render())
        assert "ops-2 pid 77" in engines, engines
        await show(console, pilot, "o", LogScreen)
        lines = [line.text for line in app.screen.query_one(RichLog).lines]
        assert any("database backup failed: disk full" in line for line in lines), lines
        assert any("service video started" in line for line in lines), lines
        # An action attached is a request the running engine performs.
        await show(console, pilot, "j", JobsScreen)
        screen = app.screen
        while screen.selected_job() != "engine.log_prune":
            await pilot.press("down")
        await pilot.press("r")
        await console.wait_for(lambda: isinstance(app.screen, ConfirmDialog),
                               message="the confirmation")
        await pilot.pause()
        assert str(app.screen.query_one("#dialog-message", Label).render()) == (
            "Run engine.log_prune now? (the running engine will run it)")
        await pilot.press("y")

        def handled() -> bool:
            console.clock.advance(1)  # the other engine polls for requests on the fake clock
            return console.query("SELECT action, picked_by, outcome FROM requests") == [
                ("job.run", "ops-2:77:feedbeef", "ok")]

        await console.wait_for(handled, message="the request run by the other engine")
        await console.settle(pilot)
        assert any(m.startswith("engine.log_prune: ") for _, m in console.notes(app))


def test_the_header_masks_the_password_and_leaves_out_the_parameters(
        settings_factory: Callable[..., Settings]) -> None:
    settings = settings_factory(database_url=DatabaseUrl(
        "postgresql://ops:s3cret@db.example.org:5432/vertex?sslmode=require&password=x"))
    title = database_title(settings)
    assert title == "postgresql://db.example.org:5432/vertex"  # no user, password, options
    # Narrow: the state in full, the URL shortened in the middle, the database name kept.
    line = header_subtitle("ATTACHED · engine alive (2) ·", title, 80, len("vertex-tui"))
    assert line.startswith("ATTACHED · engine alive (2) · post")
    assert line.endswith("/vertex") and "…" in line
    assert header_subtitle("engine on", title, 120, 10) == f"engine on {title}"
    assert database_title(settings_factory()) == str(settings_factory().db_path)


async def test_lifecycle_and_videos_screens_on_each_backend(backend_console: Console) -> None:
    console = backend_console
    engine = await console.engine()
    now = console.clock.time()
    portrait = await engine.lifecycle.add_portrait(
        title="Soon", owner="owner@example.org",
        subscription_end=now + 47 * 3600 + 59 * 60 + 50)
    await engine.video.add_video(portrait_id=portrait, title="Clip 1")
    await engine.video.add_video(portrait_id=portrait, title="Clip 2", start=now + 3 * 3600)
    for job in ("lifecycle.check", "video.check"):
        assert (await engine.jobs.run(job))["status"] == "ok", job
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        await show(console, pilot, "l", LifecycleScreen)
        upcoming = console.rows(pilot, "#lifecycle-upcoming")
        assert [(row[1], row[2], row[4]) for row in upcoming] == [
            ("in 1 day 23 hours", "portrait", "Soon")]
        await show(console, pilot, "v", VideosScreen)
        counts = str(app.screen.query_one("#video-counts", Static).render())
        assert "scheduled 1   active 1" in counts, counts
        changes = console.rows(pilot, "#video-upcoming")
        assert [(row[1], row[4]) for row in changes] == [("in 3 hours", "Clip 2")], changes
