"""Palette entries that change something ask exactly what their keys ask (one function
serves both), do nothing on "no", and are refused in a read-only console. Each kind: run a
job now, run a backup job, pause and resume a job, retry all failed mail, drain, cleanup."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from textual.command import CommandPalette
from textual.widgets import Label

from vertex_tui.screens.email_queue import EmailQueueScreen
from vertex_tui.screens.jobs import JobsScreen
from vertex_tui.widgets.dialogs import ConfirmDialog, PromptDialog

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from vertex_tui.app import VertexApp

    from .conftest import Console

SIZE = (120, 30)


def mail(to: str) -> dict[str, str]:
    return {"to": to, "subject": "Hello", "body": "Hi"}


async def dialog(console: Console, pilot: Pilot[Any], kind: type = ConfirmDialog) -> str:
    """Wait for a dialog of `kind`; its message."""
    await console.wait_for(lambda: isinstance(pilot.app.screen, kind),
                           message=f"a {kind.__name__}")
    await pilot.pause()
    return str(pilot.app.screen.query_one("#dialog-message", Label).render())


async def answer(console: Console, pilot: Pilot[Any], key: str) -> None:
    await pilot.press(key)
    await console.wait_for(lambda: not isinstance(pilot.app.screen, ConfirmDialog),
                           message="the dialog to close")
    await console.settle(pilot)


async def key_question(console: Console, pilot: Pilot[Any], mode: str, key: str,
                       job: str | None = None) -> str:
    """What the screen's key asks (answered no)."""
    await pilot.press({"jobs": "j", "email": "e"}[mode])
    await console.settle(pilot)
    if job is not None:
        screen = pilot.app.screen
        assert isinstance(screen, JobsScreen)
        for _ in range(20):
            if screen.selected_job() == job:
                break
            await pilot.press("down")
        assert screen.selected_job() == job
    await pilot.press(key)
    question = await dialog(console, pilot)
    await answer(console, pilot, "n")
    return question


async def palette_answers(console: Console, pilot: Pilot[Any], entry: str, asked: str,
                          key: str) -> None:
    """Run the palette's `entry`: it asks `asked` (what the key asked); answer `key`."""
    await console.palette(pilot, entry)
    assert await dialog(console, pilot) == asked, entry
    await answer(console, pilot, key)


def runs(console: Console, service: str) -> list[tuple[Any, ...]]:
    return console.query("SELECT job, outcome FROM service_runs WHERE service = ?", (service,))


async def test_palette_run_now_asks_as_r_does_and_no_runs_nothing(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        asked = await key_question(console, pilot, "jobs", "r", "lifecycle.check")
        assert asked == "Run lifecycle.check now? (it runs in this process)"
        await palette_answers(console, pilot, "Run lifecycle.check now", asked, "n")
        assert runs(console, "lifecycle") == []  # the code looked: it runs on "yes" below
        await palette_answers(console, pilot, "Run lifecycle.check now", asked, "y")
        await console.wait_for(lambda: runs(console, "lifecycle") == [("pass", "ok")],
                               message="the lifecycle pass")


async def test_palette_backup_job_asks_and_no_makes_no_backup(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        asked = await key_question(console, pilot, "jobs", "r", "backup.database")
        await palette_answers(console, pilot, "Run backup.database now", asked, "n")
        assert console.query("SELECT COUNT(*) FROM backups") == [(0,)]
        await palette_answers(console, pilot, "Run backup.database now", asked, "y")
        await console.wait_for(
            lambda: console.query("SELECT kind, status FROM backups") == [("database", "ok")],
            message="a database backup")
        await console.settle(pilot)


async def test_palette_pause_and_resume_ask_as_p_does(console: Console) -> None:
    engine = await console.engine()
    app = console.app(engine)

    async def paused() -> bool:
        return next(j["paused"] for j in await engine.jobs.snapshot()
                    if j["job"] == "video.check")

    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        asked = await key_question(console, pilot, "jobs", "p", "video.check")
        assert asked == "Pause video.check? It stops running on schedule in every engine."
        await palette_answers(console, pilot, "Pause video.check", asked, "n")
        assert await paused() is False
        assert console.audit("job.pause") == []
        await palette_answers(console, pilot, "Pause video.check", asked, "y")
        assert await paused() is True

        # Already paused: said so, nothing asked, nothing written.
        await console.palette(pilot, "Pause video.check")
        await console.settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog)
        assert ("warning", "video.check is already paused") in console.notes(app)
        assert len(console.audit("job.pause")) == 1

        asked = await key_question(console, pilot, "jobs", "p", "video.check")
        assert asked == "Resume video.check? It runs on schedule again."
        await palette_answers(console, pilot, "Resume video.check", asked, "n")
        assert await paused() is True
        await palette_answers(console, pilot, "Resume video.check", asked, "y")
        assert await paused() is False


async def test_palette_retry_all_and_drain_ask_as_their_keys(console: Console) -> None:
    await console.deliver([mail("bounce1@example.org"), mail("ok@example.org")])
    engine = await console.engine()
    await engine.email.enqueue_many([mail("later@example.org")])  # pending: nobody delivers
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        before = console.statuses()
        assert sorted(before.values()) == ["failed", "pending", "sent"]
        for key, entry in [("R", "Retry all failed mail"), ("D", "Drain the mail queue")]:
            asked = await key_question(console, pilot, "email", key)
            await pilot.press("d")  # away from the Email screen: the entry comes back to it
            await console.settle(pilot)
            await console.palette(pilot, entry)
            assert await dialog(console, pilot) == asked, entry
            await answer(console, pilot, "n")
            assert isinstance(app.screen, EmailQueueScreen)
            assert console.statuses() == before, entry
        assert not [m for _, m in console.notes(app) if "drain" in m]
        # Yes reaches the engine, which runs no workers here and says so as a refusal (a
        # sentence and what to do), not as "Something went wrong".
        await palette_answers(console, pilot, "Drain the mail queue", asked, "y")
        await console.wait_for(
            lambda: [m for _, m in console.notes(app) if "no email workers run" in m],
            message="the drain to reach the engine")
        assert not [m for _, m in console.notes(app) if "went wrong" in m.lower()]


async def test_palette_cleanup_asks_the_count_as_c_does(console: Console) -> None:
    await console.deliver([mail("a@example.org"), mail("b@example.org")])
    console.clock.advance(3 * 86_400)
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        for start in ("C", None):
            if start:
                await pilot.press("e")
                await console.settle(pilot)
                await pilot.press(start)
            else:
                await console.palette(pilot, "Clean up old mail")
            prompt = await dialog(console, pilot, PromptDialog)
            assert prompt == "Delete sent, failed and cancelled mail older than how many days?"
            pilot.app.screen.query_one("#dialog-input").value = "1"
            await pilot.press("enter")
            asked = await dialog(console, pilot)
            assert asked == ("Delete 2 sent, failed or cancelled job(s) finished more than 1 "
                             "days ago?")
            await answer(console, pilot, "n")
            assert console.query("SELECT COUNT(*) FROM email_jobs") == [(2,)]


@pytest.mark.parametrize("entry", [
    "Run lifecycle.check now", "Run backup.database now", "Pause video.check",
    "Resume video.check", "Retry all failed mail", "Drain the mail queue",
    "Clean up old mail", "Pause or resume mail delivery"])
async def test_read_only_palette_entries_are_disabled(console: Console, entry: str) -> None:
    await console.deliver([mail("bounce1@example.org")])
    app: VertexApp = console.app(await console.engine(), attached=True, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        await pilot.press("ctrl+p")
        await console.wait_for(lambda: isinstance(app.screen, CommandPalette),
                               message="the palette")
        await pilot.press("escape")
        shown = await console.palette(pilot, entry)
        assert "disabled: read-only console" in shown[0]
        await console.settle(pilot)
        assert not isinstance(app.screen, ConfirmDialog | PromptDialog)
        assert ("warning", f"{entry}: read-only console: actions are disabled (started with "
                "--read-only)") in console.notes(app)
        assert console.statuses() == {1: "failed"}
        assert console.query("SELECT COUNT(*) FROM service_runs") == [(0,)]
        assert console.query("SELECT COUNT(*) FROM requests") == [(0,)]


async def test_the_mail_pause_entry_toggles_the_state_now_not_a_stale_one(
        console: Console) -> None:
    """Paused by another engine before the Email screen was ever opened: the palette's
    "Pause or resume" opens the screen and must resume (it paused a paused queue: the
    screen's state was its default until its first snapshot)."""
    other = await console.engine()
    await other.email.pause()
    engine = await console.engine()
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        await console.palette(pilot, "Pause or resume mail delivery")
        await console.settle(pilot)
        assert isinstance(app.screen, EmailQueueScreen)  # p asks nothing; neither does this
        assert not (await engine.email.stats()).paused
        assert ("information", "delivery resumed") in console.notes(app)
        await pilot.press("d")
        await console.settle(pilot)
        await console.palette(pilot, "Pause or resume mail delivery")
        await console.settle(pilot)
        assert (await engine.email.stats()).paused
