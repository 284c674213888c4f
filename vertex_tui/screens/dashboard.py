"""Dashboard: one card per service, mail throughput, oldest pending mail, latest errors.

The cards are the engine's registry: the four built-in services, then any plug-in (its key
figures are the scalar fields of its `status()`), then those that failed to load (error).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.widgets import Header, Label, Sparkline, Static

from vertex_tui.screens.base import VertexScreen
from vertex_tui.timefmt import ago, clock_time
from vertex_tui.widgets.engines_panel import EnginesPanel
from vertex_tui.widgets.keybar import KeyBar
from vertex_tui.widgets.service_card import ServiceCard

# `t` cycles the range of the mail sparklines (see `vertex-tui email history`).
RANGES = {"1h": "per minute, last hour", "24h": "per hour, last 24 h",
          "7d": "per hour, last 7 days"}
TITLES = {"email": "Email queue", "backup": "Backups", "lifecycle": "Lifecycle",
          "video": "Videos"}
# Fields of a status() document that every card shows already (or that are not figures).
COMMON = frozenset({"state", "last_run", "next_run", "last_outcome", "holder", "error",
                    "last_error", "at"})


class DashboardScreen(VertexScreen):
    """Every service at a glance."""

    REFRESH_ON = frozenset({"PassCompleted", "BackupFinished", "QueuePaused", "QueueResumed",
                            "ServiceErrored", "JobsRetried", "RequestHandled"})
    BINDINGS = [Binding("t", "history_range", "1h/24h/7d")]
    history_range = "1h"

    def compose(self) -> ComposeResult:
        yield Header()
        services = self.bridge.services()
        with Grid(id="cards", classes="-more" if len(services) > len(TITLES) else ""):
            for service in services:
                yield ServiceCard(service, TITLES.get(service, service))
        with Horizontal(id="mail-strip"):
            with Vertical(id="throughput"):
                yield Label(_history_title("1h"), id="history-title", classes="section-title")
                with Horizontal(id="sparklines"):
                    yield Sparkline([0], id="sparkline")
                    yield Sparkline([0], id="sparkline-p95")
            yield Static("", id="oldest")
        yield EnginesPanel()
        yield Label("Latest errors", classes="section-title")
        yield Static("", id="errors")
        yield KeyBar()

    async def refresh_snapshot(self) -> None:
        status = await self.engine.status()
        history = await self.engine.email.history(self.history_range)
        errors = await self.engine.recent_errors(5)
        now = self.now()
        services = status["services"]
        figures: dict[str, Any] = {
            "email": lambda s: (f"pending {s['pending']}  failed {s['failed']}\n"
                                f"sent {s['sent']}  last min {s['sent_last_minute']}"
                                + _relay_line(s.get("smtp"))),
            "backup": lambda s: ("last verified restore "
                                 + (ago(s["last_verified_restore"]["at"], now)
                                    if s.get("last_verified_restore") else "never")),
            "lifecycle": lambda s: pass_counts(s.get("last_counts")),
            "video": lambda s: pass_counts(s.get("last_counts")),
        }
        for card in self.query(ServiceCard):
            doc = services.get(card.service)
            if doc is None:
                continue
            try:
                text = figures.get(card.service, key_figures)(doc)
            except (KeyError, TypeError):  # a status without its figures (state error)
                text = ""
            card.show(doc, text, now)
        self.query_one("#history-title", Label).update(_history_title(self.history_range))
        self.query_one("#sparkline", Sparkline).data = [b.sent for b in history] or [0]
        self.query_one("#sparkline-p95", Sparkline).data = [b.p95_ms or 0 for b in history]
        await self.query_one(EnginesPanel).load(self.engine, status, now)
        email = services["email"]
        age = email.get("oldest_pending_age_seconds")
        self.query_one("#oldest", Static).update(
            oldest_line(age, now) + f"\nsent last minute: {email['sent_last_minute']}")
        # One line each, cut by the CSS at the screen's width (text-overflow: ellipsis).
        lines = [f"{clock_time(e['at'])}  {e['service']:9} "
                 + (str(e["error"]).splitlines() or [""])[0] for e in errors]
        self.query_one("#errors", Static).update("\n".join(lines) or "no errors")


    def action_history_range(self) -> None:
        """Show the next range of the mail sparklines: 1h, 24h, 7d, 1h..."""
        names = list(RANGES)
        self.history_range = names[(names.index(self.history_range) + 1) % len(names)]
        self.reload()



def key_figures(status: dict[str, Any], limit: int = 4) -> str:
    """A plug-in's figures: the scalar fields of its status, two to a line."""
    shown = [f"{k} {v}" for k, v in status.items()
             if k not in COMMON and isinstance(v, (int, float, str)) and not isinstance(v, bool)
             ][:limit]
    return "\n".join("  ".join(shown[i:i + 2]) for i in range(0, len(shown), 2))


def _history_title(range_name: str) -> str:
    return f"Mail sent {RANGES[range_name]} │ p95 latency"


def _relay_line(smtp: dict[str, object] | None) -> str:
    """A line for the email card while the SMTP relay is unreachable (nothing otherwise)."""
    if not smtp or smtp.get("state") != "unreachable":
        return ""
    since = smtp.get("since")
    at = clock_time(since if isinstance(since, str) else None)
    return f"\nSMTP relay unreachable since {at} ({str(smtp.get('error'))[:60]})"


def oldest_line(age: float | None, now: float) -> str:
    """The age of the oldest pending mail, its label on a line of its own: the strip is a
    third of the screen (24 characters at 80 columns, 31 at 100), narrower than
    "oldest pending mail: 10 minutes ago", which wrapped mid-phrase."""
    return "no mail waiting" if age is None else f"oldest pending mail\n{ago(now - age, now)}"


def pass_counts(counts: dict[str, object] | None) -> str:
    """What a service's last pass did, for its card: the first figure beside "last pass:",
    the others two to a line, so that no line outgrows a card at 80 columns (35 characters:
    "last pass: activated 0  deactivated 0  rotated 0" wrapped its last number alone)."""
    if not counts:
        return "no pass yet"
    keys = ("emails", "activated", "deactivated", "rotated")
    shown = [f"{k} {counts[k]}" for k in keys if k in counts] or ["ok"]
    rest = shown[1:]
    return "\n".join([f"last pass: {shown[0]}",
                      *("  ".join(rest[i:i + 2]) for i in range(0, len(rest), 2))])
