"""Log: the event log of every engine on this database, filtered by service, level and a
search, following new entries. The same whether the console hosts the engine or is attached:
the entries come from the database (`Engine.read_log`), never from this process alone.

`/` is the console's one search language (`engine/search.py`) with the log's terms: free text
(in the message or the event), `service:`, `level:` (that level and worse), `older:`,
`newer:`; a bad term is one line under the box and the search shown is kept."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Header, Input, RichLog, Select, Static

from vertex_tui.engine.eventlog import Cursor
from vertex_tui.engine.search import LOG_KEYS, Query, SearchError, parse
from vertex_tui.screens.base import VertexScreen
from vertex_tui.widgets.keybar import Key, KeyBar
from vertex_tui.widgets.table_search import open_box, search_binding

LEVELS = (("info", logging.INFO), ("warning", logging.WARNING), ("error", logging.ERROR),
          ("debug", logging.DEBUG))
FIRST_PAGE = 500  # the latest entries shown when the screen opens or a filter changes
MAX_LINES = 2000


class FollowingLog(RichLog):
    """A RichLog that, showing the latest entry, shows it still when it gets shorter (the
    search box or its error line appears above it)."""

    following = True

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self.following = new >= self.max_scroll_y

    @on(events.Resize)
    def keep_latest_in_view(self, event: events.Resize) -> None:
        if self.following:
            self.scroll_end(animate=False, immediate=True)


class LogScreen(VertexScreen):
    AUTO_FOCUS = "#log-lines"  # see VertexScreen.AUTO_FOCUS
    # This process's writer stored entries: read them now (entries of other engines come
    # with the periodic refresh).
    REFRESH_ON = frozenset({"LogWritten"})
    BINDINGS = [Binding("s", "cycle_service", "Service filter"),
                Binding("L", "cycle_level", "Level filter"),
                search_binding("search: text, service:, level:, older:, newer:"),
                Binding("escape", "clear_search", "Clear search", show=False)]

    def __init__(self) -> None:
        super().__init__()
        self.service: str | None = None
        self.level = logging.INFO
        self.search = ""
        self.search_query: Query | None = None  # the parsed `search` (not `query`: Textual's)
        self._cursor: Cursor | None = None  # None: load the first page again
        self._generation = 0  # bumped by every filter change: older reads are dropped
        self.shown: list[dict[str, Any]] = []  # the entries on screen, oldest first

    def services(self) -> list[str]:
        return [*self.bridge.services(), "engine"]

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="log-filters"):
            yield Select([(s, s) for s in self.services()], prompt="all services",
                         id="log-service")
            yield Select(list(LEVELS), value=logging.INFO, allow_blank=False, id="log-level")
        yield Input(placeholder="text service:email level:warning older:1h newer:15m"
                                " · Enter applies, Esc clears", id="log-search")
        yield Static("", id="log-search-error")
        yield FollowingLog(id="log-lines", wrap=False, markup=False, max_lines=MAX_LINES)
        yield KeyBar()

    def footer_keys(self) -> list[Key]:
        return [Key("s", "service filter", "screen.cycle_service"),
                Key("L", "level filter", "screen.cycle_level"),
                Key("/", "search", "screen.search")]

    # ---- filters ----------------------------------------------------------------------------

    def _filters_changed(self) -> None:
        self._generation += 1
        self._cursor = None
        self.reload()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "log-service":
            # Cleared, the value is a sentinel (Select.NULL), not a service name.
            service = event.value if isinstance(event.value, str) else None
            if service == self.service:
                return
            self.service = service
        else:
            level = int(str(event.value))
            if level == self.level:
                return
            self.level = level
        self._filters_changed()

    def action_cycle_service(self) -> None:
        order = [None, *self.services()]
        self.service = order[(order.index(self.service) + 1) % len(order)]
        select = self.query_one("#log-service", Select)
        if self.service is None:
            select.clear()  # (assigning Select.BLANK is refused as an illegal value)
        else:
            select.value = self.service
        self._filters_changed()

    def action_cycle_level(self) -> None:
        numbers = [no for _, no in LEVELS]
        self.level = numbers[(numbers.index(self.level) + 1) % len(numbers)]
        self.query_one("#log-level", Select).value = self.level
        self._filters_changed()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        open_box(box, box)

    @on(Input.Submitted, "#log-search")
    def apply_search(self, event: Input.Submitted) -> None:
        error = self.query_one("#log-search-error", Static)
        try:
            query = parse(event.value, keys=LOG_KEYS, services=self.services())
        except SearchError as exc:  # one line under the box; the search shown stays
            error.update(str(exc))
            error.add_class("-shown")
            return
        error.remove_class("-shown")
        self.search = event.value.strip()
        self.search_query = None if query.empty else query
        self.query_one("#log-search", Input).set_class(bool(self.search), "-shown")
        self.query_one("#log-lines", RichLog).focus()
        self._filters_changed()

    def action_clear_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.value = ""
        box.remove_class("-shown")
        self.query_one("#log-search-error", Static).remove_class("-shown")
        self.query_one("#log-lines", RichLog).focus()
        if self.search:
            self.search = ""
            self.search_query = None
            self._filters_changed()

    # ---- entries ------------------------------------------------------------------------------

    async def refresh_snapshot(self) -> None:
        """The first page after a filter change, then only what is new (follow)."""
        generation, cursor = self._generation, self._cursor
        entries, after = await self.engine.read_log(
            service=self.service, level=self.level, search=self.search_query,
            after=cursor, limit=FIRST_PAGE if cursor is None else MAX_LINES)
        if generation != self._generation:
            return  # the filters changed meanwhile: that read reloads
        lines = self.query_one("#log-lines", RichLog)
        if cursor is None:
            lines.clear()
            self.shown = []
        self._cursor = after
        self.shown = [*self.shown, *entries][-MAX_LINES:]
        for entry in entries:
            lines.write(self._format(entry))

    def _format(self, entry: dict[str, Any]) -> str:
        from zoneinfo import ZoneInfo

        zone = ZoneInfo(self.engine.settings.timezone)
        stamp = datetime.fromisoformat(entry["at"]).astimezone(zone).strftime("%H:%M:%S")
        return f"{stamp} {entry['level']:<7} {entry['service']:<9} {entry['message']}"
