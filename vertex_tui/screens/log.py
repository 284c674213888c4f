"""Log: live engine log records and events, filtered by service and level."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Header, RichLog, Select

from vertex_tui.bridge import LogLine, LogRecorded
from vertex_tui.screens.base import VertexScreen
from vertex_tui.widgets.keybar import KeyBar

LEVELS = (("info", logging.INFO), ("warning", logging.WARNING), ("error", logging.ERROR),
          ("debug", logging.DEBUG))


class LogScreen(VertexScreen):
    AUTO_FOCUS = "#log-lines"  # see VertexScreen.AUTO_FOCUS
    BINDINGS = [Binding("s", "cycle_service", "Service filter"),
                Binding("L", "cycle_level", "Level filter")]

    def __init__(self) -> None:
        super().__init__()
        self.service: str | None = None
        self.level = logging.INFO
        self._shown = 0
        self.services: list[str] = []  # the engine's registry, then "engine" (on compose)

    def compose(self) -> ComposeResult:
        yield Header()
        self.services = [*self.bridge.services(), "engine"]
        with Horizontal(id="log-filters"):
            yield Select([(s, s) for s in self.services], prompt="all services", id="log-service")
            yield Select([(name, no) for name, no in LEVELS], value=logging.INFO,
                         allow_blank=False, id="log-level")
        yield RichLog(id="log-lines", wrap=False, markup=False, max_lines=2000)
        yield KeyBar()

    def on_mount(self) -> None:
        self.redraw()

    def on_log_recorded(self, message: LogRecorded) -> None:
        self.append_new()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "log-service":
            self.service = None if event.value is Select.BLANK else str(event.value)
        else:
            self.level = int(str(event.value))
        self.redraw()

    def action_cycle_service(self) -> None:
        order = [None, *self.services]
        self.service = order[(order.index(self.service) + 1) % len(order)]
        select = self.query_one("#log-service", Select)
        select.value = Select.BLANK if self.service is None else self.service

    def action_cycle_level(self) -> None:
        numbers = [no for _, no in LEVELS]
        self.level = numbers[(numbers.index(self.level) + 1) % len(numbers)]
        self.query_one("#log-level", Select).value = self.level

    def _keep(self, line: LogLine) -> bool:
        return line.levelno >= self.level and (self.service is None or line.service == self.service)

    @staticmethod
    def _format(line: LogLine) -> str:
        stamp = datetime.fromtimestamp(line.at, UTC).strftime("%H:%M:%S")
        return f"{stamp} {line.level:<7} {line.service:<9} {line.text}"

    def redraw(self) -> None:
        log = self.query_one(RichLog)
        log.clear()
        handler = self.vertex.log_handler
        for line in list(handler.lines):
            if self._keep(line):
                log.write(self._format(line))
        self._shown = handler.total

    def append_new(self) -> None:
        handler = self.vertex.log_handler
        fresh = min(handler.total - self._shown, len(handler.lines))
        self._shown = handler.total
        if fresh <= 0:
            return
        log = self.query_one(RichLog)
        for line in list(handler.lines)[-fresh:]:
            if self._keep(line):
                log.write(self._format(line))
