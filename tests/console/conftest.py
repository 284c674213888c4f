"""Fixtures for the console tests (Pilot): an engine opened on the test's loop with a fake
clock, mail delivered or refused by a real loopback sink, and small readers for the database
and the app's widgets.

The console's engine runs no services (`run=[]`) unless a test asks for some, and the app is
built with `live_refresh=False`, so `pilot.pause()` reaches idle; everything else is waited
for with `wait_for` (a predicate with a deadline), never with a sleep.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import pytest
from rich.console import Console as RichConsole
from textual.pilot import Pilot
from textual.widgets import DataTable

from vertex_tui.app import VertexApp
from vertex_tui.bridge import ConsoleLogHandler
from vertex_tui.engine.clock import Clock, FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import Settings

if TYPE_CHECKING:
    from conftest import Query, TestSink, WaitFor

SIZE = (100, 30)


class Console:
    """What a console test needs: settings, the fake clock, engines, readers of the DB."""

    def __init__(self, settings: Settings, clock: FakeClock, stack: AsyncExitStack,
                 wait_for: WaitFor, query: Query) -> None:
        self.settings = settings
        self.clock = clock
        self._stack = stack
        self._wait_for = wait_for
        self._query = query

    async def wait_for(self, predicate: Callable[[], Any], *, message: str,
                       timeout: float = 30.0) -> Any:
        """Poll `predicate` until it holds (a deadline for a broken build, not a timing
        assertion: the suite shares loaded CI machines)."""
        return await self._wait_for(predicate, message=message, timeout=timeout)

    # ---- engines ------------------------------------------------------------------------

    async def engine(self, run: Iterable[str] | None = (), *, clock: Clock | None = None,
                     **kwargs: Any) -> Engine:
        """An engine on the test database (on the fake clock unless `clock` is given), open
        until the test ends; `run=None`: a full engine (every service, and it serves the
        requests of attached consoles)."""
        return await self._stack.enter_async_context(Engine(
            self.settings, run=None if run is None else list(run), clock=clock or self.clock,
            **kwargs))

    def app(self, engine: Engine, **kwargs: Any) -> VertexApp:
        kwargs.setdefault("live_refresh", False)
        kwargs.setdefault("log_handler", ConsoleLogHandler())
        return VertexApp(engine, **kwargs)

    async def deliver(self, messages: Iterable[Mapping[str, str]]) -> list[int]:
        """Enqueue `messages` in a short-lived engine whose one worker delivers them to the
        sink (bounce* addresses are refused with 550, so those end up failed)."""
        async with Engine(self.settings, run=["email"], clock=self.clock) as engine:
            ids = await engine.email.enqueue_many(list(messages))

            async def done() -> bool:
                stats = await engine.email.stats()
                return stats.pending == 0 and stats.sending == 0

            await self.wait_for(done, message="the sink to take or refuse every message")
        return ids

    # ---- reading the database ------------------------------------------------------------

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of `sql` on the test's database, SQLite or PostgreSQL (tests/conftest.py)."""
        return self._query(self.settings, sql, params)

    def job_status(self, job_id: int) -> str:
        return str(self.query("SELECT status FROM email_jobs WHERE id = ?", (job_id,))[0][0])

    def statuses(self) -> dict[int, str]:
        return dict(self.query("SELECT id, status FROM email_jobs"))

    def audit(self, action: str) -> list[tuple[int | None, dict[str, Any]]]:
        rows = self.query("SELECT count, detail FROM audit_log WHERE action = ? ORDER BY id",
                          (action,))
        return [(count, json.loads(detail)) for count, detail in rows]

    # ---- reading the app --------------------------------------------------------------------

    @staticmethod
    def rows(pilot: Pilot[Any], selector: str) -> list[list[str]]:
        """The cells of a DataTable on the current screen, as text."""
        table = pilot.app.screen.query_one(selector, DataTable)
        return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]

    @staticmethod
    def screen_text(app: VertexApp) -> list[str]:
        """The terminal's lines as an operator sees them (what is clipped is not there)."""
        width, height = app.size
        out = RichConsole(width=width, height=height, file=io.StringIO(), force_terminal=True,
                          color_system="truecolor", record=True, legacy_windows=False,
                          safe_box=False)
        out.print(app.screen._compositor.render_update(
            full=True, screen_stack=app._background_screens))
        return out.export_text().splitlines()

    async def palette(self, pilot: Pilot[Any], text: str) -> list[str]:
        """Open the command palette, type `text`, run the first hit; the hits' prompts."""
        from textual.command import CommandList, CommandPalette

        await pilot.press("ctrl+p")
        await self.wait_for(lambda: isinstance(pilot.app.screen, CommandPalette),
                            message="the palette")
        await pilot.press(*text)
        hits = await self.wait_for(
            lambda: pilot.app.screen.query_one(CommandList).option_count,
            message=f"palette hits for {text!r}")
        commands = pilot.app.screen.query_one(CommandList)
        shown = [str(commands.get_option_at_index(i).prompt) for i in range(hits)]
        await pilot.pause()
        await pilot.press("enter")
        return shown

    @staticmethod
    def notes(app: VertexApp) -> list[tuple[str, str]]:
        """(severity, message) of every notification shown so far."""
        return [(str(n.severity), n.message) for n in app._notifications]

    async def settle(self, pilot: Pilot[Any]) -> None:
        """Wait until the screens' snapshot and action workers have finished, then idle."""
        app = pilot.app

        def busy() -> list[str]:
            return [f"{w.name} ({w.state.name})" for w in app.workers
                    if w.group in ("snapshot", "action") and not w.is_finished]

        await pilot.pause()
        try:
            await self.wait_for(lambda: not busy(), message="the console's workers to finish")
        except pytest.fail.Exception:
            pytest.fail(f"console workers still busy: {busy()}")
        await pilot.pause()


@pytest.fixture
def console_settings(settings_factory: Callable[..., Settings],
                     sink_550: TestSink) -> Settings:
    """Settings whose SMTP server is a real sink that refuses bounce* recipients."""
    return settings_factory(sink=sink_550, backup_storage_enabled=True)


@pytest.fixture
async def console(console_settings: Settings, wait_for: WaitFor,
                  query: Query) -> AsyncIterator[Console]:
    async with AsyncExitStack() as stack:
        yield Console(console_settings, FakeClock(), stack, wait_for, query)


@pytest.fixture
async def backend_console(backend_settings_factory: Callable[..., Settings], sink_550: TestSink,
                          wait_for: WaitFor, query: Query) -> AsyncIterator[Console]:
    """`console` on the test's backend (`backend`: SQLite, then PostgreSQL)."""
    settings = backend_settings_factory(sink=sink_550, backup_storage_enabled=True)
    async with AsyncExitStack() as stack:
        yield Console(settings, FakeClock(), stack, wait_for, query)


