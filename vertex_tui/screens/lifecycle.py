"""Lifecycle: subscription counts, notices sent, upcoming expirations; check now."""

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


class LifecycleScreen(TableSearchMixin, VertexScreen):
    AUTO_FOCUS = "#lifecycle-upcoming"  # see VertexScreen.AUTO_FOCUS
    REFRESH_ON = frozenset({"PassCompleted", "LifecycleStatusChanged", "NoticesQueued"})
    BINDINGS = [Binding("c", "check", "Check now"),
                search_binding("filter the table: free text"),
                Binding("escape", "clear_search", "Clear search", show=False)]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="lifecycle-counts")
        yield Static("", id="lifecycle-notices")
        yield Label("Upcoming expirations", classes="section-title")
        yield TableSearch("#lifecycle-upcoming", "the upcoming expirations")
        table = StableTable(id="lifecycle-upcoming", cursor_type="row", zebra_stripes=True)
        table.add_columns("Ends", "", "Kind", "ID", "Name", "Owner")
        yield table
        yield KeyBar()

    async def refresh_snapshot(self) -> None:
        doc = await self.engine.lifecycle.summary()
        # As the dashboard shows it: idle/standby when another engine runs the passes.
        status = (await self.engine.status())["services"]["lifecycle"]
        now = self.now()
        self.query_one("#lifecycle-counts", Static).update(
            f"active {doc['active']}   expiring {doc['expiring']}   archived {doc['archived']}"
            + (f"   not yet computed {doc['unknown']}" if doc["unknown"] else "")
            + f"\n{status['state'].upper()} · last pass {ago(status['last_run'], now)}, next "
            + next_run(status, now))
        n, r = doc["notifications"], doc["notifications_last_24h"]
        self.query_one("#lifecycle-notices", Static).update(
            f"notices sent — 7 days: {n['7days']} ({r['7days']} in 24 h)   24 hours: "
            f"{n['24hours']} ({r['24hours']})   expired: {n['expired']} ({r['expired']})   "
            f"skipped as too old: {doc['notifications_skipped']}")
        self.query_one("#lifecycle-upcoming", StableTable).show_rows([
            (f"{u['kind']}:{u['id']}",
             (clock_time(u["subscription_end"]), until(u["subscription_end"], now), u["kind"],
              str(u["id"]), u["name"][:30], u["owner"]))
            for u in doc["upcoming"]])

    def action_check(self) -> None:
        self.act_on_engine("lifecycle.check", label="lifecycle check")
