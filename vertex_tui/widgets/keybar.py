"""The footer: the screen's most used keys and `? help` always, then what else fits.

Textual's Footer lists every shown binding in binding order and lets the end fall off: at 80
columns the screen's own keys crowded out `?` and `q`, and the Email screen lost `p D C`. Here
the screen names its keys in order of use (`VertexScreen.footer_keys`), `fit_keys` decides
what fits the width, and a click on a key runs its action, as on Textual's footer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from textual import events
from textual.content import Content
from textual.widgets import Static


@dataclass(frozen=True)
class Key:
    """One footer entry: the key as shown ("r", "1-5", "?"), a short label, and the action a
    click runs (None: shown only, e.g. a key range)."""

    key: str
    label: str
    action: str | None = None

    @property
    def width(self) -> int:
        return len(self.key) + 1 + len(self.label) + 1  # " r retry": a space before each


HELP = Key("?", "help", "app.toggle_help")
QUIT = Key("q", "quit", "app.quit")
PALETTE = Key("^p", "palette", "app.command_palette")


def fit_keys(screen_keys: Sequence[Key], nav_keys: Sequence[Key], width: int) -> list[Key]:
    """What the footer shows in `width` columns, in this order: the screen's keys (as many
    as fit, the most used first) and `? help` — always —, then `q quit`, the screen switch
    keys (all of them or none) and the palette, each only if it fits in what is left."""
    shown = [*screen_keys]
    while shown and sum(k.width for k in shown) + HELP.width > width:
        shown.pop()
    out = [*shown, HELP]
    used = sum(k.width for k in out)
    for extra in ([QUIT], list(nav_keys), [PALETTE]):
        need = sum(k.width for k in extra)
        if used + need <= width:
            out += extra
            used += need
    return out


class KeyBar(Static):
    """A one-line footer drawn from `fit_keys`; recomputed on resize and on request."""

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        width: 1fr;
        background: $footer-background;
        color: $footer-description-foreground;
        text-wrap: nowrap;
        text-overflow: clip;
    }
    """

    def __init__(self) -> None:
        super().__init__("", id="keybar")
        self._spans: list[tuple[int, int, str | None]] = []
        self._shown: list[Key] | None = None

    def on_mount(self) -> None:
        self.redraw()

    def on_resize(self, event: events.Resize) -> None:
        self.redraw()

    def redraw(self) -> None:
        from vertex_tui.screens.base import VertexScreen

        screen = self.screen
        own = screen.footer_keys() if isinstance(screen, VertexScreen) else []
        keys = fit_keys(own, nav_keys(screen), self.size.width or self.app.size.width)
        if keys == self._shown:
            return
        self._shown = keys
        parts: list[str | tuple[str, str]] = []
        self._spans = []
        at = 0
        locked = screen.locked if isinstance(screen, VertexScreen) else (lambda _: False)
        for key in keys:
            if locked(key.action):  # a read-only console: shown, dimmed, says so if pressed
                parts += [" ", (f"{key.key} {key.label}", "dim strike")]
            else:
                parts += [" ", (key.key, "bold $footer-key-foreground"), f" {key.label}"]
            self._spans.append((at, at + key.width, key.action))
            at += key.width
        self.update(Content.assemble(*parts))

    async def on_click(self, event: events.Click) -> None:
        for start, end, action in self._spans:
            if start <= event.x < end and action:
                await self.run_action(action)
                return

    @property
    def shown(self) -> list[Key]:
        """The keys on display (for tests and the help screen)."""
        return list(self._shown or [])


def nav_keys(screen: object) -> list[Key]:
    """The screen switch keys, but not the one of the screen shown."""
    from vertex_tui.app import SCREENS

    current = getattr(getattr(screen, "app", None), "current_mode", None)
    return [Key(key, title.split()[0].lower(), f"app.switch_mode('{mode}')")
            for mode, (title, key) in SCREENS.items() if mode != current]
