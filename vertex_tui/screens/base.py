"""What every screen shares: access to the engine, periodic refresh, acting on the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import work
from textual.screen import Screen
from textual.worker import Worker

from vertex_tui.bridge import Bridge, EngineEvent
from vertex_tui.engine import Engine
from vertex_tui.widgets.keybar import Key, KeyBar

if TYPE_CHECKING:
    from vertex_tui.app import VertexApp

REFRESH_SECONDS = 2.0
# What an operator reads for an engine action (never its internal name, "backup.run").
ACTION_WORDS = {"backup.run": "backup", "email.drain": "drain", "lifecycle.check":
                "lifecycle check", "video.check": "video check", "email.reap": "reap"}
COUNT_WORDS = ("sent", "failed", "retrying", "deleted", "reaped", "queued")


def outcome_words(result: dict[str, Any]) -> str:
    """ "sent 5, failed 1, retrying 2" from an action's result (what it did), or ""."""
    return ", ".join(f"{key} {result[key]:,}" for key in COUNT_WORDS
                     if isinstance(result.get(key), int))


class VertexScreen(Screen[None]):
    """A screen that pulls a snapshot in a worker on mount, on a timer and on events."""

    # Engine event types (class names) that make this screen refresh at once.
    REFRESH_ON: frozenset[str] = frozenset()
    # The widget focused when the screen is shown: its main table, never a text box. Keys an
    # operator types ahead are resolved against the focused widget of the screen that is
    # current when they are handled; with Textual's default ("*": the first focusable
    # widget) the Email screen's hidden search box held the focus until on_mount moved it,
    # and it swallowed the `b` of a quick `e` `b` (an Input consumes printable keys).
    AUTO_FOCUS: str | None = None

    @property
    def vertex(self) -> VertexApp:
        from vertex_tui.app import VertexApp

        assert isinstance(self.app, VertexApp)
        return self.app

    @property
    def engine(self) -> Engine:
        return self.vertex.engine

    @property
    def bridge(self) -> Bridge:
        return self.vertex.bridge

    def now(self) -> float:
        return self.engine.clock.time()

    def footer_keys(self) -> list[Key]:
        """The keys the footer shows for this screen, most used first: by default its
        shown bindings in declaration order. Screens with many keys name shorter ones."""
        return [Key(self.app.get_key_display(b), b.description.lower(), f"screen.{b.action}")
                for _, b in self._bindings if b.show and b.description]

    def refresh_footer(self) -> None:
        """Redraw the footer (a label that depends on state changed, e.g. pause/resume)."""
        for bar in self.query(KeyBar):
            bar.redraw()

    def on_mount(self) -> None:
        self.reload()
        if self.vertex.live_refresh:
            self.set_interval(REFRESH_SECONDS, self.refresh_if_shown)

    def refresh_if_shown(self) -> None:
        """The periodic refresh, of the screen in sight only: a screen of another mode keeps
        its timer and would redraw every 2 s unseen (the dashboard: ~9% of a core). It
        reloads when shown again (on_screen_resume), like for engine events."""
        if self.is_current:
            self.reload()

    def on_screen_resume(self) -> None:
        self.reload()

    def on_engine_event(self, message: EngineEvent) -> None:
        if type(message.event).__name__ in self.REFRESH_ON and self.is_current:
            self.reload()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Worker.StateChanged does not bubble: hand failures to the app's one handler.
        self.vertex.report_failed_worker(event)

    def reload(self) -> None:
        self.load_snapshot()

    @work(exclusive=True, exit_on_error=False, group="snapshot")
    async def load_snapshot(self) -> None:
        await self.refresh_snapshot()

    async def refresh_snapshot(self) -> None:
        """Await engine queries and redraw; subclasses implement."""

    @work(exit_on_error=False, group="action")
    async def act_on_engine(self, action: str, args: dict[str, Any] | None = None,
                            label: str = "") -> None:
        """An engine action in a worker; the outcome is a notification, never a crash.

        (Not `run_action`: that is Textual's, which runs a key binding's action string.)"""
        label = label or ACTION_WORDS.get(action, action.replace(".", " ").replace("_", " "))
        if self.bridge.attached:
            self.notify(f"{label}: requested from the running engine…")
        result = await self.bridge.act(action, args)
        status = result.get("status", "ok")
        if status == "ok":
            counts = outcome_words(result)  # what it did ("drain: sent 5, failed 1, ...")
            detail = result.get("path") or result.get("via") or ""
            self.notify(f"{label}: {counts}" if counts else f"{label}: done {detail}".strip())
        elif status == "skipped":
            self.notify(f"{label}: skipped — {result.get('reason')}", severity="warning")
        elif status == "pending":
            self.notify(f"{label}: {result.get('error')}", severity="warning")
        else:
            self.notify(f"{label} failed: {result.get('error')}", severity="error")
        self.reload()
