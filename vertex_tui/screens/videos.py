"""Videos: counts by status, upcoming changes, current rotation; check now."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Header, Label, Static

from vertex_tui.screens.base import VertexFooter, VertexScreen
from vertex_tui.timefmt import ago, clock_time, until


class VideosScreen(VertexScreen):
    REFRESH_ON = frozenset({"PassCompleted", "VideosChanged"})
    BINDINGS = [Binding("c", "check", "Check now")]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="video-counts")
        yield Label("Upcoming changes", classes="section-title")
        upcoming: DataTable[str] = DataTable(id="video-upcoming", cursor_type="row")
        upcoming.add_columns("When", "", "Change", "Video", "Title", "Portrait")
        yield upcoming
        yield Label("Current rotation", classes="section-title")
        rotating: DataTable[str] = DataTable(id="video-rotation", cursor_type="row")
        rotating.add_columns("Portrait", "Playing", "Mode", "Since")
        yield rotating
        yield VertexFooter()

    async def refresh_snapshot(self) -> None:
        doc = await self.engine.video.summary()
        # As the dashboard shows it: idle/standby when another engine runs the passes.
        status = (await self.engine.status())["services"]["video"]
        now = self.now()
        self.query_one("#video-counts", Static).update(
            f"scheduled {doc['scheduled']}   active {doc['active']}   inactive "
            f"{doc['inactive']}   archived {doc['archived']}\nlast pass "
            f"{ago(status['last_run'], now)}, next {until(status['next_run'], now)}   "
            f"state {status['state']}")
        table = self.query_one("#video-upcoming", DataTable)
        table.clear()
        for c in doc["upcoming"]:
            table.add_row(clock_time(c["at"]), until(c["at"], now), c["what"],
                          f"#{c['video']}", c["title"][:30], f"#{c['portrait']}")
        rotation = self.query_one("#video-rotation", DataTable)
        rotation.clear()
        for r in doc["rotating"]:
            rotation.add_row(f"#{r['portrait']} {r['portrait_title'][:24]}",
                             f"#{r['video']} {r['title'][:24]}", r["rotation"],
                             ago(r["since"], now))

    def action_check(self) -> None:
        self.act_on_engine("video.check", label="video check")
