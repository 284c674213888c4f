"""The cursor stays on the job (the row's key), not on the row number, across live refreshes,
filters and actions; when its job leaves the view it lands on a neighbour."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from textual.widgets import DataTable

from vertex_tui.screens.backups import BackupsScreen
from vertex_tui.screens.email_queue import EmailQueueScreen
from vertex_tui.widgets.dialogs import ConfirmDialog, TextDialog
from vertex_tui.widgets.tables import follow

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .conftest import Console

SIZE = (100, 30)


def mail(to: str, subject: str = "Hello") -> dict[str, str]:
    return {"to": to, "subject": subject, "body": "Hello from the selection tests.\n"}


@pytest.mark.parametrize(("old", "index", "new", "expected"), [
    (["5", "4", "3"], 1, ["6", "5", "4", "3"], 2),      # a row arrived above: follow "4"
    (["5", "4", "3"], 1, ["5", "3"], 1),                # "4" left: "3" took its place
    (["5", "4", "3"], 2, ["5", "4"], 1),                # the last row left: the previous one
    (["5", "4", "3"], 1, ["9", "8", "3"], 2),           # "4" left, rows came above: "3"
    (["5", "4", "3"], 1, ["9", "8", "7", "6"], 1),      # nothing in common: the same number
    (["5", "4", "3"], 2, ["9"], 0),                     # ... within the table
    (["5", "4", "3"], 0, [], None),                     # an empty table has no cursor
    ([], 0, ["1", "2"], 0),                             # a first fill starts at the top
    (["a", "b"], 7, ["a", "b"], 1),                     # a stale index stays in the table
])
def test_follow(old: list[str], index: int, new: list[str], expected: int | None) -> None:
    assert follow(old, index, new) == expected


def cursor_key(pilot: Pilot[Any], selector: str = "#email-jobs") -> str | None:
    """The key of the row under the table's cursor."""
    table = pilot.app.screen.query_one(selector, DataTable)
    if table.row_count == 0:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


async def email_screen(console: Console, pilot: Pilot[Any]) -> EmailQueueScreen:
    await pilot.press("e")
    await console.settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, EmailQueueScreen)
    return screen


async def test_the_cursor_follows_its_job_when_new_mail_arrives_above(console: Console) -> None:
    engine = await console.engine()
    ids = await engine.email.enqueue_many([mail(f"u{i}@example.org") for i in range(10)])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("down", "down", "down")
        chosen = str(ids[-4])  # newest first: the fourth row
        assert cursor_key(pilot) == chosen
        # New mail arrives (the EmailEnqueued event refreshes the screen, as live refresh does).
        await engine.email.enqueue_many([mail(f"new{i}@example.org") for i in range(3)])
        await console.wait_for(lambda: len(console.rows(pilot, "#email-jobs")) == 13,
                               message="the new mail on screen")
        await console.settle(pilot)
        assert cursor_key(pilot) == chosen
        assert app.screen.query_one("#email-jobs", DataTable).cursor_row == 6
        # Enter opens the job the operator chose, not the one now at row 3.
        await pilot.press("enter")
        await console.wait_for(lambda: isinstance(app.screen, TextDialog),
                               message="the job detail")
        assert app.screen._title == f"Email job {chosen}"


async def test_the_cursor_stays_on_its_job_after_retry_all(console: Console) -> None:
    await console.deliver([mail(f"user{i}@example.org") for i in range(4)])
    failed = await console.deliver([mail(f"bounce{i}@example.org") for i in range(3)])
    await console.deliver([mail(f"late{i}@example.org") for i in range(2)])
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        # Rows, newest first: 2 late, 3 bounce, 4 user. Choose the sixth row: user3.
        for _ in range(5):
            await pilot.press("down")
        chosen = cursor_key(pilot)
        assert chosen is not None and int(chosen) < min(failed)
        await pilot.press("R")
        await console.wait_for(lambda: isinstance(app.screen, ConfirmDialog),
                               message="the retry-all dialog")
        # Live traffic: more mail arrives while the operator reads the dialog.
        await console.deliver([mail(f"during{i}@example.org") for i in range(2)])
        await pilot.press("y")
        await console.wait_for(lambda: console.audit("email.retry"), message="the retry")
        await console.wait_for(lambda: all(console.job_status(i) == "pending" for i in failed),
                               message="the failed jobs queued again")
        await console.settle(pilot)
        assert isinstance(app.screen, EmailQueueScreen)
        assert len(console.rows(pilot, "#email-jobs")) == 11
        assert cursor_key(pilot) == chosen


async def test_the_cursor_keeps_its_job_across_filter_changes(console: Console) -> None:
    await console.deliver([mail(f"user{i}@example.org") for i in range(3)])
    failed = await console.deliver([mail(f"bounce{i}@example.org") for i in range(3)])
    await console.deliver([mail(f"late{i}@example.org") for i in range(3)])
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        for _ in range(4):  # 3 late rows, then the second failed job (newest first)
            await pilot.press("down")
        assert cursor_key(pilot) == str(failed[1])
        await pilot.press("5")
        await console.settle(pilot)
        assert [r[0] for r in console.rows(pilot, "#email-jobs")] == [
            str(i) for i in reversed(failed)]
        assert cursor_key(pilot) == str(failed[1])
        await pilot.press("1")
        await console.settle(pilot)
        assert cursor_key(pilot) == str(failed[1])


async def test_a_retried_job_leaves_the_failed_view_and_the_cursor_takes_its_neighbour(
        console: Console) -> None:
    failed = await console.deliver([mail(f"bounce{i}@example.org") for i in range(3)])
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("5")
        await console.settle(pilot)
        await pilot.press("down")  # the middle job
        assert cursor_key(pilot) == str(failed[1])
        # Live traffic: a new failure lands on top of the view (shown at the next refresh).
        late = await console.deliver([mail("bounce-late@example.org")])
        await pilot.press("r")
        await console.wait_for(lambda: console.job_status(failed[1]) == "pending",
                               message="the selected job queued again")
        await console.settle(pilot)
        # The row below moved up into its place: the cursor is on it.
        assert [r[0] for r in console.rows(pilot, "#email-jobs")] == [
            str(late[0]), str(failed[2]), str(failed[0])]
        assert cursor_key(pilot) == str(failed[0])
        await pilot.press("r")  # and r acts on that neighbour, the row shown selected
        await console.wait_for(lambda: console.job_status(failed[0]) == "pending",
                               message="the neighbour queued again")
        await console.settle(pilot)
        assert cursor_key(pilot) == str(failed[2])  # the last row left: the previous one
        assert console.job_status(failed[2]) == "failed"
        assert console.job_status(late[0]) == "failed"


async def test_the_backup_history_cursor_follows_its_backup(console: Console) -> None:
    engine = await console.engine()
    for kind in ("database", "database", "database"):
        await engine.backup.run(kind, trigger="manual")
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await console.settle(pilot)
        assert isinstance(app.screen, BackupsScreen)
        app.screen.query_one("#backup-history", DataTable).focus()
        await pilot.press("down")
        chosen = cursor_key(pilot, "#backup-history")
        assert chosen is not None
        await engine.backup.run("database", trigger="manual")  # a new row on top
        await console.wait_for(
            lambda: len(console.rows(pilot, "#backup-history")) == 4, message="the new backup")
        await console.settle(pilot)
        assert cursor_key(pilot, "#backup-history") == chosen
