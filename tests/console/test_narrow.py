"""80x24 first: the footer always shows the screen's most used keys and `? help`, states are
never clipped, long paths are shortened in the middle; wide terminals give their width to
the Subject and Last error columns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from vertex_tui.app import HEADER_CHROME, header_subtitle
from vertex_tui.screens.backups import BackupsScreen
from vertex_tui.screens.dashboard import DashboardScreen
from vertex_tui.screens.email_queue import EmailQueueScreen, column_widths
from vertex_tui.screens.jobs import JobsScreen
from vertex_tui.screens.lifecycle import LifecycleScreen
from vertex_tui.screens.log import LogScreen
from vertex_tui.screens.videos import VideosScreen
from vertex_tui.widgets.dialogs import ConfirmDialog
from vertex_tui.widgets.keybar import HELP, PALETTE, QUIT, Key, KeyBar, fit_keys
from vertex_tui.widgets.shorten import clip, shorten_middle
from vertex_tui.widgets.tables import StableTable

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .conftest import Console

SMALL = (80, 24)
OWN = [Key("1-5", "filter"), Key("/", "search"), Key("r", "retry"), Key("R", "retry all"),
       Key("p", "pause"), Key("D", "drain"), Key("C", "cleanup")]
NAV = [Key("d", "dashboard"), Key("b", "backups")]


def keys(shown: list[Key]) -> list[str]:
    return [k.key for k in shown]


@pytest.mark.parametrize(("width", "expected"), [
    (200, ["1-5", "/", "r", "R", "p", "D", "C", "?", "q", "d", "b", "^p"]),
    (sum(k.width for k in OWN) + HELP.width + QUIT.width,
     ["1-5", "/", "r", "R", "p", "D", "C", "?", "q"]),      # exactly 80 columns' worth
    (sum(k.width for k in OWN) + HELP.width + QUIT.width - 1,
     ["1-5", "/", "r", "R", "p", "D", "C", "?"]),           # quit goes before any own key
    (sum(k.width for k in OWN[:3]) + HELP.width, ["1-5", "/", "r", "?"]),  # the most used
    (3, ["?"]),                                             # help stays, whatever the width
])
def test_fit_keys(width: int, expected: list[str]) -> None:
    shown = fit_keys(OWN, NAV, width)
    assert keys(shown) == expected
    if len(shown) > 1:
        assert sum(k.width for k in shown) <= width


def test_fit_keys_shows_the_screen_keys_all_or_none_and_the_palette_last() -> None:
    width = sum(k.width for k in OWN) + HELP.width + QUIT.width + NAV[0].width
    assert keys(fit_keys(OWN, NAV, width)) == keys([*OWN, HELP, QUIT, PALETTE])  # no "d" alone
    width += NAV[1].width
    assert keys(fit_keys(OWN, NAV, width)) == keys([*OWN, HELP, QUIT, *NAV])
    assert keys(fit_keys(OWN, NAV, width + PALETTE.width)) == keys(
        [*OWN, HELP, QUIT, *NAV, PALETTE])


@pytest.mark.parametrize(("text", "width", "expected"), [
    ("/srv/vertex/data/vertex.db", 40, "/srv/vertex/data/vertex.db"),
    ("/tmp/vertex-demo-84z97ewf/vertex-demo.db", 30, "/tmp/vertex-de…/vertex-demo.db"),
    ("/tmp/vertex-demo-84z97ewf/vertex-demo.db", 31, "/tmp/vertex-dem…/vertex-demo.db"),
    ("abcdef", 5, "ab…ef"),
    ("abcdef", 2, "…f"),
    ("abcdef", 1, "…"),
    ("abcdef", 0, ""),
    ("", 5, ""),
])
def test_shorten_middle(text: str, width: int, expected: str) -> None:
    out = shorten_middle(text, width)
    assert out == expected
    assert len(out) <= max(width, 0)


@pytest.mark.parametrize(("text", "width", "expected"), [
    ("Receipt for your order #12", 30, "Receipt for your order #12"),
    ("Receipt for your order #12", 10, "Receipt f…"),
    ("abc", 0, ""),
])
def test_clip(text: str, width: int, expected: str) -> None:
    assert clip(text, width) == expected


@pytest.mark.parametrize("state", ["ATTACHED · NO ENGINE RUNNING ·", "engine on",
                                   "ATTACHED · engine alive (12) ·"])
@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_header_keeps_the_state_and_shortens_the_path(state: str, width: int) -> None:
    path = "/var/lib/vertex-tui/production/eu-west-1/databases/primary/vertex.db"
    sub = header_subtitle(state, path, width, len("vertex-tui"))
    assert sub.startswith(state + " ")
    assert sub.endswith("vertex.db")  # the file name survives
    assert HEADER_CHROME + len("vertex-tui") + len(sub) <= width


@pytest.mark.parametrize("width", [80, 100, 120, 160, 240])
def test_column_widths_give_a_wide_terminal_to_subject_and_error(width: int) -> None:
    to, subject, error = column_widths(width)
    narrower = column_widths(80)
    assert to <= 26
    assert 28 + 2 + 6 + 2 + to + subject + error <= width  # all of it on screen, from 80
    if width >= 120:
        assert subject > narrower[1] and error > narrower[2]
        assert error >= subject


# ---- on screen, at 80x24 ---------------------------------------------------------------------

SCREENS = {"d": (DashboardScreen, []),
           "e": (EmailQueueScreen, ["1-6 filter", "/ search", "r retry", "R retry all",
                                    "p pause", "D drain", "C cleanup"]),
           "b": (BackupsScreen, ["t run job now", "V verify backup", "R restore…"]),
           "l": (LifecycleScreen, ["c check now"]),
           "v": (VideosScreen, ["c check now"]),
           "j": (JobsScreen, ["r run now", "p pause/resume", "h history", "/ search"]),
           "o": (LogScreen, ["s service filter", "L level filter", "/ search"])}


def footer_line(console: Console, pilot: Pilot[Any]) -> str:
    return console.screen_text(pilot.app)[-1]


@pytest.mark.parametrize("key", list(SCREENS))
async def test_the_footer_at_80x24_shows_the_screen_keys_and_help(console: Console,
                                                                   key: str) -> None:
    kind, own = SCREENS[key]
    app = console.app(await console.engine())
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press(key)
        await console.settle(pilot)
        assert isinstance(app.screen, kind)
        line = footer_line(console, pilot)
        for text in [*own, "? help", "q quit"]:
            assert text in line, (text, line)
        # Every key the footer names is bound on the screen or the app.
        bound = {app.get_key_display(b) for _, b in app.screen._bindings} | {
            app.get_key_display(b) for _, b in app._bindings}
        for shown in app.screen.query_one(KeyBar).shown:
            assert shown.key in bound or shown.key == "1-6", shown


async def test_a_click_on_a_footer_key_runs_it(console: Console) -> None:
    await console.deliver([{"to": "bounce1@example.org", "subject": "s", "body": "b"}])
    app = console.app(await console.engine())
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("e")
        await console.settle(pilot)
        bar = app.screen.query_one(KeyBar)
        at = 0
        for shown in bar.shown:
            if shown.key == "R":
                break
            at += shown.width
        await pilot.click(KeyBar, offset=(at + 2, 0))
        await console.wait_for(lambda: isinstance(app.screen, ConfirmDialog),
                               message="the retry-all dialog")


async def test_the_paused_state_is_never_clipped_at_80x24(console: Console) -> None:
    engine = await console.engine()
    await engine.email.enqueue_many([{"to": f"a{i}@example.org", "subject": "s" * 60,
                                      "body": "b"} for i in range(3)])
    await engine.email.pause()
    app = console.app(engine)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("e")
        await console.settle(pilot)
        lines = console.screen_text(app)
        assert lines[1].lstrip().startswith("⏸ PAUSED")
        assert "p resume" in lines[-1]  # the key says what it will do
        await pilot.press("d")
        await console.settle(pilot)
        text = "\n".join(console.screen_text(app))
        assert "Email queue · PAUSED" in text
        assert "none — paused, 3 pending" in text


async def test_no_engine_running_is_never_clipped_from_the_header(console: Console) -> None:
    app = console.app(await console.engine(), attached=True)
    async with app.run_test(size=SMALL) as pilot:
        await console.wait_for(lambda: "NO ENGINE RUNNING" in app.sub_title,
                               message="the engine check")
        await console.settle(pilot)
        header = console.screen_text(app)[0]
        assert "NO ENGINE RUNNING" in header
        assert header.rstrip().endswith(console.settings.db_path.name)
        assert "…" in header  # the long test path, shortened in the middle


async def test_dashboard_cards_keep_their_figures_at_80x24(console: Console) -> None:
    await console.deliver([{"to": "bounce1@example.org", "subject": "s", "body": "b"},
                           {"to": "ok@example.org", "subject": "s", "body": "b"}])
    app = console.app(await console.engine())
    async with app.run_test(size=SMALL) as pilot:
        await console.settle(pilot)
        text = "\n".join(console.screen_text(app))
        for figure in ("pending 0  failed 1", "sent 1  last min 1", "last verified restore",
                       "last run", "next run", "Latest errors"):
            assert figure in text, figure
        assert not app.screen.scrollbars_enabled[0]  # nothing below the fold
        assert "? help" in console.screen_text(app)[-1]


async def test_the_email_table_fits_80_columns_without_scrolling_sideways(
        console: Console) -> None:
    # A failed job fills every column: a long address, subject and error.
    await console.deliver([{"to": "bounce1@" + "x" * 40 + ".example.org",
                            "subject": "quarterly report " * 5, "body": "b"}])
    app = console.app(await console.engine())
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("e")
        await console.settle(pilot)
        table = app.screen.query_one("#email-jobs", StableTable)
        assert table.row_count == 1
        assert table.max_scroll_x == 0, (table.virtual_size.width, table.size.width)
        row = next(line for line in console.screen_text(app) if "bounce1@" in line)
        assert "recipients refused" in row  # Last error on screen, not scrolled off
