"""Jobs: every scheduled job of every service (as `vertex-tui jobs`), live; run now, pause,
resume and the history of the selected job.

The table is `engine.jobs.snapshot()`, refreshed on every job run (PassCompleted, JobSkipped,
via the bridge), on a timer, and after each action. Run now is an engine action (`job.run`):
performed here when the console hosts the engine, a request the running engine picks up when
it is attached. Pause and resume are database flags every engine follows within a poll, so
they are the same in both modes. `/` filters the table: free text in the job and service
names, `service:email,backup` and `paused:yes|no` (the search language, engine/search.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from importlib import resources
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Header, Label, Static
from textual.worker import Worker

from vertex_tui.bridge import JOB_EVENTS
from vertex_tui.engine.rundetail import run_detail
from vertex_tui.engine.search import JOB_KEYS
from vertex_tui.screens.base import VertexScreen
from vertex_tui.timefmt import short_time
from vertex_tui.widgets.dialogs import ConfirmDialog
from vertex_tui.widgets.keybar import KeyBar
from vertex_tui.widgets.table_search import TableSearch, TableSearchMixin, search_binding
from vertex_tui.widgets.tables import StableTable

if TYPE_CHECKING:
    from vertex_tui.app import VertexApp

STYLES = resources.files("vertex_tui") / "styles"
COLUMNS = ("NEXT", "LEFT", "LAST", "PASSED", "JOB", "SERVICE", "OUTCOME", "HOLDER")
HISTORY_LIMIT = 50
UNITS = (("d", 86_400), ("h", 3600), ("m", 60), ("s", 1))

Row = tuple[str, tuple[Any, ...]]  # (key, cells): the shape StableTable.show_rows takes


def compact_span(seconds: float) -> str:
    """'45s', '12m', '3h 5m', '2d 4h': the two largest units, rounded down (a table cell)."""
    left = int(max(0.0, seconds))
    for index, (unit, size) in enumerate(UNITS):
        if left >= size:
            count, rest = divmod(left, size)
            text = f"{count}{unit}"
            if index + 1 < len(UNITS) and rest // UNITS[index + 1][1]:
                text += f" {rest // UNITS[index + 1][1]}{UNITS[index + 1][0]}"
            return text
    return "0s"


def sort_key(job: dict[str, Any]) -> tuple[bool, str, str]:
    """Soonest next run first, then the jobs with none (paused, disabled), by name, as
    `vertex-tui jobs` lists them. ISO 8601 strings in UTC sort as times."""
    return (job["next_run"] is None, job["next_run"] or "", job["job"])


def job_rows(jobs: list[dict[str, Any]], now: float, here: str) -> list[Row]:
    """The table's rows, keyed by job name; `here` is this console's engine owner."""
    rows: list[Row] = []
    for j in sorted(jobs, key=sort_key):
        nxt, last = j["next_run"], j["last_run"]
        if nxt is not None:
            left: str | Text = compact_span(_ts(nxt) - now)
        elif j["paused"]:
            left = Text("paused", style="bold")
        else:
            left = "disabled" if not j["enabled"] else "-"
        passed = f"{compact_span(now - _ts(last))} ago" if last else "-"
        holder = j["holder"]
        rows.append((j["job"], (
            short_time(nxt, now), left, short_time(last, now), passed, Text(j["job"]),
            Text(j["service"]), Text(j["last_outcome"] or "-"),
            Text("this engine" if holder == here else holder or "-"))))
    return rows


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def detail_line(job: dict[str, Any] | None) -> str:
    """What a narrow table leaves out, for the selected job."""
    if job is None:
        return "no jobs"
    parts = [job["job"], job["schedule"]]
    if job["paused"]:
        parts.append("PAUSED (does not run on schedule; r still runs it)")
    elif not job["enabled"]:
        parts.append("disabled in this engine's settings")
    if job["last_outcome"]:
        took = job["last_duration_s"]
        parts.append(f"last {job['last_outcome']}"
                     + ("" if took is None else f" in {took:.2f} s"))
    if job["holder"]:
        parts.append(f"lease held by {job['holder']}")
    return " · ".join(parts)


class JobsScreen(TableSearchMixin, VertexScreen):
    """Every job of every service, soonest first."""

    CSS_PATH = str(STYLES / "jobs.tcss")
    AUTO_FOCUS = "#jobs-table"  # see VertexScreen.AUTO_FOCUS
    REFRESH_ON = JOB_EVENTS
    BINDINGS = [
        Binding("r", "run_now", "Run now"),
        Binding("p", "toggle_pause", "Pause/resume"),
        Binding("h", "history", "History"),
        search_binding("filter the table: job or service name, service:, paused:yes|no"),
        Binding("escape", "clear_search", "Clear search", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._jobs: dict[str, dict[str, Any]] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="jobs-summary")
        yield TableSearch("#jobs-table", "the jobs", keys=JOB_KEYS,
                          services=lambda: sorted({j["service"] for j in self._jobs.values()}),
                          placeholder="text service:email paused:yes")
        table = StableTable(id="jobs-table", cursor_type="row", zebra_stripes=True)
        table.text_columns = (COLUMNS.index("JOB"), COLUMNS.index("SERVICE"))
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="jobs-detail")
        yield KeyBar()

    async def refresh_snapshot(self) -> None:
        jobs = await self.engine.jobs.snapshot()
        self._jobs = {j["job"]: j for j in jobs}
        table = self.query_one("#jobs-table", StableTable)
        table.named = {j["job"]: {"service": j["service"], "paused": "yes" if j["paused"]
                                  else "no"} for j in jobs}
        self.show_rows(job_rows(jobs, self.now(), self.engine.owner))
        paused = sum(1 for j in jobs if j["paused"])
        disabled = sum(1 for j in jobs if not j["enabled"])
        services = len({j["service"] for j in jobs})
        search = table.filter_query
        self.query_one("#jobs-summary", Static).update(
            f"{len(jobs)} jobs of {services} services · {paused} paused · {disabled} disabled"
            + (f" · {table.row_count} matching {search.source!r}" if search else ""))
        self.show_detail()

    def on_table_search_changed(self, event: TableSearch.Changed) -> None:
        self.reload()  # the summary names the search and what matches

    def show_rows(self, rows: list[Row]) -> None:
        """Replace the rows, the cursor staying on the same job (StableTable)."""
        self.query_one("#jobs-table", StableTable).show_rows(rows)

    def selected_job(self) -> str | None:
        """The job under the cursor, by its row key (never by row number)."""
        return self.query_one("#jobs-table", StableTable).cursor_key

    def show_detail(self) -> None:
        name = self.selected_job()
        self.query_one("#jobs-detail", Static).update(
            Text(detail_line(self._jobs.get(name) if name else None)))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_history()  # Enter on a row (the table's own binding)

    @work(exit_on_error=False, group="action")
    async def action_run_now(self) -> None:
        name = self.selected_job()
        if name is not None:
            await ask_run_now(self.vertex, name)

    @work(exit_on_error=False, group="action")
    async def action_toggle_pause(self) -> None:
        name = self.selected_job()
        if name is not None:
            await ask_pause(self.vertex, name, not self._jobs[name]["paused"])

    def action_history(self) -> None:
        name = self.selected_job()
        if name is not None:
            self.app.push_screen(JobHistoryDialog(name))


async def ask_run_now(app: VertexApp, name: str) -> None:
    """Run `name` now once the operator says yes: the `r` key and the palette's entry ask
    the same question, and "no" does nothing."""
    where = ("the running engine will run it" if app.bridge.attached
             else "it runs in this process")
    if await app.push_screen_wait(ConfirmDialog(f"Run {name} now? ({where})", yes="Run")):
        app.engine_action("job.run", {"job": name}, name)


async def ask_pause(app: VertexApp, name: str, pause: bool) -> None:
    """Pause (or resume) `name` once the operator says yes: the `p` key and the palette's
    entries ask the same question. A job already in that state is said so, unasked."""
    if pause == await is_paused(app, name):
        app.notify(f"{name} is already {'paused' if pause else 'running on schedule'}",
                   severity="warning")
        return
    question = (f"Pause {name}? It stops running on schedule in every engine."
                if pause else f"Resume {name}? It runs on schedule again.")
    if await app.push_screen_wait(ConfirmDialog(question, yes="Pause" if pause else "Resume")):
        await set_paused(app, name, pause)


async def is_paused(app: VertexApp, name: str) -> bool:
    return any(j["paused"] for j in await app.engine.jobs.snapshot() if j["job"] == name)


async def set_paused(app: VertexApp, name: str, paused: bool) -> None:
    """Pause or resume `name` (durable, audited, followed by every engine) and say so."""
    changed = await app.engine.jobs.set_paused(name, paused)
    done = "paused" if paused else "resumed"
    app.notify(f"{name} {done}" if changed else f"{name} was already {done}",
               severity="information" if changed else "warning")
    for screen in app.screen_stack:
        if isinstance(screen, JobsScreen):
            screen.reload()


def job_commands(app: VertexApp) -> list[tuple[str, Callable[[], Any], str]]:
    """The palette's entries for every job of every service (the engine's registry): run
    now, pause, resume (each asks as its key does), history."""
    out: list[tuple[str, Callable[[], Any], str]] = []
    for name in app.engine.jobs.names():
        out += [
            (f"Run {name} now", partial(_ask, app, ask_run_now, name),
             "asks first; by the running engine when attached"),
            (f"Pause {name}", partial(_ask, app, ask_pause, name, True),
             "asks first; stops running on schedule, in every engine"),
            (f"Resume {name}", partial(_ask, app, ask_pause, name, False),
             "asks first; runs on schedule again"),
            (f"Show the runs of {name}", partial(_history, app, name), "its history"),
        ]
    return out


def _ask(app: VertexApp, ask: Callable[..., Awaitable[None]], *args: Any) -> None:
    """Run a palette entry's `ask(app, *args)` in a worker (a dialog is waited for there)."""
    app.run_worker(ask(app, *args), group="action", exit_on_error=False)


def _history(app: VertexApp, name: str) -> None:
    app.push_screen(JobHistoryDialog(name))


def history_rows(runs: list[dict[str, Any]], now: float) -> list[Row]:
    rows: list[Row] = []
    for n, r in enumerate(runs):
        took = "-" if r["duration_s"] is None else f"{r['duration_s']:.2f} s"
        detail = run_detail(r["counts"], r["error"])
        rows.append((f"{r['started_at']}#{n}", (
            short_time(r["started_at"], now), Text(r["outcome"]), took, Text(r["owner"]),
            Text(detail))))
    return rows


class JobHistoryDialog(ModalScreen[None]):
    """The runs of one job, newest first, from `service_runs` (every engine's)."""

    BINDINGS = [Binding("escape,q,h", "close", "Close")]

    def __init__(self, job: str) -> None:
        super().__init__(classes="dialog")
        self.job = job

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog-box", classes="wide"):
            yield Label(f"Runs of {self.job}, newest first", id="dialog-title")
            table: DataTable[Any] = DataTable(id="history-table", cursor_type="row",
                                              zebra_stripes=True)
            table.add_columns("STARTED", "OUTCOME", "TOOK", "OWNER", "DETAIL")
            yield table
            yield Static("", id="history-count")

    def on_mount(self) -> None:
        self.load()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        from vertex_tui.app import VertexApp

        if isinstance(self.app, VertexApp):
            self.app.report_failed_worker(event)

    @work(exclusive=True, exit_on_error=False, group="snapshot")
    async def load(self) -> None:
        from vertex_tui.app import VertexApp

        app = self.app
        assert isinstance(app, VertexApp)
        runs = await app.engine.jobs.history(self.job, limit=HISTORY_LIMIT)
        table = self.query_one("#history-table", DataTable)
        table.clear()
        for key, cells in history_rows(runs, app.engine.clock.time()):
            table.add_row(*cells, key=key)
        self.query_one("#history-count", Static).update(
            "no runs yet" if not runs else
            f"{len(runs)} run(s) shown" + (f" (the latest {HISTORY_LIMIT})"
                                           if len(runs) == HISTORY_LIMIT else "")
            + " · Escape closes")

    def action_close(self) -> None:
        self.dismiss(None)
