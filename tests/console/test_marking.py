"""Marking and bulk actions on the Email screen: Space marks jobs by id (kept across
refreshes), r/x act on the marked set, R/X on all jobs matching the filter; every
confirmation names the count and the filter and acts on exactly those jobs. Search box
errors are one line under the box."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widgets import DataTable, Static

from vertex_tui.screens.email_queue import EmailQueueScreen
from vertex_tui.widgets.dialogs import ConfirmDialog
from vertex_tui.widgets.tables import MARK, StableTable

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .conftest import Console

SIZE = (120, 40)


def mail(to: str, subject: str = "Hello") -> dict[str, str]:
    return {"to": to, "subject": subject, "body": "Hello from the marking tests.\n"}


async def email_screen(console: Console, pilot: Pilot[Any]) -> EmailQueueScreen:
    await pilot.press("e")
    await console.settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, EmailQueueScreen)
    return screen


def page_line(pilot: Pilot[Any]) -> str:
    return str(pilot.app.screen.query_one("#email-page", Static).render())


async def dialog(console: Console, pilot: Pilot[Any]) -> str:
    await console.wait_for(lambda: isinstance(pilot.app.screen, ConfirmDialog),
                           message="a confirmation")
    screen = pilot.app.screen
    assert isinstance(screen, ConfirmDialog)
    return screen._message


async def search(console: Console, pilot: Pilot[Any], text: str) -> None:
    await pilot.press("slash", *text, "enter")
    await console.settle(pilot)


async def test_space_marks_jobs_by_id_and_retry_acts_on_exactly_the_marked(
    console: Console,
) -> None:
    await console.deliver([mail(f"user{i}@example.org") for i in range(2)])
    failed = await console.deliver([mail(f"bounce{i}@example.org") for i in range(4)])
    engine = await console.engine()
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        # Newest first: bounce3, bounce2, bounce1, bounce0, user1, user0. Mark bounce3, bounce1.
        await pilot.press("space")  # marks the row and moves down
        await pilot.press("down", "space")
        await console.settle(pilot)
        table = app.screen.query_one("#email-jobs", StableTable)
        assert table.marks == {str(failed[3]), str(failed[1])}
        assert "2 marked" in page_line(pilot)
        # New mail above: the marks stay on their jobs.
        await engine.email.enqueue_many([mail("new@example.org")])
        await console.wait_for(lambda: len(console.rows(pilot, "#email-jobs")) == 7,
                               message="the new job on screen")
        await console.settle(pilot)
        marked_cells = {row[0] for row in console.rows(pilot, "#email-jobs")
                        if row[0].startswith(MARK)}
        assert marked_cells == {f"{MARK}{failed[3]}", f"{MARK}{failed[1]}"}

        await pilot.press("r")
        message = await dialog(console, pilot)
        assert message.startswith("Retry 2 marked job(s)?")
        await pilot.press("y")
        await console.wait_for(lambda: console.audit("email.retry"), message="the retry")
        await console.settle(pilot)
        assert console.job_status(failed[3]) == "pending"
        assert console.job_status(failed[1]) == "pending"
        assert console.job_status(failed[2]) == "failed"
        assert console.job_status(failed[0]) == "failed"
        [(count, detail)] = console.audit("email.retry")
        assert count == 2 and sorted(detail["ids"]) == sorted([failed[1], failed[3]])
        assert table.marks == set()
        assert "marked" not in page_line(pilot)


async def test_cancel_all_matching_names_count_and_filter_and_takes_exactly_those(
    console: Console,
) -> None:
    engine = await console.engine()  # no workers: mail stays pending
    promo = await engine.email.enqueue_many([mail(f"p{i}@example.org", "Spring promo")
                                             for i in range(3)])
    other = await engine.email.enqueue_many([mail("r@example.org", "Receipt")])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await search(console, pilot, "promo")
        assert {row[0] for row in console.rows(pilot, "#email-jobs")} == {str(i) for i in promo}
        assert "page 1 of 1 · 3 jobs" in page_line(pilot)

        await pilot.press("X")
        message = await dialog(console, pilot)
        assert message.startswith("Cancel all 3 pending or failed job(s) matching 'promo'?")
        # Another matching job arrives while the operator reads: it was not named.
        [late] = await engine.email.enqueue_many([mail("p9@example.org", "Spring promo")])
        await pilot.press("y")
        await console.wait_for(lambda: console.audit("email.cancel"), message="the cancel")
        await console.settle(pilot)
        assert {i: console.job_status(i) for i in [*promo, late, *other]} == {
            **dict.fromkeys(promo, "cancelled"), late: "pending", other[0]: "pending"}
        [(count, detail)] = console.audit("email.cancel")
        assert count == 3 and detail["search"] == "promo"

        # The cancelled jobs are shown, and R over status:cancelled names them.
        await pilot.press("6")
        await console.settle(pilot)
        assert {row[0] for row in console.rows(pilot, "#email-jobs")} == {str(i) for i in promo}
        await pilot.press("R")
        message = await dialog(console, pilot)
        assert message.startswith(
            "Retry all 3 cancelled job(s) matching status cancelled and 'promo'?")
        await pilot.press("n")


async def test_x_cancels_the_selected_job_after_naming_it(console: Console) -> None:
    engine = await console.engine()
    ids = await engine.email.enqueue_many([mail(f"u{i}@example.org") for i in range(3)])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await email_screen(console, pilot)
        await pilot.press("down", "x")
        message = await dialog(console, pilot)
        assert message.startswith(f"Cancel job {ids[1]} to u1@example.org?")
        await pilot.press("y")
        await console.wait_for(lambda: console.audit("email.cancel"), message="the cancel")
        assert [console.job_status(i) for i in ids] == ["pending", "cancelled", "pending"]


async def test_a_bad_search_term_is_one_line_under_the_box_and_the_table_stays(
    console: Console,
) -> None:
    engine = await console.engine()
    ids = await engine.email.enqueue_many([mail(f"u{i}@example.org") for i in range(3)])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        screen = await email_screen(console, pilot)
        await search(console, pilot, "status:lost")
        error = screen.query_one("#email-search-error", Static)
        assert "unknown status 'lost'" in str(error.render())
        assert error.display
        assert any("unknown status 'lost'" in line for line in console.screen_text(app))
        assert screen.search == ""
        assert len(console.rows(pilot, "#email-jobs")) == 3
        # Fixing the term applies it and the line goes.
        box = screen.query_one("#email-search")
        box.value = ""  # type: ignore[attr-defined]
        await pilot.press(*"id:", *str(ids[1]), "enter")
        await console.settle(pilot)
        assert not error.display
        assert [row[0] for row in console.rows(pilot, "#email-jobs")] == [str(ids[1])]
        assert screen.query_one("#email-jobs", DataTable).has_focus


# ---- `/` on the other tables: the same language, matched in memory ---------------------------


async def test_slash_filters_the_backup_history_with_the_same_language(console: Console) -> None:
    from vertex_tui.screens.backups import BackupsScreen
    from vertex_tui.widgets.table_search import TableSearch

    engine = await console.engine()
    for kind in ("database", "database"):
        await engine.backup.run(kind, trigger="manual")
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await console.settle(pilot)
        screen = app.screen
        assert isinstance(screen, BackupsScreen)
        rows = console.rows(pilot, "#backup-history")
        assert len(rows) == 2 and {r[3] for r in rows} == {"ok"}
        newest = rows[0][0]

        await search(console, pilot, "status:failed")
        assert console.rows(pilot, "#backup-history") == []
        await pilot.press("escape")
        await search(console, pilot, f"status:ok id:{newest}")
        assert [r[0] for r in console.rows(pilot, "#backup-history")] == [newest]
        # The filter holds across a refresh with a new row that does not match.
        await engine.backup.run("database", trigger="manual")
        await console.settle(pilot)
        screen.reload()
        await console.settle(pilot)
        assert [r[0] for r in console.rows(pilot, "#backup-history")] == [newest]

        # A term this table cannot answer, and a bad one: one line under the box.
        box = screen.query_one(TableSearch)
        box.query_one("Input").value = ""  # type: ignore[attr-defined]
        await pilot.press("slash", *"to:bob", "enter")
        await console.settle(pilot)
        error = str(box.query_one(".search-error", Static).render())
        assert error.startswith("to: does not apply to the backup history")
        assert any("to: does not apply" in line for line in console.screen_text(app))
        assert [r[0] for r in console.rows(pilot, "#backup-history")] == [newest]  # kept

        await pilot.press("escape")
        await console.settle(pilot)
        assert len(console.rows(pilot, "#backup-history")) == 3


async def test_slash_filters_the_upcoming_expirations(console: Console) -> None:
    from vertex_tui.screens.lifecycle import LifecycleScreen
    from vertex_tui.widgets.table_search import TableSearch

    engine = await console.engine()
    now = console.clock.time()
    for name, days in (("Gallery North", 1), ("Museum", 1.5), ("Gallery South", 2)):
        await engine.lifecycle.add_project(name=name, owner="owner@example.org",
                                           subscription_end=now + days * 86_400)
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        await console.settle(pilot)
        screen = app.screen
        assert isinstance(screen, LifecycleScreen)
        assert len(console.rows(pilot, "#lifecycle-upcoming")) == 3
        await search(console, pilot, "gallery")
        assert sorted(r[4] for r in console.rows(pilot, "#lifecycle-upcoming")) == [
            "Gallery North", "Gallery South"]
        await pilot.press("escape")  # clears the search: every row again
        await console.settle(pilot)
        assert len(console.rows(pilot, "#lifecycle-upcoming")) == 3
        await pilot.press("slash", *"status:active", "enter")
        await console.settle(pilot)
        error = str(screen.query_one(TableSearch).query_one(".search-error", Static).render())
        assert error.startswith("status: does not apply to the upcoming expirations")
