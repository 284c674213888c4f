"""What every screen shares: access to the engine, periodic refresh, acting on the engine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from textual import work
from textual.screen import Screen
from textual.worker import Worker

from vertex_tui.bridge import Bridge, EngineEvent
from vertex_tui.engine import Engine, UsageError
from vertex_tui.widgets.dialogs import ConfirmDialog
from vertex_tui.widgets.keybar import Key, KeyBar

if TYPE_CHECKING:
    from vertex_tui.app import VertexApp

REFRESH_SECONDS = 2.0
# What an operator reads for an engine action (never its internal name, "backup.run").
ACTION_WORDS = {"backup.run": "backup", "email.drain": "drain", "lifecycle.check":
                "lifecycle check", "video.check": "video check", "email.reap": "reap"}
COUNT_WORDS = ("sent", "failed", "retrying", "deleted", "reaped", "queued")
# What a job run's result holds that is not something it did.
NOT_COUNTS = frozenset({"job", "status", "id", "size", "seconds", "full"})


def _total(value: object) -> int | float:
    """A count, or the sum of a nested dict of counts (rotation's deleted per kind)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, dict):
        return sum(_total(v) for v in value.values())
    return 0


def outcome_words(result: dict[str, Any]) -> str:
    """ "sent 5, failed 1, retrying 2" from an action's result (what it did), or "". A
    job's run says what it changed ("rotated 4, activated 2"), leaving out the zeros."""
    named = [f"{key} {result[key]:,}" for key in COUNT_WORDS
             if isinstance(result.get(key), int) and not isinstance(result[key], bool)]
    if named:
        return ", ".join(named)
    return ", ".join(f"{key} {_total(value):,g}" for key, value in result.items()
                     if key not in NOT_COUNTS and _total(value))


# Screen actions that change something (the engine's state, the queue, the backup records):
# disabled in a read-only console (`--attach --read-only`). A screen adds its own in
# `VertexScreen.MUTATING`.
MUTATING_ACTIONS = frozenset({
    "retry_selected", "retry_all", "toggle_pause", "drain", "cleanup", "cancel", "cancel_all",
    "cancel_selected", "trigger", "verify", "check", "run_job", "run_now", "pause_job",
    "resume_job", "toggle_job_pause"})
READ_ONLY_NOTE = "read-only console: actions are disabled (started with --read-only)"


def action_name(action: str | None) -> str:
    """`screen.retry_all` or `filter('1')` -> the bare action name."""
    return (action or "").removeprefix("screen.").partition("(")[0]


class VertexScreen(Screen[None]):
    """A screen that pulls a snapshot in a worker on mount, on a timer and on events."""

    # Engine event types (class names) that make this screen refresh at once.
    REFRESH_ON: frozenset[str] = frozenset()
    # The widget focused when the screen is shown: its main table, never a text box. Keys an
    # operator types ahead are resolved against the focused widget of the screen that is
    # current when they are handled; with Textual's default ("*": the first focusable
    # widget) the Email screen's hidden search box held the focus until on_mount moved it,
    # and it swallowed the `b` of a quick `e` `b` (an Input consumes printable keys).
    AUTO_FOCUS: ClassVar[str | None] = None
    # This screen's own mutating actions, beyond MUTATING_ACTIONS.
    MUTATING: frozenset[str] = frozenset()

    def locked(self, action: str | None) -> bool:
        """True if `action` (a binding's or a footer key's) changes something and this
        console is read-only."""
        name = action_name(action)
        return self.vertex.read_only and (name in MUTATING_ACTIONS or name in self.MUTATING)

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
        if self.vertex.read_only:
            self.notify(f"{label}: {READ_ONLY_NOTE}", severity="warning")
            return
        if self.bridge.attached:
            if not await self.bridge.engines_alive():
                # Say so at once: a request nobody picks up would wait in silence.
                if not await self.app.push_screen_wait(ConfirmDialog(
                        f"No engine is running on this database: {label} would wait until "
                        "one starts (a request stays queued for 10 minutes). Leave it "
                        "queued?", yes="Leave queued")):
                    self.notify(f"{label}: cancelled, nothing was requested")
                    return
                request_id = await self.engine.submit_request(action, args)
                self.notify(f"{label}: queued as request #{request_id}; an engine that starts "
                            "within 10 minutes runs it", severity="warning")
                return
            self.notify(f"{label}: requested from the running engine…")
        try:
            result = await self.bridge.act(action, args)
        except UsageError as exc:
            # A refusal (drain while paused, …) is a sentence for the operator, not a crash.
            self.notify(f"{label}: {exc}", severity="warning")
            self.reload()
            return
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
