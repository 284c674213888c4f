"""`?` help: this screen's keys first, then switching screens, keys that work anywhere, and
last the generic keys of the focused widget (a table's cursor keys).

Textual's HelpPanel lists the bindings of the focus chain from the focused widget up: on the
Email screen that was 11 DataTable cursor keys (and Textual's own) before any key of the
screen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static

# Textual's own screen bindings, listed under "Anywhere" (or not at all: copying text).
GENERIC = frozenset({"app.focus_next", "app.focus_previous", "screen.copy_text"})


def _bindings(node: Any) -> Iterable[Binding]:
    for _, binding in node._bindings:
        yield binding


class KeysHelp(VerticalScroll):
    """The help panel, docked right on the current screen (`?` toggles it). It floats on a
    layer of its own between the header and the footer: the screen keeps its layout, and the
    header's state and the footer's keys stay in sight."""

    DEFAULT_CSS = """
    KeysHelp {
        dock: right;
        layer: help;
        width: 44;
        max-width: 60%;
        margin-top: 1;
        background: $panel;
        border-left: vkey $foreground 30%;
        padding: 0 1;
    }
    KeysHelp .help-body {
        width: 1fr;
    }
    """

    def __init__(self, screen: Screen[Any]) -> None:
        super().__init__(id="keys-help")
        self._target = screen

    def compose(self) -> ComposeResult:
        yield Static(self.text(), classes="help-body")

    def on_mount(self) -> None:
        self.fit_height()

    def fit_height(self) -> None:
        """From under the header to above the footer (a docked `1fr` on a layer of its own
        takes the whole screen)."""
        self.styles.height = max(1, self.screen.size.height - 2)

    def sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """(heading, [(key, what it does)]) in the order shown."""
        from vertex_tui.app import SCREENS

        app = self.app
        screen = self._target
        title = SCREENS.get(str(getattr(app, "current_mode", "")), ("This screen", ""))[0]
        locked = getattr(screen, "locked", lambda _: False)
        own = [(app.get_key_display(b), (b.tooltip or b.description)
                + (" (disabled: read-only)" if locked(b.action) else ""))
               for b in _bindings(screen)
               if b.description and b.action not in GENERIC]
        screens = [(key, name) for _, (name, key) in SCREENS.items()]
        anywhere = [("?", "close this help"), ("q", "quit"),
                    ("^p", "palette: every action by name"),
                    ("tab", "next pane"), ("⇧tab", "previous pane")]
        out = [(f"{title} keys", own or [("", "none of its own: see Screens")]),
               ("Screens", screens), ("Anywhere", anywhere)]
        focused = screen.focused
        if focused is not None:
            widget_keys = [(app.get_key_display(b), b.description)
                           for b in _bindings(focused) if b.description]
            if widget_keys:
                out.append((f"In the {_kind(focused)}", widget_keys))
        return out

    def text(self) -> Content:
        parts: list[str | tuple[str, str]] = []
        for heading, keys in self.sections():
            if parts:
                parts.append("\n")
            parts += [(heading, "bold $text-accent"), "\n"]
            width = max((len(key) for key, _ in keys), default=1)
            for key, what in keys:
                parts += [(f" {key:>{width}}", "bold $footer-key-foreground"), f"  {what}\n"]
        return Content.assemble(*parts)


def _kind(widget: Any) -> str:
    name = type(widget).__name__
    return {"StableTable": "table", "DataTable": "table", "RichLog": "log",
            "Select": "menu", "Input": "text box"}.get(name, name)
