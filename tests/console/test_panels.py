"""Engines, backups and safety at a glance (issue 10): the dashboard's engines line and its
no-engine alarm, the Backups panel and rotation preview, an attached action with no engine
alive, drain while paused, and the read-only console (`--attach --read-only`)."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

import pytest
from textual.widgets import Label, Static

from vertex_tui.screens.backups import BackupsScreen
from vertex_tui.screens.base import READ_ONLY_NOTE, action_name
from vertex_tui.screens.email_queue import EmailQueueScreen
from vertex_tui.screens.lifecycle import LifecycleScreen
from vertex_tui.widgets.backup_panel import BackupPanel, compact
from vertex_tui.widgets.dialogs import ConfirmDialog, TextDialog
from vertex_tui.widgets.engines_panel import (
    EnginesPanel,
    due_at,
    engine_line,
    overdue_jobs,
    waiting_work,
)
from vertex_tui.widgets.keybar import KeyBar
from vertex_tui.widgets.keyshelp import KeysHelp

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from .conftest import Console

SIZE = (100, 30)
HOUR = 3600.0
NOW = 1_800_000_000.0


def text_of(widget: Label | Static) -> str:
    return str(widget.render())


def mail(to: str) -> dict[str, str]:
    return {"to": to, "subject": "Hello", "body": "Hello from the panel tests.\n"}


def iso(ts: float) -> str:
    from vertex_tui.engine.clock import isoformat

    value = isoformat(ts)
    assert value is not None
    return value


# ---- pure parts ---------------------------------------------------------------------------

WAITING = [
    ({}, []),
    ({"email": {"pending": 0, "next_attempt_at": None}}, []),
    ({"email": {"pending": 3, "next_attempt_at": iso(NOW + 60)}}, []),  # not due yet
    ({"email": {"pending": 3, "next_attempt_at": iso(NOW - 120)}},
     ["3 mail pending, due 2 minutes ago"]),
    ({"lifecycle": {"next_run": iso(NOW - 30)}}, []),  # within the grace: just starting
    ({"lifecycle": {"next_run": iso(NOW - 2 * HOUR)}},
     ["lifecycle overdue since 2 hours ago"]),
    ({"backup": {"next_run": iso(NOW + HOUR)}, "video": {"next_run": None}}, []),
    ({"email": {"pending": 1_200, "next_attempt_at": iso(NOW - 5), "next_run": iso(NOW - 90)},
      "video": {"next_run": iso(NOW - 600)}},
     ["1,200 mail pending, due 5 seconds ago", "video overdue since 10 minutes ago"]),
]


@pytest.mark.parametrize(("services", "expected"), WAITING)
def test_waiting_work_policy(services: dict[str, Any], expected: list[str]) -> None:
    assert waiting_work(services, NOW) == expected


@pytest.mark.parametrize(("schedule", "last", "timezone", "expected"), [
    ("every 3600 s", NOW, "UTC", NOW + 3600),
    ("every 0.5 s", NOW, "UTC", NOW + 0.5),
    ("cron 0 2 * * *", NOW, "UTC", NOW + 18 * HOUR),  # 2027-01-15 08:00 -> 01-16 02:00 UTC
    ("cron 0 2 * * *", NOW, "Europe/Paris", NOW + 17 * HOUR),  # 02:00 Paris = 01:00 UTC
    ("every s", NOW, "UTC", None), ("cron 99 * * * *", NOW, "UTC", None),
    ("on demand", NOW, "UTC", None),
])
def test_due_at(schedule: str, last: float, timezone: str, expected: float | None) -> None:
    assert due_at(schedule, last, timezone) == expected


def job(name: str, schedule: str, last: float | None, **extra: Any) -> dict[str, Any]:
    return {"job": name, "schedule": schedule, "enabled": True, "paused": False,
            "last_run": None if last is None else iso(last), **extra}


OVERDUE = [
    ([job("lifecycle.check", "every 3600 s", NOW - 3 * HOUR)],
     ["lifecycle.check overdue since 2 hours ago"]),
    ([job("lifecycle.check", "every 3600 s", NOW - HOUR + 1)], []),  # due in a second
    ([job("lifecycle.check", "every 3600 s", NOW - HOUR - 30)], []),  # within the grace
    ([job("video.check", "every 300 s", None)], []),  # never ran: nothing to compare
    ([job("video.check", "every 300 s", NOW - HOUR, paused=True)], []),
    ([job("video.check", "every 300 s", NOW - HOUR, enabled=False)], []),
    ([job("email.reap", "every 1 s", NOW - HOUR)], []),
    ([job("backup.database", "cron 0 2 * * *", NOW - 2 * 86_400)],
     ["backup.database overdue since a day ago"]),
]


@pytest.mark.parametrize(("jobs", "expected"), OVERDUE)
def test_overdue_jobs_policy(jobs: list[dict[str, Any]], expected: list[str]) -> None:
    assert overdue_jobs(jobs, NOW, "UTC") == expected


def test_engine_line_names_host_pid_age_beat_and_leases() -> None:
    engine = {"owner": "ops-1:4242:ab", "host": "ops-1", "pid": 4242,
              "since": iso(NOW - 26 * HOUR), "heartbeat_at": iso(NOW - 4),
              "leases": ["backup:database", "lifecycle"]}
    assert engine_line(engine, NOW) == ("ops-1 pid 4242 · up 1 day 2 hours · beat 4 seconds "
                                        "ago · holds backup:database, lifecycle")
    ahead = {**engine, "heartbeat_at": iso(NOW + 3), "leases": []}
    assert engine_line(ahead, NOW).endswith("beat just now · holds nothing")


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (59, "59s"), (60, "1m"), (3599, "59m"), (3600, "1h"), (3660, "1h 1m"),
    (86_399, "23h 59m"), (86_400, "1d"), (47 * HOUR + 59 * 60, "1d 23h")])
def test_compact_span(seconds: float, text: str) -> None:
    assert compact(seconds) == text


@pytest.mark.parametrize(("action", "name"), [
    ("screen.retry_all", "retry_all"), ("filter('1')", "filter"), (None, ""),
    ("screen.page(1)", "page")])
def test_action_name(action: str | None, name: str) -> None:
    assert action_name(action) == name


# ---- the dashboard's engines line ------------------------------------------------------------


async def test_dashboard_lists_the_live_engine_and_what_it_holds(console: Console) -> None:
    peer = await console.engine(run=["video"])  # a peer engine: it beats
    await peer.video.check()  # and holds the video lease between passes
    app = console.app(await console.engine(), attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        panel = app.screen.query_one(EnginesPanel)
        text = text_of(panel)
        assert text.startswith("Engine ")
        assert f"{socket.gethostname()} pid {os.getpid()}" in text
        assert "up " in text and "beat " in text
        assert "holds video" in text
        assert not panel.has_class("-alarm")


async def test_dashboard_alarms_when_mail_is_due_and_no_engine_is_alive(
        console: Console) -> None:
    engine = await console.engine()  # queries only: no heartbeat
    app = console.app(engine, attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        panel = app.screen.query_one(EnginesPanel)
        assert text_of(panel).startswith("NO ENGINE ALIVE (nothing due yet)")
        assert panel.has_class("-none") and not panel.has_class("-alarm")

        await engine.email.enqueue_many([mail("a@example.org"), mail("b@example.org")])
        console.clock.advance(90)
        app.screen.reload()
        await console.settle(pilot)
        text = text_of(panel)
        assert text.startswith("NO ENGINE ALIVE and work waits: 2 mail pending, due ")
        assert panel.has_class("-alarm")
        # It is on screen at 80 columns too (the state first, never clipped).
        await pilot.resize_terminal(80, 24)
        await console.settle(pilot)
        assert any(line.startswith(" NO ENGINE ALIVE and work waits")
                   for line in console.screen_text(app))


async def test_dashboard_alarms_when_a_schedule_is_overdue_and_no_engine_is_alive(
        console: Console) -> None:
    from vertex_tui.engine.engine import Engine

    async with Engine(console.settings, run=["lifecycle"], clock=console.clock) as peer:
        await peer.lifecycle.check()  # the last pass, then the engine goes away
    console.clock.advance(3 * HOUR)  # LIFECYCLE_CHECK_INTERVAL_SECONDS: 3600
    app = console.app(await console.engine(), attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        panel = app.screen.query_one(EnginesPanel)
        assert text_of(panel) == ("NO ENGINE ALIVE and work waits: lifecycle.check overdue "
                                  "since 2 hours ago")
        assert panel.has_class("-alarm")


# ---- the Backups panel and the rotation preview ------------------------------------------


async def test_backup_panel_colours_the_age_and_counts_what_is_on_disk(
        console: Console) -> None:
    engine = await console.engine()
    first = await engine.backup.run("database")
    console.clock.advance(HOUR)
    second = await engine.backup.run("database")
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await console.settle(pilot)
        panel = app.screen.query_one(BackupPanel)
        assert panel.levels == {"database": "ok", "storage": "critical", "full": "critical"}
        lines = text_of(panel).splitlines()
        size = f"{(first['size'] + second['size']) / 1024:.1f} KiB"
        assert lines[0].startswith("database OK")
        assert f"· 2 ({size}) · verified ok" in lines[0]
        assert lines[1].startswith("storage  MISSING    none yet")
        assert lines[3].startswith("drill    never run")
        assert panel.has_class("-critical")

        console.clock.advance(26 * HOUR)  # BACKUP_WARN_AGE_HOURS: database 26 by default
        app.screen.reload()
        await console.settle(pilot)
        assert panel.levels["database"] == "warning"
        assert text_of(panel).splitlines()[0].startswith("database OLD       1d 2h ago")
        console.clock.advance(26 * HOUR)
        app.screen.reload()
        await console.settle(pilot)
        assert panel.levels["database"] == "critical"


async def test_P_previews_rotation_and_deletes_nothing(console: Console,
                                                       settings_factory: Any,
                                                       sink_550: Any) -> None:
    from vertex_tui.engine.engine import Engine

    settings = settings_factory(sink=sink_550, backup_keep_last=1)
    async with Engine(settings, run=[], clock=console.clock) as engine:
        made = []
        for _ in range(3):
            made.append(await engine.backup.run("database"))
            console.clock.advance(HOUR)
        app = console.app(engine)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("b")
            await console.settle(pilot)
            await pilot.press("P")
            await console.wait_for(lambda: isinstance(app.screen, TextDialog),
                                   message="the rotation preview")
            await pilot.pause()
            title = text_of(app.screen.query_one("#dialog-title", Label))
            body = text_of(app.screen.query_one("#dialog-body", Static))
            assert title == ("Rotation now would delete 2 backup(s); this preview deleted "
                             "nothing.")
            assert f"#{made[0]['id']} " in body and f"#{made[1]['id']} " in body
            assert f"#{made[2]['id']} " not in body
            await pilot.press("escape")
        statuses = [r.status for r in await engine.backup.history()]
        assert statuses == ["ok", "ok", "ok"]


# ---- attached with no engine alive ----------------------------------------------------------


async def test_attached_action_with_no_engine_asks_at_once(console: Console) -> None:
    app = console.app(await console.engine(), attached=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        await console.settle(pilot)
        await pilot.press("c")
        await console.wait_for(lambda: isinstance(app.screen, ConfirmDialog),
                               message="the no-engine question")
        await pilot.pause()
        message = text_of(app.screen.query_one("#dialog-message", Label))
        assert message.startswith("No engine is running on this database: lifecycle check "
                                  "would wait until one starts")
        await pilot.press("n")
        await console.settle(pilot)
        assert isinstance(app.screen, LifecycleScreen)
        assert ("information", "lifecycle check: cancelled, nothing was requested"
                ) in console.notes(app)
        assert console.query("SELECT COUNT(*) FROM requests") == [(0,)]
        assert not any("requested from the running engine" in m
                       for _, m in console.notes(app))

        await pilot.press("c")
        await console.wait_for(lambda: isinstance(app.screen, ConfirmDialog),
                               message="the no-engine question again")
        await pilot.press("y")
        await console.settle(pilot)
        rows = console.query("SELECT id, action, picked_by FROM requests")
        assert [(r[1], r[2]) for r in rows] == [("lifecycle.check", None)]
        assert ("warning", f"lifecycle check: queued as request #{rows[0][0]}; an engine "
                "that starts within 10 minutes runs it") in console.notes(app)


# ---- drain while paused -------------------------------------------------------------------


async def test_a_refused_engine_action_is_a_sentence_not_a_class_name(
        console: Console) -> None:
    engine = await console.engine(run=["email"])
    await engine.email.pause()
    await engine.email.enqueue_many([mail("a@example.org")])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await console.settle(pilot)
        screen = app.screen
        assert isinstance(screen, EmailQueueScreen)
        screen.act_on_engine("email.drain", label="drain")  # what a palette entry runs
        await console.settle(pilot)
        assert ("warning", "drain: delivery is paused; resume it first (vertex-tui email "
                "resume)") in console.notes(app)
        assert not any("UsageError" in m or "went wrong" in m for _, m in console.notes(app))
        assert console.query("SELECT status FROM email_jobs") == [("pending",)]


# ---- read-only ----------------------------------------------------------------------------


async def palette_pick(pilot: Pilot[Any], console: Console, text: str) -> str:
    """Run the palette's first hit for `text`; its prompt."""
    return (await console.palette(pilot, text))[0]


def last_note(app: Any) -> str:
    """The latest notification, a warning (earlier ones may have timed out)."""
    severity, message = [(str(n.severity), n.message) for n in app._notifications][-1]
    assert severity == "warning"
    return message


async def test_read_only_console_refuses_every_mutating_key_and_says_so(
        console: Console) -> None:
    failed = await console.deliver([mail("bounce1@example.org"), mail("bounce2@example.org")])
    engine = await console.engine(run=["video"])  # an engine is alive: no no-engine question
    app = console.app(await console.engine(), attached=True, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        assert app.sub_title.startswith("READ-ONLY ATTACHED")
        await pilot.press("e")
        await console.settle(pilot)
        screen = app.screen
        assert isinstance(screen, EmailQueueScreen)
        for key, what in (("r", "retry selected"), ("R", "retry all"),
                          ("p", "toggle pause"), ("D", "drain"), ("C", "cleanup")):
            await pilot.press(key)
            await console.settle(pilot)
            assert isinstance(app.screen, EmailQueueScreen), f"{key} opened a dialog"
            assert last_note(app) == f"{what}: {READ_ONLY_NOTE}"
        # What only looks still works: a filter and the detail.
        await pilot.press("5")
        await console.settle(pilot)
        assert {row[1] for row in console.rows(pilot, "#email-jobs")} == {"failed"}
        await pilot.press("enter")
        await console.wait_for(lambda: isinstance(app.screen, TextDialog),
                               message="the job detail")
        await pilot.press("escape")
        await console.settle(pilot)

        # The footer shows the mutating keys dimmed and struck; help marks them.
        bar = app.screen.query_one(KeyBar)
        styles = {str(span.style) for span in bar.content.spans}  # type: ignore[union-attr]
        assert any("strike" in s for s in styles)
        assert "R retry all" in {str(bar.content)[s.start:s.end]  # type: ignore[union-attr]
                                 for s in bar.content.spans  # type: ignore[union-attr]
                                 if "strike" in str(s.style)}
        await pilot.press("question_mark")
        await pilot.pause()
        own = dict(app.screen.query_one(KeysHelp).sections()[0][1])
        assert own["R"].endswith("(disabled: read-only)")
        assert own["/"].startswith("search: text, status:")
        await pilot.press("question_mark")

        # Backups t and V, lifecycle c: refused too.
        await pilot.press("b")
        await console.settle(pilot)
        assert isinstance(app.screen, BackupsScreen)
        for key, what in (("t", "trigger"), ("V", "verify")):
            await pilot.press(key)
            await console.settle(pilot)
            assert isinstance(app.screen, BackupsScreen), f"{key} opened a dialog"
            assert last_note(app) == f"{what}: {READ_ONLY_NOTE}"
        await pilot.press("l")
        await console.settle(pilot)
        await pilot.press("c")
        await console.settle(pilot)
        assert last_note(app) == f"check: {READ_ONLY_NOTE}"
        # And the palette marks its actions and refuses them.
        prompt = await palette_pick(pilot, console, "Retry all failed mail")
        assert "disabled: read-only console" in prompt
        await console.settle(pilot)
        assert isinstance(app.screen, LifecycleScreen)
        assert last_note(app) == f"Retry all failed mail: {READ_ONLY_NOTE}"
        await palette_pick(pilot, console, "Run backup.database now")
        await console.settle(pilot)
        assert last_note(app) == f"Run backup.database now: {READ_ONLY_NOTE}"
        # What only looks is not refused.
        prompt = await palette_pick(pilot, console, "Show the runs of backup.database")
        assert "read-only" not in prompt

    assert {console.job_status(i) for i in failed} == {"failed"}
    assert not (await engine.email.stats()).paused
    assert console.query("SELECT COUNT(*) FROM requests") == [(0,)]
    assert console.query("SELECT COUNT(*) FROM backups") == [(0,)]
    assert console.query("SELECT COUNT(*) FROM audit_log") == [(0,)]
