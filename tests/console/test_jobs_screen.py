"""The Jobs screen (`j`) and the registry-driven dashboard and palette, with Pilot: what each
key changed on screen and in the database, read back through a second engine's `jobs`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from textual.widgets import DataTable, Input, Label, Select, Static

from vertex_tui.engine.builtin import builtin_registry
from vertex_tui.engine.clock import SystemClock
from vertex_tui.engine.engine import Engine
from vertex_tui.screens.dashboard import DashboardScreen
from vertex_tui.screens.jobs import JobHistoryDialog, JobsScreen, compact_span
from vertex_tui.screens.log import LogScreen
from vertex_tui.widgets.dialogs import ConfirmDialog
from vertex_tui.widgets.keybar import KeyBar
from vertex_tui.widgets.service_card import ServiceCard
from vertex_tui.widgets.table_search import TableSearch

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from vertex_tui.engine.service import ServiceRegistry

    from .conftest import Console

SIZE = (120, 30)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vertex-diskspace" / "src"
BUILTIN_JOBS = {"backup.database", "backup.storage", "backup.full", "backup.rotation",
                "backup.drill", "lifecycle.check", "video.check", "email.reap",
                "email.rollup", "engine.log_prune"}


async def wait_screen(console: Console, pilot: Pilot[Any], kind: type) -> Any:
    await console.wait_for(lambda: isinstance(pilot.app.screen, kind),
                           message=f"the {kind.__name__}")
    await pilot.pause()
    return pilot.app.screen


async def jobs_screen(console: Console, pilot: Pilot[Any]) -> JobsScreen:
    await console.settle(pilot)
    await pilot.press("j")
    screen = await wait_screen(console, pilot, JobsScreen)
    await console.settle(pilot)
    assert isinstance(screen, JobsScreen)
    return screen


async def select(pilot: Pilot[Any], screen: JobsScreen, job: str) -> None:
    """Move the cursor to `job` with the arrow keys, as an operator does."""
    table = screen.query_one("#jobs-table", DataTable)
    assert table.has_focus  # the keys go to the table
    for _ in range(table.row_count):
        if screen.selected_job() == job:
            return
        await pilot.press("down")
    assert screen.selected_job() == job


def dialog_message(pilot: Pilot[Any]) -> str:
    return str(pilot.app.screen.query_one("#dialog-message", Label).render())


async def paused_in_db(console: Console, job: str, **kwargs: Any) -> bool:
    """The pause flag as another engine on the database sees it."""
    other = await console.engine(**kwargs)
    return next(j["paused"] for j in await other.jobs.snapshot() if j["job"] == job)


def column(console: Console, pilot: Pilot[Any], name: str) -> dict[str, str]:
    """Job name -> the cell of column `name` (NEXT, LEFT, ...)."""
    from vertex_tui.screens.jobs import COLUMNS

    index = COLUMNS.index(name)
    return {row[4]: row[index] for row in console.rows(pilot, "#jobs-table")}


# ---- the table ----------------------------------------------------------------------------


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.9, "0s"), (45, "45s"), (60, "1m"), (61, "1m 1s"), (3599, "59m 59s"),
    (3600, "1h"), (3661, "1h 1m"), (86_400 + 7200 + 59, "1d 2h"), (86_400 + 59, "1d"),
    (-5, "0s")])
def test_compact_span_two_largest_units_rounded_down(seconds: float, text: str) -> None:
    assert compact_span(seconds) == text


async def test_the_table_lists_every_job_as_the_engine_does(console: Console) -> None:
    engine = await console.engine()
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await jobs_screen(console, pilot)
        rows = console.rows(pilot, "#jobs-table")
        snapshot = {j["job"]: j for j in await engine.jobs.snapshot()}
        assert {r[4] for r in rows} == set(snapshot) == BUILTIN_JOBS
        for row in rows:
            assert row[5] == snapshot[row[4]]["service"]
        # backup.storage is enabled by these settings, the drill is not.
        assert column(console, pilot, "LEFT")["backup.drill"] == "disabled"
        summary = str(app.screen.query_one("#jobs-summary", Static).render())
        # email, backup, lifecycle, video, and the engine itself (engine.log_prune).
        assert summary.startswith(f"{len(BUILTIN_JOBS)} jobs of 5 services · 0 paused")
        assert console.notes(app) == []


async def search_jobs(console: Console, pilot: Pilot[Any], text: str) -> list[str]:
    """`/`, `text`, Enter: the jobs then shown."""
    await pilot.press("slash")
    box = pilot.app.screen.query_one(TableSearch).query_one(Input)
    assert box.has_focus
    box.value = ""
    await pilot.press(*text, "enter")
    await console.settle(pilot)
    return [row[4] for row in console.rows(pilot, "#jobs-table")]


async def test_slash_searches_jobs_by_name_service_and_pause(console: Console) -> None:
    engine = await console.engine()
    await engine.jobs.set_paused("video.check", True)
    app = console.app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await jobs_screen(console, pilot)
        every = [row[4] for row in console.rows(pilot, "#jobs-table")]
        backups = {j for j in BUILTIN_JOBS if j.startswith("backup.")}
        assert set(await search_jobs(console, pilot, "backup")) == backups
        # Free text is in the job and service names only: "ok"/"error" outcomes, "disabled"
        # and holder cells are not searched ("disabled" is in backup.drill's LEFT cell).
        assert await search_jobs(console, pilot, "disabled") == []
        assert set(await search_jobs(console, pilot, "ROTATION")) == {"backup.rotation"}
        assert set(await search_jobs(console, pilot, "service:email")) == {
            "email.reap", "email.rollup"}
        assert set(await search_jobs(console, pilot, "service:email,video")) == {
            "email.reap", "email.rollup", "video.check"}
        assert await search_jobs(console, pilot, "paused:yes") == ["video.check"]
        assert set(await search_jobs(console, pilot, "paused:no")) == BUILTIN_JOBS - {
            "video.check"}
        assert await search_jobs(console, pilot, "service:backup paused:yes") == []
        assert await search_jobs(console, pilot, "service:backup full") == ["backup.full"]
        summary = str(screen.query_one("#jobs-summary", Static).render())
        assert summary.endswith("· 1 matching 'service:backup full'"), summary
        assert screen.selected_job() == "backup.full"  # r / p / h act on what is shown

        # A bad term: one line under the box, what is shown stays.
        for text, line in [
            ("service:mail", "service:mail: unknown service 'mail' (one of backup, email,"),
            ("paused:maybe", "paused:maybe: expected yes or no"),
            ("status:failed", "unknown search term status: (use service:, paused:;"),
        ]:
            assert await search_jobs(console, pilot, text) == ["backup.full"], text
            error = screen.query_one(TableSearch).query_one(".search-error", Static)
            assert error.has_class("-shown") and str(error.render()).startswith(line), (
                str(error.render()))
            assert any(row.strip().startswith(line[:60])
                       for row in console.screen_text(app)), line

        await pilot.press("escape")  # clears the box, its error and the filter
        await console.settle(pilot)
        assert [row[4] for row in console.rows(pilot, "#jobs-table")] == every
        assert not screen.query_one(TableSearch).has_class("-shown")
        keys = [k.key for k in screen.query_one(KeyBar).shown]
        assert "/" in keys and "?" in keys  # 80x24: the footer names / and ? help


async def test_pause_then_resume_from_the_screen_is_durable(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        screen = await jobs_screen(console, pilot)
        await select(pilot, screen, "lifecycle.check")
        await pilot.press("p")
        await wait_screen(console, pilot, ConfirmDialog)
        assert dialog_message(pilot).startswith("Pause lifecycle.check?")
        await pilot.press("y")
        await wait_screen(console, pilot, JobsScreen)
        await console.settle(pilot)
        assert await paused_in_db(console, "lifecycle.check") is True
        assert column(console, pilot, "LEFT")["lifecycle.check"] == "paused"
        assert screen.selected_job() == "lifecycle.check"  # the cursor stayed on the job
        assert "lifecycle.check paused" in [m for _, m in console.notes(app)]

        await pilot.press("p")
        await wait_screen(console, pilot, ConfirmDialog)
        assert dialog_message(pilot).startswith("Resume lifecycle.check?")
        await pilot.press("y")
        await wait_screen(console, pilot, JobsScreen)
        await console.settle(pilot)
        assert await paused_in_db(console, "lifecycle.check") is False
        assert column(console, pilot, "LEFT")["lifecycle.check"] != "paused"
        assert [d["job"] for _, d in console.audit("job.pause")] == ["lifecycle.check"]
        assert [d["job"] for _, d in console.audit("job.resume")] == ["lifecycle.check"]


async def test_n_in_the_pause_dialog_pauses_nothing(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        screen = await jobs_screen(console, pilot)
        await select(pilot, screen, "video.check")
        await pilot.press("p")
        await wait_screen(console, pilot, ConfirmDialog)
        assert dialog_message(pilot).startswith("Pause video.check?")  # it asked
        await pilot.press("n")
        await wait_screen(console, pilot, JobsScreen)
        await console.settle(pilot)
        assert await paused_in_db(console, "video.check") is False
        assert console.audit("job.pause") == []


async def test_run_now_records_a_run_shown_in_its_history(console: Console) -> None:
    engine = await console.engine()
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        screen = await jobs_screen(console, pilot)
        await select(pilot, screen, "video.check")
        assert column(console, pilot, "LAST")["video.check"] == "-"
        await pilot.press("r")
        await wait_screen(console, pilot, ConfirmDialog)
        assert dialog_message(pilot).startswith("Run video.check now?")
        await pilot.press("y")
        await console.wait_for(
            lambda: console.query("SELECT service, outcome, owner FROM service_runs")
            == [("video", "ok", engine.owner)], message="a video pass recorded")
        await wait_screen(console, pilot, JobsScreen)
        await console.settle(pilot)
        assert any(m.startswith("video.check: done") for _, m in console.notes(app))
        assert column(console, pilot, "OUTCOME")["video.check"] == "ok"
        assert column(console, pilot, "LAST")["video.check"] != "-"

        await pilot.press("h")
        dialog = await wait_screen(console, pilot, JobHistoryDialog)
        await console.settle(pilot)
        assert dialog.job == "video.check"
        history = console.rows(pilot, "#history-table")
        assert [(r[1], r[3]) for r in history] == [("ok", engine.owner)]
        await pilot.press("escape")
        await wait_screen(console, pilot, JobsScreen)


async def test_history_of_a_job_that_never_ran_says_so(console: Console) -> None:
    app = console.app(await console.engine())
    async with app.run_test(size=SIZE) as pilot:
        screen = await jobs_screen(console, pilot)
        await select(pilot, screen, "backup.rotation")
        await pilot.press("enter")  # Enter on a row opens its history too
        await wait_screen(console, pilot, JobHistoryDialog)
        await console.settle(pilot)
        assert console.rows(pilot, "#history-table") == []
        assert str(pilot.app.screen.query_one("#history-count", Static).render()).startswith(
            "no runs yet")


async def test_attached_run_now_is_a_request_the_running_engine_performs(
        console: Console) -> None:
    # The running engine: every service, serving requests (as `vertex-tui --no-ui` does).
    async with Engine(console.settings, clock=SystemClock(), owner="ops-1:1:running") as running:
        attached = await console.engine(clock=SystemClock())
        app = console.app(attached, attached=True)
        async with app.run_test(size=SIZE) as pilot:
            screen = await jobs_screen(console, pilot)
            await select(pilot, screen, "backup.rotation")
            await pilot.press("r")
            await wait_screen(console, pilot, ConfirmDialog)
            assert "the running engine will run it" in dialog_message(pilot)
            await pilot.press("y")
            await console.wait_for(
                lambda: console.query("SELECT outcome FROM requests") == [("ok",)],
                message="the running engine to perform the request")
            (action, args, picked_by), = console.query(
                "SELECT action, args, picked_by FROM requests")
            assert (action, args, picked_by) == (
                "job.run", '{"job": "backup.rotation"}', running.owner)
            assert console.query("SELECT owner FROM service_runs WHERE service = 'backup'"
                                 " AND job = 'rotation'") == [(running.owner,)]
            await console.wait_for(
                lambda: any(m.startswith("backup.rotation: done request #1 (ops-1:1:running)")
                            for _, m in console.notes(app)),
                message="the console to say the engine did it")
            await console.settle(pilot)
            assert column(console, pilot, "OUTCOME")["backup.rotation"] == "ok"


# ---- plug-in services: dashboard, palette, Jobs, Log --------------------------------------


@pytest.fixture
def plugin_registry(monkeypatch: pytest.MonkeyPatch) -> ServiceRegistry:
    """The built-in services plus the example package's service (examples/vertex-diskspace,
    imported from its source) and an entry point that failed to import."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    monkeypatch.setenv("DISKSPACE_MIN_FREE_PERCENT", "0")  # any disk passes the check
    from vertex_diskspace import make_service

    registry = builtin_registry()
    registry.register("diskspace", make_service)
    registry.broken["certwatch"] = "import failed: ModuleNotFoundError: No module named 'cw'"
    return registry


async def palette_yes(console: Console, pilot: Pilot[Any], text: str) -> list[str]:
    """Run a palette entry and say yes to the question it asks (as its key does)."""
    shown = await console.palette(pilot, text)
    await wait_screen(console, pilot, ConfirmDialog)
    await pilot.press("y")
    return shown


def card_text(card: ServiceCard) -> str:
    return str(card.query_one(".card-body", Static).render())


async def test_a_plug_in_service_has_a_card_palette_entries_jobs_and_log_filter(
        console: Console, plugin_registry: ServiceRegistry) -> None:
    engine = await console.engine(registry=plugin_registry)
    app = console.app(engine)
    async with app.run_test(size=(120, 40)) as pilot:
        await console.settle(pilot)
        assert isinstance(app.screen, DashboardScreen)
        cards = {card.service: card for card in app.screen.query(ServiceCard)}
        assert list(cards) == ["email", "backup", "lifecycle", "video", "diskspace",
                               "certwatch"]
        assert "last run  never" in card_text(cards["diskspace"])
        for card in cards.values():  # on screen, not clipped below the first four
            widget, _ = app.screen.get_widget_at(*card.region.center)
            assert card in (widget, *widget.ancestors), card.service
        assert cards["certwatch"].has_class("-error")
        assert "error: import failed: ModuleNotFoundError" in card_text(cards["certwatch"])

        shown = await palette_yes(console, pilot, "Run diskspace.check now")
        assert shown[0].splitlines()[0] == "Run diskspace.check now"
        await console.wait_for(
            lambda: console.query("SELECT service, job, outcome FROM service_runs")
            == [("diskspace", "check", "ok")], message="the plug-in's job to run")
        await console.settle(pilot)
        app.screen.reload()
        await console.settle(pilot)
        body = card_text(cards["diskspace"])
        assert "(ok)" in body.splitlines()[0]  # last run … (ok)
        assert "free_percent" in body and "min_free_percent 0.0" in body

        await palette_yes(console, pilot, "Pause diskspace.check")
        await console.wait_for(lambda: console.audit("job.pause"),
                               message="the palette's pause")
        assert await paused_in_db(console, "diskspace.check",
                                  registry=plugin_registry) is True

        await pilot.press("j")
        await wait_screen(console, pilot, JobsScreen)
        await console.settle(pilot)
        assert column(console, pilot, "LEFT")["diskspace.check"] == "paused"
        assert column(console, pilot, "SERVICE")["diskspace.check"] == "diskspace"

        await pilot.press("o")
        log = await wait_screen(console, pilot, LogScreen)
        choices = [str(label) for label, _ in log.query_one("#log-service", Select)._options]
        assert choices[1:] == ["email", "backup", "lifecycle", "video", "diskspace",
                               "certwatch", "engine"]
