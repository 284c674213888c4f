"""What the dashboard cards, the Email counts and the job detail say is true: no next run for a
paused or stopped service, claimed jobs apart from those in an SMTP transaction, attempt times
to the second."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import pytest
from textual.widgets import Static

from vertex_tui.screens.dashboard import oldest_line, pass_counts
from vertex_tui.screens.email_queue import EmailQueueScreen, counts_line
from vertex_tui.widgets.dialogs import TextDialog
from vertex_tui.widgets.service_card import next_run

if TYPE_CHECKING:
    from conftest import TestSink
    from textual.pilot import Pilot

    from .conftest import Console

SIZE = (100, 30)
NOW = 1_800_000_000.0


def mail(to: str) -> dict[str, str]:
    return {"to": to, "subject": "Hello", "body": "Hello from the card tests.\n"}


def card_text(pilot: Pilot[Any], service: str) -> str:
    return str(pilot.app.screen.query_one(f"#card-{service} .card-body", Static).render())


@pytest.mark.parametrize(("status", "expected"), [
    ({"state": "paused", "pending": 1234, "next_run": "2027-01-15T08:00:00+00:00"},
     "none — paused, 1,234 pending"),
    ({"state": "paused", "next_run": None}, "none — paused"),
    ({"state": "stopped", "next_run": "2027-01-16T06:00:00+00:00"}, "none — stopped"),
    ({"state": "disabled", "next_run": None}, "none — disabled"),
    ({"state": "idle", "next_run": "2027-01-15T10:30:00+00:00"}, "in 2 hours 30 minutes"),
    ({"state": "running", "next_run": "2027-01-15T07:59:00+00:00"}, "due now"),
    ({"state": "standby", "next_run": None}, "-"),
])
def test_next_run(status: dict[str, Any], expected: str) -> None:
    assert next_run(status, NOW) == expected


# A card's body at 80 columns: half the screen less the gutter, border and padding.
CARD_WIDTH_80 = 35


@pytest.mark.parametrize(("counts", "expected"), [
    (None, "no pass yet"),
    ({}, "no pass yet"),
    ({"seconds": 0.2}, "last pass: ok"),
    ({"emails": 5, "seconds": 0.1}, "last pass: emails 5"),
    ({"activated": 6, "deactivated": 0, "rotated": 0},
     "last pass: activated 6\ndeactivated 0  rotated 0"),
    ({"activated": 12_345, "deactivated": 67_890, "rotated": 1_000_000},
     "last pass: activated 12345\ndeactivated 67890  rotated 1000000"),
    ({"emails": 1, "activated": 2, "deactivated": 3, "rotated": 4},
     "last pass: emails 1\nactivated 2  deactivated 3\nrotated 4"),
])
def test_pass_counts(counts: dict[str, Any] | None, expected: str) -> None:
    text = pass_counts(counts)
    assert text == expected
    assert max(map(len, text.splitlines())) <= CARD_WIDTH_80


# The mail strip beside the sparklines at 80 columns: a third of the screen less padding.
STRIP_WIDTH_80 = 24


@pytest.mark.parametrize(("age", "expected"), [
    (None, "no mail waiting"),
    (0.0, "oldest pending mail\nnow"),
    (600.0, "oldest pending mail\n10 minutes ago"),
    (3 * 86_400.0, "oldest pending mail\n3 days ago"),
])
def test_oldest_line(age: float | None, expected: str) -> None:
    text = oldest_line(age, NOW)
    assert text == expected
    assert max(map(len, text.splitlines())) <= STRIP_WIDTH_80


STATS = {"state": "running", "pending": 12, "sending": 38, "sent": 4567, "failed": 3,
         "sent_last_minute": 40, "oldest_pending_at": NOW - 120}


@pytest.mark.parametrize(("stats", "expected"), [
    ({**STATS, "in_smtp": 3}, "pending 12  claimed 38 (3 in SMTP)  sent 4,567 (40 last min)  "
                             "failed 3  oldest 2 minutes ago"),
    ({**STATS, "in_smtp": None}, "pending 12  claimed 38  sent 4,567 (40 last min)  failed 3  "
                                "oldest 2 minutes ago"),
    ({**STATS, "state": "paused", "in_smtp": 0, "oldest_pending_at": None},
     "⏸ PAUSED  pending 12  claimed 38 (0 in SMTP)  sent 4,567 (40 last min)  failed 3  "
     "oldest -"),
])
def test_counts_line(stats: dict[str, Any], expected: str) -> None:
    assert counts_line(stats, NOW) == expected


async def test_a_paused_queue_card_names_what_waits_not_a_next_run(console: Console) -> None:
    engine = await console.engine()
    await engine.email.enqueue_many([mail(f"u{i}@example.org") for i in range(3)])
    await engine.email.pause()
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        body = card_text(pilot, "email")
        assert "next run  none — paused, 3 pending" in body
        assert "due now" not in body


async def test_a_stopped_backup_service_shows_no_next_run(console: Console) -> None:
    app = console.app(await console.engine())  # runs no service, and no other engine is alive
    async with app.run_test(size=SIZE) as pilot:
        await console.settle(pilot)
        status = (await app.engine.status())["services"]["backup"]
        assert status["state"] == "stopped" and status["next_run"] is not None
        body = card_text(pilot, "backup")
        assert "next run  none — stopped" in body
        assert " in " not in body.split("next run")[1].splitlines()[0]


async def test_the_email_counts_tell_claimed_jobs_from_those_in_smtp(
        console: Console, make_sink: Any) -> None:
    hang: TestSink = make_sink(hang=True)
    console.settings = dataclasses.replace(console.settings, smtp_port=hang.port,
                                           smtp_timeout=60.0, email_workers=2)
    engine = await console.engine(run=["email"])
    await engine.email.enqueue_many([mail(f"u{i}@example.org") for i in range(10)])
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await console.wait_for(lambda: isinstance(app.screen, EmailQueueScreen),
                               message="the Email screen")
        screen = app.screen

        def counts() -> str:
            screen.reload()
            return str(screen.query_one("#email-counts", Static).render())

        # One worker claimed the whole batch; one message is in its SMTP transaction.
        await console.wait_for(lambda: "claimed 10 (1 in SMTP)" in counts(),
                               message="the claimed and in-SMTP counts")
        await engine.email.pause()  # let the engine stop without waiting on the hung sink


async def test_job_detail_tells_two_attempts_in_the_same_minute_apart(console: Console) -> None:
    [job] = await console.deliver([mail("bounce1@example.org")])  # fails at 08:00:00
    engine = await console.engine()
    await engine.email.retry(ids=[job])
    console.clock.advance(31)
    await console.deliver([])  # the retried round fails again, at 08:00:31
    app = console.app(engine)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("e")
        await console.settle(pilot)
        await pilot.press("enter")
        await console.wait_for(lambda: isinstance(app.screen, TextDialog),
                               message="the job detail")
        await pilot.pause()
        body = str(app.screen.query_one("#dialog-body", Static).render())
        attempts = [line for line in body.splitlines() if line.startswith("  round ")]
        assert len(attempts) == 2, body
        assert "2027-01-15 08:00:00" in attempts[0]
        assert "2027-01-15 08:00:31" in attempts[1]
        assert "Created: 2027-01-15 08:00:00" in body
