"""A dashboard card: one service's state, last and next run, and key figures."""

from __future__ import annotations

import re
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.content import Content
from textual.widgets import Static

from vertex_tui.timefmt import ago, until

STATES = ("running", "idle", "paused", "standby", "error", "stopped", "disabled")


class ServiceCard(Vertical):
    """Shows `status()` of one service; the state is also a CSS class (`-running`, ...)."""

    def __init__(self, service: str, title: str) -> None:
        # A plug-in's name (an entry point's) may hold characters an id cannot.
        super().__init__(id=f"card-{re.sub(r'[^A-Za-z0-9_-]', '_', service)}", classes="card")
        self.service = service
        self.card_title = title
        self.border_title = title

    def compose(self) -> ComposeResult:
        yield Static("", classes="card-body")

    def show(self, status: dict[str, Any], figures: str, now: float) -> None:
        state = str(status.get("state", "stopped"))
        for name in STATES:
            self.set_class(state == name, f"-{name}")
        # The state sits in the card's title: it is never clipped, and it leaves the body's
        # lines to the figures (a 24-row terminal has five a card).
        self.border_title = Content.assemble(f"{self.card_title} · ", (state.upper(), "bold"))
        outcome = status.get("last_outcome")
        last = ago(status.get("last_run"), now)
        if outcome and status.get("last_run"):
            last += f" ({outcome})"
        lines = [f"last run  {last}", f"next run  {next_run(status, now)}"]
        if figures:
            lines.append(figures)
        # A pass's error (last_error), or why a service could not load or start (error).
        error = status.get("last_error") or status.get("error")
        if error and state == "error":
            lines.append(f"error: {str(error)[:80]}")
        self.query_one(".card-body", Static).update("\n".join(lines))


def next_run(status: dict[str, Any], now: float) -> str:
    """When the service runs next, or why it does not: a paused or stopped service has no
    next run, whatever time its schedule or its oldest job would give."""
    state = str(status.get("state", "stopped"))
    if state == "paused":
        pending = status.get("pending")
        return f"none — paused, {pending:,} pending" if isinstance(pending, int) else (
            "none — paused")
    if state in ("stopped", "disabled"):
        return f"none — {state}"
    return until(status.get("next_run"), now)
