"""VertexApp: the Textual console. It gets an open Engine; it never opens the database itself.

    async with Engine(settings) as engine:
        await VertexApp(engine).run_async()
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from importlib import import_module, resources
from typing import Any

from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from vertex_tui.bridge import Bridge, ConsoleLogHandler, EngineEvent, LogRecorded
from vertex_tui.engine import Engine
from vertex_tui.screens.dashboard import DashboardScreen
from vertex_tui.widgets.shorten import shorten_middle

STYLES = resources.files("vertex_tui") / "styles"
SCREENS = {"dashboard": ("Dashboard", "d"), "jobs": ("Jobs", "j"), "email": ("Email queue", "e"),
           "backups": ("Backups", "b"), "lifecycle": ("Lifecycle", "l"),
           "videos": ("Videos", "v"), "log": ("Log", "o")}


# Palette entries that only look (allowed in a read-only console); every other one acts.
LOOKING = ("Switch to ", "Show ")


class VertexCommands(Provider):
    """Every console action in the command palette (ctrl+p)."""

    def _commands(self) -> list[tuple[str, Any, str]]:
        app = self.app
        assert isinstance(app, VertexApp)
        out: list[tuple[str, Any, str]] = [
            (f"Switch to {title}", partial(app.switch_mode, mode), f"screen, key {key}")
            for mode, (title, key) in SCREENS.items()
        ]
        out += [
            ("Retry all failed mail", partial(app.screen_action, "email", "retry_all"),
             "asks for confirmation with the count"),
            ("Pause or resume mail delivery",
             partial(app.screen_action, "email", "toggle_pause"), "every engine follows"),
            ("Drain the mail queue", partial(app.screen_action, "email", "drain"),
             "deliver everything due now"),
            ("Clean up old mail", partial(app.screen_action, "email", "cleanup"),
             "sent and failed older than N days"),
        ]
        from vertex_tui.screens.jobs import job_commands

        return out + job_commands(app)  # every job of every service, from the registry

    def _marked(self) -> list[tuple[str, Any, str]]:
        """The commands, those that change something marked and refused when read-only."""
        app = self.app
        assert isinstance(app, VertexApp)
        if not app.read_only:
            return self._commands()
        return [(name, callback, help_text) if name.startswith(LOOKING)
                else (name, partial(app.refuse_read_only, name), "disabled: read-only console")
                for name, callback, help_text in self._commands()]

    async def discover(self) -> Hits:
        for name, callback, help_text in self._marked():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._marked():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


# The screens other than the dashboard: imported when first shown, or PRELOAD_SECONDS after
# the start. Importing them up front (DataTable, Input, RichLog, Select, dialogs) cost ~80 ms
# of a ~1.1 s cold start (bench/console_latency.py).
LAZY_SCREENS = {"jobs": ("jobs", "JobsScreen"), "email": ("email_queue", "EmailQueueScreen"),
                "backups": ("backups", "BackupsScreen"),
                "lifecycle": ("lifecycle", "LifecycleScreen"),
                "videos": ("videos", "VideosScreen"), "log": ("log", "LogScreen")}
PRELOAD_SECONDS = 1.0
# The same error text is shown once per this many seconds: a failing refresh (every 2 s) or a
# service erroring on every tick must not bury the screen under identical notifications.
ERROR_REPEAT_SECONDS = 60.0


# The header's title area: the terminal's width less Textual's icon (8) and clock space (10),
# and the " — " between the title and the subtitle.
HEADER_CHROME = 8 + 10 + 3


def header_subtitle(state: str, path: str, width: int, title_length: int) -> str:
    """`state` in full (NO ENGINE RUNNING is never clipped), then `path` shortened in the
    middle to what is left of a `width`-column header."""
    room = width - HEADER_CHROME - title_length - len(state) - 1
    return f"{state} {shorten_middle(path, max(room, 12))}"


def database_title(settings: Any) -> str:
    """What the header names the database by: the file, or the PostgreSQL server and
    database ("postgresql://db.example.org:5432/vertex"): no user, no password, no
    parameters (the header is one line; `vertex-tui config` shows the whole URL masked)."""
    if settings.database_url is None:
        return str(settings.db_path)
    from urllib.parse import urlsplit

    parts = urlsplit(str(settings.database_url.masked()))
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _lazy_screen(module: str, name: str) -> Callable[[], Screen[Any]]:
    def make() -> Screen[Any]:
        screen: Screen[Any] = getattr(import_module(f"vertex_tui.screens.{module}"), name)()
        return screen

    return make


def preload_screens() -> None:
    for module, _ in LAZY_SCREENS.values():
        import_module(f"vertex_tui.screens.{module}")


class VertexApp(App[None]):
    """The operations console."""

    TITLE = "vertex-tui"
    CSS_PATH = [str(STYLES / "app.tcss")]
    MODES = {"dashboard": DashboardScreen, **{mode: _lazy_screen(*where)
                                              for mode, where in LAZY_SCREENS.items()}}
    DEFAULT_MODE = "dashboard"
    COMMANDS = App.COMMANDS | {VertexCommands}
    BINDINGS = [
        *[Binding(key, f"switch_mode('{mode}')", title)
          for mode, (title, key) in SCREENS.items()],
        Binding("question_mark", "toggle_help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, engine: Engine, *, attached: bool = False, live_refresh: bool = True,
                 log_handler: ConsoleLogHandler | None = None, read_only: bool = False) -> None:
        super().__init__()
        self.engine = engine
        # `--attach --read-only`: every action that changes something is refused (the keys
        # are dimmed in the footer and marked in help and the palette).
        self.read_only = read_only
        self.bridge = Bridge(engine, attached=attached)
        self.live_refresh = live_refresh
        self.log_handler = log_handler or ConsoleLogHandler()
        self.log_handler.app = self
        self._errors_shown: dict[str, float] = {}
        self._engine_state = ""

    def notify_error(self, message: str, *, title: str = "") -> None:
        """An error notification, once per ERROR_REPEAT_SECONDS for the same text."""
        now = time.monotonic()
        if now - self._errors_shown.get(message, -ERROR_REPEAT_SECONDS) < ERROR_REPEAT_SECONDS:
            return
        self._errors_shown = {text: at for text, at in self._errors_shown.items()
                              if now - at < ERROR_REPEAT_SECONDS}
        self._errors_shown[message] = now
        self.notify(message, title=title, severity="error")

    def on_mount(self) -> None:
        self.set_timer(PRELOAD_SECONDS, preload_screens)  # after the first frames
        self.bridge.connect(self)
        self._engine_state = "ATTACHED ·" if self.bridge.attached else "engine on"
        if self.read_only:
            self._engine_state = "READ-ONLY " + self._engine_state
        self.show_header()
        if self.bridge.attached:
            self.check_engines()
            if self.live_refresh:
                self.set_interval(5.0, self.check_engines)

    def on_unmount(self) -> None:
        self.bridge.disconnect()
        self.log_handler.app = None

    def check_engines(self) -> None:
        self.run_worker(self._check_engines(), exclusive=True, group="engines",
                        exit_on_error=False)

    async def _check_engines(self) -> None:
        alive = await self.bridge.engines_alive()
        state = f"engine alive ({len(alive)})" if alive else "NO ENGINE RUNNING"
        self._engine_state = f"{'READ-ONLY ' if self.read_only else ''}ATTACHED · {state} ·"
        self.show_header()

    def show_header(self) -> None:
        """The header: the engine's state in full, the database path shortened to fit."""
        self.sub_title = header_subtitle(self._engine_state, database_title(self.engine.settings),
                                         self.size.width, len(self.title))

    def on_resize(self) -> None:
        if self._engine_state:
            self.show_header()
        from vertex_tui.widgets.keyshelp import KeysHelp

        for panel in self.screen.query(KeysHelp) if self.screen_stack else ():
            panel.fit_height()

    def on_engine_event(self, message: EngineEvent) -> None:
        """Forward engine events to the current screen (others refresh when shown)."""
        from vertex_tui.engine.events import ServiceErrored

        if isinstance(message.event, ServiceErrored):
            self.notify_error(f"{message.event.service}: {message.event.error}")
        if self.screen_stack:
            self.screen.post_message(EngineEvent(message.event))

    def on_log_recorded(self, message: LogRecorded) -> None:
        if self.screen_stack:
            self.screen.post_message(LogRecorded())

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.report_failed_worker(event)

    def report_failed_worker(self, event: Worker.StateChanged) -> None:
        """One handler for every failed worker, the app's and the screens' (which forward
        theirs: `Worker.StateChanged` does not bubble): a notification, never a crash."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            logging.getLogger(__name__).error("console worker %s failed: %r",
                                              event.worker.name, error, exc_info=error)
            from vertex_tui.engine.errors import VertexError

            # Ours say what is wrong in words; anything else also names its kind.
            text = str(error) if isinstance(error, VertexError) else (
                f"{type(error).__name__}: {error}")
            self.notify_error(text, title="Something went wrong")

    def action_toggle_help(self) -> None:
        from vertex_tui.widgets.keyshelp import KeysHelp

        shown = self.screen.query(KeysHelp)
        if shown:
            shown.remove()
        else:
            self.screen.mount(KeysHelp(self.screen))

    def refuse_read_only(self, what: str) -> None:
        from vertex_tui.screens.base import READ_ONLY_NOTE

        self.notify(f"{what}: {READ_ONLY_NOTE}", severity="warning")

    async def _dispatch_action(self, namespace: Any, action_name: str, params: Any) -> bool:
        """Every key, footer click and palette entry passes here: in a read-only console a
        screen's mutating action is refused with a note (and the key is consumed)."""
        from vertex_tui.screens.base import VertexScreen

        if isinstance(namespace, VertexScreen) and namespace.locked(action_name):
            self.refuse_read_only(action_name.replace("_", " "))
            return True
        return await super()._dispatch_action(namespace, action_name, params)

    async def screen_action(self, mode: str, action: str) -> None:
        await self.switch_mode(mode)
        await self.run_action(action, self.screen)

    def engine_action(self, action: str, args: dict[str, Any] | None = None,
                      label: str = "") -> None:
        """Run an engine action from the palette on the screen under any open dialog (a
        dialog is not a VertexScreen, and the action must not be dropped silently)."""
        from vertex_tui.screens.base import VertexScreen

        screen = next((s for s in reversed(self.screen_stack) if isinstance(s, VertexScreen)),
                      None)
        if screen is None:
            self.notify(f"{action}: no screen to run it from", severity="error")
            return
        screen.act_on_engine(action, args, label=label)
