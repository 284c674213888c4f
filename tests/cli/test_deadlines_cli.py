"""Deadlines in the CLI's text output read as the console shows them: two units, rounded
down ("in 1 day 23 hours", never "in a day" for a subscription ending in 47 h 59 m)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import CliRunner


def test_lifecycle_summary_shows_a_deadline_in_two_units(cli: CliRunner) -> None:
    end = (datetime.now(UTC) + timedelta(hours=47, minutes=59, seconds=50)).isoformat()
    out = cli.ok("portrait", "add", "--owner", "b@example.com", "--title", "soon",
                 "--subscription-end", end)
    assert out.strip().isdigit()
    text = cli.ok("lifecycle", "summary")
    line = next(line for line in text.splitlines() if " soon " in line)
    assert "in 1 day 23 hours" in line, line
    assert "in a day" not in text


def test_video_summary_shows_a_change_in_two_units(cli: CliRunner) -> None:
    portrait = cli.ok("portrait", "add", "--owner", "b@example.com", "--title", "p").strip()
    start = (datetime.now(UTC) + timedelta(hours=2, minutes=59, seconds=50)).isoformat()
    cli.ok("video", "add", "--portrait", portrait, "--title", "clip", "--start", start)
    text = cli.ok("video", "summary")
    line = next(line for line in text.splitlines() if "'clip'" in line)
    assert "in 2 hours 59 minutes" in line, line


def test_lifecycle_summary_columns_stay_aligned_with_long_deadlines(cli: CliRunner) -> None:
    now = datetime.now(UTC)
    for title, left in (("long", timedelta(hours=21, minutes=26, seconds=30)),
                        ("short", timedelta(days=4, hours=23, minutes=30))):
        cli.ok("portrait", "add", "--owner", f"{title}@example.com", "--title", title,
               "--subscription-end", (now + left).isoformat())
    lines = [line for line in cli.ok("lifecycle", "summary").splitlines()
             if "portrait #" in line]
    assert "in 21 hours 26 minutes  portrait" in lines[0], lines
    assert len({line.index("portrait #") for line in lines}) == 1, lines  # one column
