"""The console with Pilot: every binding and dialog, asserting what it changed on screen and
in the database (the engine's state), not only that nothing crashed."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from rich.console import Console as RichConsole
from textual.widgets import Input, Label, Static

from vertex_tui.app import header_subtitle
from vertex_tui.screens.backups import BackupsScreen
from vertex_tui.screens.dashboard import DashboardScreen
from vertex_tui.screens.email_queue import PAGE, EmailQueueScreen
from vertex_tui.screens.lifecycle import LifecycleScreen
from vertex_tui.screens.log import LogScreen
from vertex_tui.screens.videos import VideosScreen
from vertex_tui.widgets.dialogs import ConfirmDialog, PromptDialog, TextDialog
from vertex_tui.widgets.keyshelp import KeysHelp

if TYPE_CHECKING:
    from conftest import TestSink
    from textual.pilot import Pilot

    from .conftest import Console

SIZE = (100, 30)
DAY = 86_400.0


def mail(to: str, subject: str = "Hello") -> dict[str, str]:
    return {"to": to, "subject": subject, "body": "Hello from the console tests.\n"}


def text_of(widget: Label | Static) -> str:
    return str(widget.render())


def dialog_message(pilot: Pilot[Any]) -> str:
    return text_of(pilot.app.screen.query_one("#dialog-message", Label))


def dialog_body(pilot: Pilot[Any]) -> str:
    return text_of(pilot.app.screen.query_one("#dialog-body", Static))


async def wait_screen(console: Console, pilot: Pilot[Any], kind: type) -> None:
    await console.wait_for(lambda: isinstance(pilot.app.screen, kind),
                           message=f"the {kind.__name__}")
    await pilot.pause()


# ---- navigation, help, palette, quit ---------------------------------------------------------


async def test_screen_keys_switch_screens(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        for key, kind in (("e", EmailQueueScreen), ("b", BackupsScreen),
                          ("l", LifecycleScreen), ("v", VideosScreen), ("o", LogScreen),
                          ("d", DashboardScreen), ("e", EmailQueueScreen)):
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, kind), key
        await console.settle(pilot)
        assert console.notes(app) == []
        assert app.sub_title == header_subtitle("engine on", str(console.settings.db_path),
                                                SIZE[0], len(app.title))


async def test_q_quits(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        await pilot.press("q")
        await console.wait_for(lambda: not app.is_running, message="the app to exit")
    assert app.return_code == 0


async def test_question_mark_shows_and_hides_help_on_every_screen(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        for key in "deblvo":
            await pilot.press(key)
            await pilot.pause()
            assert not app.screen.query(KeysHelp)
            await pilot.press("question_mark")
            await pilot.pause()
            assert app.screen.query(KeysHelp), f"no help on screen {key}"
            await pilot.press("question_mark")
            await pilot.pause()
            assert not app.screen.query(KeysHelp), f"help stays on screen {key}"


async def test_help_lists_the_keys_of_the_screen_first(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("e")
        await console.settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        body = app.screen.query_one("KeysHelp .help-body", Static)
        out = RichConsole(file=io.StringIO(), width=200, color_system=None)
        out.print(body.render())
        lines = [" ".join(line.split()) for line in out.file.getvalue().splitlines()]
        own = ["/ search: text, status:, to:, subject:, error:, id:, older:, newer:",
               "r retry the marked jobs, else the selected one (asks for several)",
               "R retry all failed jobs matching the filter (asks)",
               "x cancel the marked jobs, else the selected one (asks)",
               "D deliver all mail due now (asks)",
               "C delete old finished mail (asks)", "3 show jobs claimed by a worker"]
        for line in [*own, "e Email queue", "o Log", "? close this help", "q quit",
                     "↓ Cursor down"]:
            assert line in lines, line
        # This screen's keys come first, the table's cursor keys last.
        assert lines[0] == "Email queue keys"
        assert max(lines.index(line) for line in own) < lines.index("Screens")
        assert lines.index("Anywhere") < lines.index("In the table") < lines.index(
            "↓ Cursor down")
        assert not any("Copy selected text" in line for line in lines)


async def palette_run(pilot: Pilot[Any], console: Console, text: str) -> None:
    await console.palette(pilot, text)


async def palette_yes(pilot: Pilot[Any], console: Console, text: str) -> None:
    """A palette entry that acts, and "yes" in the dialog it opens (as its key does)."""
    await console.palette(pilot, text)
    await wait_screen(console, pilot, ConfirmDialog)
    assert dialog_message(pilot).startswith(text.removesuffix(" now") + " now?")
    await pilot.press("y")


async def test_palette_retry_all_failed_mail_asks_with_the_count(console: Console) -> None:
    await console.deliver([mail("bounce1@example.org"), mail("bounce2@example.org"),
                           mail("ok@example.org")])
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        await palette_run(pilot, console, "Retry all failed mail")
        await wait_screen(console, pilot, ConfirmDialog)
        assert dialog_message(pilot).startswith(
            "Retry all 2 failed job(s) in the whole queue (no filter)?")
        await pilot.press("y")
        await wait_screen(console, pilot, EmailQueueScreen)
        await console.settle(pilot)
        assert sorted(console.statuses().values()) == ["pending", "pending", "sent"]
        assert ("information", "2 job(s) queued again") in console.notes(app)


async def test_palette_switches_screens_and_runs_a_lifecycle_check(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        await palette_run(pilot, console, "Switch to Backups")
        await wait_screen(console, pilot, BackupsScreen)
        await palette_yes(pilot, console, "Run lifecycle.check now")
        await console.wait_for(
            lambda: console.query("SELECT outcome FROM service_runs WHERE service = ?",
                                  ("lifecycle",)) == [("ok",)],
            message="a lifecycle pass recorded")
        await console.settle(pilot)
        assert any(m.startswith("lifecycle.check: done") for _, m in console.notes(app))


async def test_palette_triggers_a_backup_job(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        await palette_yes(pilot, console, "Run backup.database now")
        await console.wait_for(
            lambda: console.query("SELECT kind, status FROM backups") == [("database", "ok")],
            message="a database backup")
        await console.settle(pilot)


# ---- email queue screen ---------------------------------------------------------------------


async def mixed_queue(console: Console) -> dict[str, list[int]]:
    """3 jobs sent and 2 failed (the sink answers 550 to bounce* recipients)."""
    sent = await console.deliver([mail(f"user{i}@example.org", f"Invoice {i}")
                                  for i in range(3)])
    failed = await console.deliver([mail(f"bounce{i}@example.org", f"Welcome {i}")
                                    for i in range(2)])
    return {"sent": sent, "failed": failed}


async def email_screen(console: Console, pilot: Pilot[Any]) -> EmailQueueScreen:
    await pilot.press("e")
    await console.settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, EmailQueueScreen)
    return screen


async def test_status_filters_show_only_that_status(console: Console) -> None:
    await mixed_queue(console)
    engine = await console.engine()
    pending = await engine.email.enqueue_many([mail(f"later{i}@example.org") for i in range(4)])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        assert len(console.rows(pilot, "#email-jobs")) == 9
        for key, status, count in (("2", "pending", 4), ("5", "failed", 2), ("4", "sent", 3),
                                   ("3", "sending", 0)):
            await pilot.press(key)
            await console.settle(pilot)
            rows = console.rows(pilot, "#email-jobs")
            assert len(rows) == count, key
            assert {r[1] for r in rows} <= {status}
        await pilot.press("2")
        await console.settle(pilot)
        assert [int(r[0]) for r in console.rows(pilot, "#email-jobs")] == sorted(
            pending, reverse=True)
        await pilot.press("1")
        await console.settle(pilot)
        assert len(console.rows(pilot, "#email-jobs")) == 9


async def test_search_filters_rows_and_escape_clears_it(console: Console) -> None:
    await mixed_queue(console)
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        screen = await email_screen(console, pilot)
        box = screen.query_one("#email-search", Input)
        assert not box.display
        await pilot.press("slash")
        await pilot.pause()
        assert box.display and app.focused is box
        await pilot.press(*"Welcome", "enter")
        await console.settle(pilot)
        rows = console.rows(pilot, "#email-jobs")
        assert len(rows) == 2 and all(r[5].startswith("Welcome") for r in rows)
        assert "matching 'Welcome'" in text_of(screen.query_one("#email-page", Static))
        # Filters combine with the search.
        await pilot.press("4")
        await console.settle(pilot)
        assert console.rows(pilot, "#email-jobs") == []
        await pilot.press("1", "escape")
        await console.settle(pilot)
        assert len(console.rows(pilot, "#email-jobs")) == 5
        assert screen.search == "" and not box.display and box.value == ""


async def test_brackets_page_through_more_than_one_page(console: Console) -> None:
    engine = await console.engine()
    ids = await engine.email.enqueue_many([mail(f"u{i}@example.org") for i in range(PAGE + 7)])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        screen = await email_screen(console, pilot)
        first = [int(r[0]) for r in console.rows(pilot, "#email-jobs")]
        assert first == sorted(ids, reverse=True)[:PAGE]
        await pilot.press("right_square_bracket")
        await console.settle(pilot)
        second = [int(r[0]) for r in console.rows(pilot, "#email-jobs")]
        assert second == sorted(ids, reverse=True)[PAGE:]
        assert "page 2 of 2 · 57 jobs" in text_of(screen.query_one("#email-page", Static))
        # A short page is the last one: ] stays, [ goes back.
        await pilot.press("right_square_bracket")
        await console.settle(pilot)
        assert [int(r[0]) for r in console.rows(pilot, "#email-jobs")] == second
        await pilot.press("left_square_bracket")
        await console.settle(pilot)
        assert [int(r[0]) for r in console.rows(pilot, "#email-jobs")] == first


async def test_enter_opens_job_detail_with_message_id_and_attempt_errors(
        console: Console) -> None:
    jobs = await mixed_queue(console)
    engine = await console.engine()
    detail = await engine.email.get_job(jobs["failed"][-1])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("5")
        await console.settle(pilot)
        assert console.rows(pilot, "#email-jobs")[0][0] == str(jobs["failed"][-1])
        await pilot.press("enter")
        await wait_screen(console, pilot, TextDialog)
        body = dialog_body(pilot)
        assert f"Message-ID: {detail.job.message_id}" in body
        assert "550" in body and "bounce1@example.org" in body
        assert "mailbox unavailable" in body
        assert "Finished: " in body and "Next attempt" not in body
        await pilot.press("escape")
        await wait_screen(console, pilot, EmailQueueScreen)


async def test_a_pending_job_detail_says_when_it_is_tried_next(console: Console) -> None:
    engine = await console.engine()
    job_id = await engine.email.enqueue(**mail("later@example.org"))
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        assert console.rows(pilot, "#email-jobs")[0][0] == str(job_id)
        await pilot.press("enter")
        await wait_screen(console, pilot, TextDialog)
        body = dialog_body(pilot)
        assert "Next attempt: " in body and "(due now)" in body
        assert "Attempts:\n  none yet" in body


async def test_r_retries_the_selected_failed_job(console: Console) -> None:
    jobs = await mixed_queue(console)
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("5")
        await console.settle(pilot)
        await pilot.press("down")  # the second failed row: the older job
        await pilot.press("r")
        first_failed = jobs["failed"][0]
        await console.wait_for(lambda: console.job_status(first_failed) == "pending",
                               message="the selected job queued again")
        await console.settle(pilot)
        assert console.job_status(jobs["failed"][1]) == "failed"
        assert console.audit("email.retry")[-1][1]["ids"] == [first_failed]
        assert [r[0] for r in console.rows(pilot, "#email-jobs")] == [str(jobs["failed"][1])]


async def test_r_on_a_job_that_is_not_failed_changes_nothing(console: Console) -> None:
    jobs = await mixed_queue(console)
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("4", "r")
        await console.settle(pilot)
        assert ("warning", f"job {jobs['sent'][-1]} is sent, not failed or cancelled") in (
            console.notes(app))
        assert console.audit("email.retry") == []


async def test_R_retries_exactly_the_failed_jobs_the_dialog_named(console: Console) -> None:
    jobs = await mixed_queue(console)
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("R")
        await wait_screen(console, pilot, ConfirmDialog)
        assert dialog_message(pilot).startswith(
            "Retry all 2 failed job(s) in the whole queue (no filter)?")
        # Another job fails while the operator reads the dialog: not part of what was asked.
        late = await console.deliver([mail("bounce-late@example.org")])
        assert console.job_status(late[0]) == "failed"
        await pilot.press("y")
        await wait_screen(console, pilot, EmailQueueScreen)
        await console.wait_for(lambda: console.audit("email.retry"), message="the retry")
        await console.settle(pilot)
        assert [console.job_status(i) for i in jobs["failed"]] == ["pending", "pending"]
        assert console.job_status(late[0]) == "failed"
        assert console.audit("email.retry") == [
            (2, {"ids": jobs["failed"], "requested": jobs["failed"], "limit": None})]
        assert ("information", "2 job(s) queued again") in console.notes(app)


async def test_R_then_n_retries_nothing(console: Console) -> None:
    jobs = await mixed_queue(console)
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("R")
        await wait_screen(console, pilot, ConfirmDialog)
        await pilot.press("n")
        await wait_screen(console, pilot, EmailQueueScreen)
        await console.settle(pilot)
        assert [console.job_status(i) for i in jobs["failed"]] == ["failed", "failed"]
        assert console.audit("email.retry") == []


async def test_R_with_nothing_failed_says_so_without_a_dialog(console: Console) -> None:
    await console.deliver([mail("ok@example.org")])
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("R")
        await console.settle(pilot)
        assert isinstance(app.screen, EmailQueueScreen)
        assert ("information", "no failed mail to retry") in console.notes(app)


async def test_p_pauses_and_resumes_delivery(console: Console) -> None:
    engine = await console.engine(run=["email"])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        screen = await email_screen(console, pilot)
        assert not (await engine.email.stats()).paused
        await pilot.press("p")
        await console.wait_for(lambda: console.audit("email.pause"), message="a pause")
        await console.settle(pilot)
        assert (await engine.email.stats()).paused
        assert screen.has_class("-paused")
        assert "PAUSED" in text_of(screen.query_one("#email-counts", Static))
        await pilot.press("p")
        await console.wait_for(lambda: console.audit("email.resume"), message="a resume")
        await console.settle(pilot)
        assert not (await engine.email.stats()).paused
        assert not screen.has_class("-paused")
        assert len(console.audit("email.pause")) == 1


async def test_D_drains_the_queue_into_the_sink(console: Console, sink_550: TestSink) -> None:
    engine = await console.engine(run=["email"])
    await engine.email.pause()  # mail waits until the operator drains
    ids = await engine.email.enqueue_many([mail(f"d{i}@example.org") for i in range(5)])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("D")
        await console.settle(pilot)
        # Paused: the drain is refused at once, in a sentence (no dialog, no class name).
        assert isinstance(app.screen, EmailQueueScreen)
        assert ("warning", "Drain refused: delivery is paused. Resume it (p) first, then "
                "drain.") in console.notes(app)
        assert not any("Error" in msg for _, msg in console.notes(app))
        assert sink_550.received == []
        await pilot.press("p")  # resume, then drain
        await console.wait_for(lambda: console.audit("email.resume"), message="a resume")
        await pilot.press("D")
        await wait_screen(console, pilot, ConfirmDialog)
        await pilot.press("y")
        await console.wait_for(lambda: console.audit("email.drain"), message="the drain")
        await console.settle(pilot)
        assert {console.job_status(i) for i in ids} == {"sent"}
        assert sorted(r.recipients[0] for r in sink_550.received) == sorted(
            f"d{i}@example.org" for i in range(5))
        # What the drain did, in words (the workers may have sent some before it ran).
        assert any(re.fullmatch(r"drain: sent \d, failed 0, retrying 0", m)
                   for _, m in console.notes(app)), console.notes(app)


async def test_D_without_workers_is_a_refusal_that_says_why(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("D", "y")
        await console.settle(pilot)
        assert app.is_running
        notes = console.notes(app)
        assert any(sev == "warning" and msg.startswith("drain: no email workers run")
                   for sev, msg in notes), notes
        assert not [msg for _, msg in notes if "went wrong" in msg.lower()]


async def test_C_cleans_up_old_mail_after_asking_days_and_confirmation(
        console: Console) -> None:
    await mixed_queue(console)
    console.clock.advance(40 * DAY)
    engine = await console.engine()
    fresh = await console.deliver([mail("fresh@example.org")])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("C")
        await wait_screen(console, pilot, PromptDialog)
        box = app.screen.query_one("#dialog-input", Input)
        assert box.value == "30"
        await pilot.press("enter")
        await wait_screen(console, pilot, ConfirmDialog)
        # The count it will delete, before it deletes (the fresh job is not among them).
        assert dialog_message(pilot) == (
            "Delete 5 sent, failed or cancelled job(s) finished more than 30 days ago?")
        await pilot.press("y")
        await console.wait_for(lambda: console.audit("email.cleanup"), message="a cleanup")
        await console.settle(pilot)
        assert sorted(console.statuses()) == fresh
        assert console.audit("email.cleanup") == [(5, {"older_than_days": 30.0})]
        assert ("information", "deleted 5 job(s)") in console.notes(app)
        assert [r[0] for r in console.rows(pilot, "#email-jobs")] == [str(fresh[0])]


async def test_C_refuses_a_bad_number_and_escape_cancels(console: Console) -> None:
    await mixed_queue(console)
    console.clock.advance(40 * DAY)
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("C")
        await wait_screen(console, pilot, PromptDialog)
        app.screen.query_one("#dialog-input", Input).value = "soon"
        await pilot.press("enter")
        await wait_screen(console, pilot, EmailQueueScreen)
        await console.settle(pilot)
        assert ("error", "not a number of days: 'soon'") in console.notes(app)
        await pilot.press("C")
        await wait_screen(console, pilot, PromptDialog)
        await pilot.press("escape")
        await wait_screen(console, pilot, EmailQueueScreen)
        await pilot.press("C", "enter")
        await wait_screen(console, pilot, ConfirmDialog)
        await pilot.press("n")
        await wait_screen(console, pilot, EmailQueueScreen)
        await console.settle(pilot)
        assert len(console.statuses()) == 5
        assert console.audit("email.cleanup") == []


# ---- backups screen ----------------------------------------------------------------------------


def make_storage(console: Console) -> None:
    folder = console.settings.storage_dir / "portraits"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "p1.jpg").write_bytes(b"\xff\xd8portrait")


async def backups_screen(console: Console, pilot: Pilot[Any]) -> BackupsScreen:
    await pilot.press("b")
    await console.settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, BackupsScreen)
    return screen


async def test_t_runs_the_selected_backup_job_after_confirmation(console: Console) -> None:
    make_storage(console)
    engine = await console.engine()
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        jobs = [r[0] for r in console.rows(pilot, "#backup-jobs")]
        assert jobs == ["database", "storage", "full", "rotation", "drill"]
        await pilot.press("down", "t")  # storage
        await wait_screen(console, pilot, ConfirmDialog)
        assert dialog_message(pilot) == "Run the storage job now?"
        await pilot.press("y")
        await console.wait_for(lambda: console.query("SELECT kind, status, owner FROM backups")
                               == [("storage", "ok", engine.owner)], message="a storage backup")
        await console.settle(pilot)
        history = console.rows(pilot, "#backup-history")
        assert [r[1:4:2] for r in history] == [["storage", "ok"]]
        assert any(m.startswith("storage backup: done") for _, m in console.notes(app))
        assert console.audit("backup.run.storage")


async def test_t_then_n_runs_nothing_and_app_keys_wait_for_the_answer(
        console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        await pilot.press("t")
        await wait_screen(console, pilot, ConfirmDialog)
        # Quit, switch screen, help: not while the dialog asks.
        await pilot.press("q", "e", "d", "question_mark")
        await console.settle(pilot)
        assert app.is_running and isinstance(app.screen, ConfirmDialog)
        assert app.current_mode == "backups"
        await pilot.press("n")
        await wait_screen(console, pilot, BackupsScreen)
        await console.settle(pilot)
        assert console.query("SELECT COUNT(*) FROM backups") == [(0,)]


async def test_V_verifies_the_selected_backup(console: Console) -> None:
    engine = await console.engine()
    first = await engine.backup.run("database")
    second = await engine.backup.run("database")
    console.clock.advance(3600)
    later = console.clock.time()

    def verified_at(backup_id: int) -> float | None:
        rows = console.query("SELECT verified_at FROM backups WHERE id = ?", (backup_id,))
        return rows[0][0]

    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        assert [r[0] for r in console.rows(pilot, "#backup-history")] == [
            str(second["id"]), str(first["id"])]
        await pilot.press("tab", "down", "V")  # history table, second row: the first backup
        await console.wait_for(lambda: verified_at(first["id"]) == later,
                               message="verified_at set")
        await console.settle(pilot)
        assert verified_at(second["id"]) < later
        assert ("information", f"backup {first['id']}: verified — ok") in console.notes(app)
        assert [d["ok"] for _, d in console.audit("backup.verify")] == [True]


async def test_V_on_a_damaged_backup_says_BAD(console: Console) -> None:
    engine = await console.engine()
    result = await engine.backup.run("database")
    Path(result["path"]).write_bytes(b"not a database")
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        await pilot.press("tab", "V")
        await console.wait_for(lambda: any(sev == "error" for sev, _ in console.notes(app)),
                               message="an error notification")
        await console.settle(pilot)
        assert any(m.startswith(f"backup {result['id']}: BAD") for _, m in console.notes(app))
        assert console.query("SELECT verified FROM backups") == [(0,)]


async def test_R_shows_the_restore_command(console: Console) -> None:
    engine = await console.engine()
    result = await engine.backup.run("database")
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        await pilot.press("tab", "R")
        await wait_screen(console, pilot, TextDialog)
        body = dialog_body(pilot)
        assert f"vertex-tui backup restore {result['path']}" in body
        assert f"VERTEX_DB_PATH={console.settings.db_path}" in body
        await pilot.press("enter")
        await wait_screen(console, pilot, BackupsScreen)


async def test_R_with_no_backup_selected_warns(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        await pilot.press("tab", "R", "V")
        await console.settle(pilot)
        assert isinstance(app.screen, BackupsScreen)
        assert [s for s, _ in console.notes(app)] == ["warning", "warning"]


# ---- lifecycle, videos ----------------------------------------------------------------------


async def test_lifecycle_c_runs_a_pass(console: Console) -> None:
    engine = await console.engine()
    now = console.clock.time()
    await engine.lifecycle.add_portrait(title="Soon", owner="soon@example.org",
                                        subscription_end=now + 3 * DAY)
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        await console.settle(pilot)
        screen = app.screen
        assert "no pass yet" not in text_of(screen.query_one("#lifecycle-counts", Static))
        await pilot.press("c")
        await console.wait_for(
            lambda: console.query("SELECT service, outcome FROM service_runs")
            == [("lifecycle", "ok")], message="a lifecycle pass")
        await console.settle(pilot)
        counts = text_of(screen.query_one("#lifecycle-counts", Static))
        assert "expiring 1" in counts
        assert "7 days: 1" in text_of(screen.query_one("#lifecycle-notices", Static))
        assert console.query("SELECT to_header FROM email_jobs") == [("soon@example.org",)]


async def test_videos_c_runs_a_pass(console: Console) -> None:
    engine = await console.engine()
    portrait = await engine.lifecycle.add_portrait(
        title="P", owner="p@example.org", subscription_end=console.clock.time() + 90 * DAY)
    for title in ("Clip A", "Clip B"):
        await engine.video.add_video(portrait_id=portrait, title=title, rotation="cyclic")
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("v")
        await console.settle(pilot)
        assert "scheduled 2" in text_of(app.screen.query_one("#video-counts", Static))
        await pilot.press("c")
        await console.wait_for(
            lambda: console.query("SELECT service, outcome FROM service_runs")
            == [("video", "ok")], message="a video pass")
        await console.settle(pilot)
        assert "active 1" in text_of(app.screen.query_one("#video-counts", Static))
        assert [r[1:3] for r in console.rows(pilot, "#video-rotation")] == [
            ["#1 Clip A", "cyclic"]]


# ---- errors -----------------------------------------------------------------------------------


async def test_a_failing_engine_query_is_a_notification_not_a_crash(
        console: Console, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = await console.engine()

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError("disk on fire")

    monkeypatch.setattr(engine.email, "stats", broken)
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        assert app.is_running
        assert ("error", "OSError: disk on fire") in console.notes(app)
        for key in "1251":  # each filter reloads, and fails the same way again
            await pilot.press(key)
            await console.settle(pilot)
        # Shown once, not once per failed refresh.
        assert console.notes(app).count(("error", "OSError: disk on fire")) == 1
        await pilot.press("b")
        await console.settle(pilot)
        assert isinstance(app.screen, BackupsScreen)


async def test_a_failing_backup_is_an_error_notification(console: Console) -> None:
    console.settings.backup_dir.parent.mkdir(parents=True, exist_ok=True)
    console.settings.backup_dir.write_text("a file where the backup folder should be")
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        await pilot.press("t", "y")
        await console.wait_for(
            lambda: console.query("SELECT status FROM backups") == [("failed",)],
            message="a failed backup recorded")
        await console.settle(pilot)
        assert app.is_running
        assert any(sev == "error" and m.startswith("database backup failed")
                   for sev, m in console.notes(app))


# ---- dialogs: keys and mouse ---------------------------------------------------------------


async def test_confirm_dialog_escape_cancels_and_a_click_on_yes_confirms(
        console: Console) -> None:
    jobs = await mixed_queue(console)
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("R")
        await wait_screen(console, pilot, ConfirmDialog)
        await pilot.press("escape")
        await wait_screen(console, pilot, EmailQueueScreen)
        await console.settle(pilot)
        assert console.audit("email.retry") == []
        await pilot.press("R")
        await wait_screen(console, pilot, ConfirmDialog)
        assert await pilot.click("#yes")
        await console.wait_for(lambda: console.audit("email.retry"), message="the retry")
        assert [console.job_status(i) for i in jobs["failed"]] == ["pending", "pending"]


async def test_confirm_dialog_click_on_cancel_does_nothing(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        await pilot.press("t")
        await wait_screen(console, pilot, ConfirmDialog)
        assert await pilot.click("#no")
        await wait_screen(console, pilot, BackupsScreen)
        await console.settle(pilot)
        assert console.query("SELECT COUNT(*) FROM backups") == [(0,)]


async def test_text_dialog_q_closes_the_dialog_not_the_app(console: Console) -> None:
    engine = await console.engine()
    await engine.backup.run("database")
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        await pilot.press("tab", "R")
        await wait_screen(console, pilot, TextDialog)
        await pilot.press("q")
        await wait_screen(console, pilot, BackupsScreen)
        assert app.is_running


async def test_palette_engine_command_runs_while_a_dialog_is_open(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await backups_screen(console, pilot)
        await pilot.press("t")
        await wait_screen(console, pilot, ConfirmDialog)
        await palette_yes(pilot, console, "Run video.check now")
        await console.wait_for(
            lambda: console.query("SELECT service, outcome FROM service_runs")
            == [("video", "ok")], message="a video pass")
        await wait_screen(console, pilot, ConfirmDialog)
        await pilot.press("n")
        await wait_screen(console, pilot, BackupsScreen)
        await console.settle(pilot)
        assert console.query("SELECT COUNT(*) FROM backups") == [(0,)]
