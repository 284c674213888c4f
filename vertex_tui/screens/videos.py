"""Videos: counts by status, upcoming changes, current rotation; check now."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Header, Label, Static

from vertex_tui.screens.base import VertexScreen
from vertex_tui.timefmt import ago, clock_time, until
from vertex_tui.widgets.keybar import KeyBar
from vertex_tui.widgets.service_card import next_run
from vertex_tui.widgets.table_search import TableSearch, TableSearchMixin, search_binding
from vertex_tui.widgets.tables import StableTable


class VideosScreen(TableSearchMixin, VertexScreen):
    AUTO_FOCUS = "#video-upcoming"  # see VertexScreen.AUTO_FOCUS
    REFRESH_ON = frozenset({"PassCompleted", "VideosChanged"})
    BINDINGS = [Binding("c", "check", "Check now"),
                search_binding("filter the table: free text"),
                Binding("escape", "clear_search", "Clear search", show=False)]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="video-counts")
        yield Label("Upcoming changes", classes="section-title")
        yield TableSearch("#video-upcoming", "the upcoming changes")
        upcoming = StableTable(id="video-upcoming", cursor_type="row")
        upcoming.add_columns("When", "", "Change", "Video", "Title", "Portrait")
        yield upcoming
        yield Label("Current rotation", classes="section-title")
        yield TableSearch("#video-rotation", "the current rotation")
        rotating = StableTable(id="video-rotation", cursor_type="row")
        rotating.add_columns("Portrait", "Playing", "Mode", "Since")
        yield rotating
        yield KeyBar()

    async def refresh_snapshot(self) -> None:
        doc = await self.engine.video.summary()
        # As the dashboard shows it: idle/standby when another engine runs the passes.
        status = (await self.engine.status())["services"]["video"]
        now = self.now()
        self.query_one("#video-counts", Static).update(
            f"scheduled {doc['scheduled']}   active {doc['active']}   inactive "
            f"{doc['inactive']}   archived {doc['archived']}\n{status['state'].upper()} · "
            f"last pass {ago(status['last_run'], now)}, next {next_run(status, now)}")
        self.query_one("#video-upcoming", StableTable).show_rows([
            (f"{c['what']}:{c['video']}:{c['at']}",
             (clock_time(c["at"]), until(c["at"], now), c["what"], f"#{c['video']}",
              c["title"][:30], f"#{c['portrait']}"))
            for c in doc["upcoming"]])
        self.query_one("#video-rotation", StableTable).show_rows([
            (str(r["portrait"]),
             (f"#{r['portrait']} {r['portrait_title'][:24]}", f"#{r['video']} {r['title'][:24]}",
              r["rotation"], ago(r["since"], now)))
            for r in doc["rotating"]])

    def action_check(self) -> None:
        self.act_on_engine("video.check", label="video check")
