"""The Log screen reads the event log from the database: an attached console shows what
another engine did, filters by service, level and text, and follows new entries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.widgets import Input, RichLog, Static

from vertex_tui.engine import events as ev
from vertex_tui.engine.engine import Engine
from vertex_tui.screens.log import LogScreen

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .conftest import Console

SIZE = (100, 30)


def texts(pilot: Pilot[Any]) -> list[str]:
    return [line.text for line in pilot.app.screen.query_one(RichLog).lines]


def messages(pilot: Pilot[Any]) -> list[str]:
    """Each line without its time, level and service."""
    return [t.split(maxsplit=3)[3] for t in texts(pilot)]


async def other_engine(console: Console) -> Engine:
    """An engine that is not the console's (its events never reach the console's bus)."""
    return await console.engine(run=[], owner="ops-2:77:feedbeef")


async def write(engine: Engine, *events: ev.Event) -> None:
    for event in events:
        engine.events.publish(event)
    await engine.event_log.flush()


def three_entries(now: float) -> list[ev.Event]:
    """An email entry, a failed backup (error) and a video entry, 300/200/100 s ago."""
    return [ev.ServiceStarted(at=now - 300, service="email"),
            ev.BackupFinished(at=now - 200, kind="database", ok=False, path=None,
                              size=None, error="disk full"),
            ev.VideosChanged(at=now - 100, activated=2, deactivated=0, rotated=1, archived=0)]


async def test_an_attached_console_shows_what_another_engine_logged(console: Console) -> None:
    other = await other_engine(console)
    await write(other, *three_entries(console.clock.time()))
    await other.jobs.run("lifecycle.check")  # a real pass, with its counts
    await other.event_log.flush()
    mine = await console.engine()
    app = console.app(mine, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        await console.settle(pilot)
        assert isinstance(app.screen, LogScreen)
        shown = messages(pilot)
        assert shown[:3] == ["service email started", "database backup failed: disk full",
                             "videos: 2 activated, 0 deactivated, 1 rotated, 0 archived"]
        assert any(m.startswith("lifecycle.check: ") for m in shown[3:])
        assert texts(pilot)[1].split()[1:3] == ["error", "backup"]

        # s: the service filter cycles email, backup, ...
        await pilot.press("s")
        await console.settle(pilot)
        assert messages(pilot) == ["service email started"]
        await pilot.press("s")
        await console.settle(pilot)
        assert messages(pilot) == ["database backup failed: disk full"]
        for _ in range(4):  # lifecycle, video, engine, back to all
            await pilot.press("s")
        await console.settle(pilot)
        assert messages(pilot) == shown

        # L: warning and above.
        await pilot.press("L")
        await console.settle(pilot)
        assert messages(pilot) == ["database backup failed: disk full"]
        await pilot.press("L", "L", "L")  # error, debug, back to info
        await console.settle(pilot)
        assert messages(pilot) == shown

        # /: text in the message, any case; Esc clears it.
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"ROTATED", "enter")
        await console.settle(pilot)
        assert messages(pilot) == ["videos: 2 activated, 0 deactivated, 1 rotated, 0 archived"]
        await pilot.press("escape")
        await console.settle(pilot)
        assert messages(pilot) == shown


async def test_the_log_screen_follows_new_entries(console: Console) -> None:
    other = await other_engine(console)
    await write(other, ev.ServiceStarted(at=console.clock.time(), service="video"))
    # live_refresh on: the screen follows by itself (no key pressed, no event on our bus).
    app = console.app(await console.engine(), attached=True, live_refresh=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        await console.wait_for(lambda: messages(pilot) == ["service video started"],
                               message="the first entry")
        console.clock.advance(5)
        await write(other, ev.RelayOutage(at=console.clock.time(), phase="started",
                                          relay="mx:25", error="connection refused"))
        await console.wait_for(lambda: len(messages(pilot)) == 2, message="the new entry")
        assert messages(pilot)[1] == "SMTP relay mx:25 unreachable: connection refused; " \
                                     "delivery paused"
        # Appended, not redrawn: the first line is still there once.
        assert messages(pilot)[0] == "service video started"


async def test_a_hosting_console_shows_its_own_engine_passes(console: Console) -> None:
    engine = await console.engine(run=["video"])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        await console.settle(pilot)
        await engine.jobs.run("video.check")
        await engine.event_log.flush()
        # The pass's event makes the screen read again at once (REFRESH_ON), no timer.
        await console.wait_for(
            lambda: any(m.startswith("video.check: ") for m in messages(pilot)),
            message="the pass in the log")
        assert "service video started" in messages(pilot)


async def search(pilot: Pilot[Any], console: Console, text: str) -> None:
    """`/`, a fresh `text` in the box, Enter."""
    await pilot.press("slash")
    box = pilot.app.screen.query_one("#log-search", Input)
    box.value = ""
    await pilot.press(*text, "enter")
    await console.settle(pilot)


async def test_log_search_is_the_search_language(console: Console) -> None:
    other = await other_engine(console)
    now = console.clock.time()
    await write(other, *three_entries(now),
                ev.RelayOutage(at=now - 50, phase="started", relay="mx:25",
                               error="connection refused"))
    app = console.app(await console.engine(), attached=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("o")
        await console.settle(pilot)
        everything = messages(pilot)
        started, backup, videos, relay = everything
        assert started == "service email started" and backup.endswith("disk full")

        for text, expected in [
            ("service:email", [started, relay]),
            ("service:backup,video", [backup, videos]),
            ("level:warning", [backup, relay]),
            ("level:error", [backup]),
            ("older:150s", [started, backup]),
            ("newer:150s", [videos, relay]),
            ("newer:250s older:75s", [backup, videos]),
            ("service:email unreachable", [relay]),
            ('"disk full" database', [backup]),
            ("disk unreachable", []),
        ]:
            await search(pilot, console, text)
            assert messages(pilot) == expected, text
            assert not app.screen.query_one("#log-search-error").has_class("-shown")

        # A bad term: one line under the box, naming it; the entries shown stay.
        await search(pilot, console, "level:error")
        for text, line in [
            ("service:mail", "service:mail: unknown service 'mail' (one of email, backup,"),
            ("status:failed", "unknown search term status: (use service:, level:, older:,"
                              " newer:;"),
            ("level:loud", "level:loud: unknown level 'loud' (one of debug, info, warning,"),
            ("older:soon", "older:soon: expected a duration"),
        ]:
            await search(pilot, console, text)
            assert messages(pilot) == [backup], text  # level:error's, kept
            shown = console.screen_text(app)
            assert any(row.strip().startswith(line) for row in shown), (line, shown)
            # At 80 columns the whole sentence is there (it wraps, its end is not cut).
            message = str(app.screen.query_one("#log-search-error", Static).render())
            assert " ".join(message.split()) in " ".join(" ".join(shown).split()), shown

        # Esc clears the error line and the search.
        await pilot.press("escape")
        await console.settle(pilot)
        assert messages(pilot) == everything
        assert not app.screen.query_one("#log-search-error").has_class("-shown")

        # The terms and the level/service filters all hold (AND).
        await search(pilot, console, "service:backup")
        assert messages(pilot) == [backup]
        await pilot.press("s")  # the service filter: email
        await console.settle(pilot)
        assert messages(pilot) == []


async def test_operator_actions_are_logged_in_words(console: Console) -> None:
    other = await other_engine(console)
    await other.email.pause()
    await other.email.resume()
    await other.jobs.set_paused("video.check", True)
    app = console.app(await console.engine(), attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        await console.settle(pilot)
        shown = [m.split(": ", 1)[1] for m in messages(pilot)]
        assert shown == ["paused mail delivery", "resumed mail delivery",
                         "paused a job (job video.check, changed True)"], messages(pilot)
        # The action's name is still what a search finds (in the event).
        await search(pilot, console, "email.pause")
        assert [m.split(": ", 1)[1] for m in messages(pilot)] == ["paused mail delivery"]


async def test_the_latest_entry_stays_in_view_when_the_search_box_opens(
        console: Console) -> None:
    other = await other_engine(console)
    now = console.clock.time()
    await write(other, *[ev.ServiceStarted(at=now - 100 + i, service=f"svc{i}")
                         for i in range(40)])
    app = console.app(await console.engine(), attached=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("o")
        await console.settle(pilot)
        assert any("service svc39 started" in row for row in console.screen_text(app))
        await search(pilot, console, "level:loud")  # the box and a two-line error open
        shown = console.screen_text(app)
        assert any("level:loud: unknown level" in row for row in shown)
        assert any("service svc39 started" in row for row in shown), shown
        await pilot.press("escape")
        await console.settle(pilot)
        assert any("service svc39 started" in row for row in console.screen_text(app))
