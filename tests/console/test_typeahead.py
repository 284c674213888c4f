"""Keys typed right after a screen switch are never lost: Pilot posts them back to back, with
no pause between them, as a terminal delivers an operator's type-ahead."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from textual import events
from textual.widgets import Input

from vertex_tui.screens.backups import BackupsScreen
from vertex_tui.screens.dashboard import DashboardScreen
from vertex_tui.screens.email_queue import EmailQueueScreen
from vertex_tui.screens.lifecycle import LifecycleScreen
from vertex_tui.screens.log import LogScreen
from vertex_tui.screens.videos import VideosScreen

if TYPE_CHECKING:
    from .conftest import Console

SIZE = (100, 30)
KEYS = {"e": EmailQueueScreen, "b": BackupsScreen, "l": LifecycleScreen, "v": VideosScreen,
        "o": LogScreen, "d": DashboardScreen}


@pytest.mark.parametrize("keys", ["eb", "el", "bl", "lv", "ve", "oe", "ebd", "eblvod"])
async def test_screen_keys_typed_back_to_back_all_arrive(console: Console, keys: str) -> None:
    app = console.app(await console.engine(), live_refresh=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        for key in keys:  # queued at once: none waits for the screen the one before opens
            app.post_message(events.Key(key, key))
        await console.wait_for(lambda: isinstance(app.screen, KEYS[keys[-1]]),
                               message=f"the screen of {keys[-1]!r} after typing {keys!r}")
        await console.settle(pilot)
        assert isinstance(app.screen, KEYS[keys[-1]])
        # Nothing typed went into a box the operator never opened.
        for screen in app.screen_stack:
            for box in screen.query(Input):
                assert box.value == ""


async def test_a_screen_key_then_its_filter_key_back_to_back(console: Console) -> None:
    await console.deliver([{"to": "bounce1@example.org", "subject": "s", "body": "b"},
                           {"to": "ok@example.org", "subject": "s", "body": "b"}])
    app = console.app(await console.engine(), live_refresh=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        app.post_message(events.Key("e", "e"))
        app.post_message(events.Key("5", "5"))
        await console.wait_for(lambda: isinstance(app.screen, EmailQueueScreen)
                               and app.screen.status_filter == "failed",
                               message="the failed filter on the Email screen")
        await console.settle(pilot)
        assert [r[1] for r in console.rows(pilot, "#email-jobs")] == ["failed"]


def _key(char: str) -> events.Key:
    names = {"/": "slash", ":": "colon", " ": "space"}
    return events.Key(names.get(char, char), char)


@pytest.mark.parametrize(("screen_key", "text"), [
    ("e", "subject:backup"), ("b", "status:ok"), ("l", "bravo"), ("v", "bravo"),
    ("j", "service:backup"), ("o", "service:backup"),
    ("l", "a/b/c")])  # `/` in the open box is text
async def test_slash_then_a_search_typed_back_to_back_all_go_in_the_box(
        console: Console, screen_key: str, text: str) -> None:
    app = console.app(await console.engine(), live_refresh=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        await pilot.press(screen_key)
        await console.settle(pilot)
        screen = app.screen
        # `/` and the search in one burst, as a terminal delivers them: the `b` of "backup"
        # must not switch to the Backups screen, `l` not to Lifecycle.
        for char in "/" + text:
            app.post_message(_key(char))
        await console.wait_for(
            lambda: any(box.value == text for box in screen.query(Input)),
            message=f"{text!r} in the search box of {type(screen).__name__}")
        await console.settle(pilot)
        assert app.screen is screen
