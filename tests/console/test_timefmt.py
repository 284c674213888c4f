"""The console's human times: table tests, no terminal needed."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vertex_tui.timefmt import (
    ago,
    clock_time,
    duration,
    precise_time,
    short_time,
    size,
    span,
    until,
)

NOW = datetime(2026, 11, 28, 17, 5, 9, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("value", "expected"), [
    (NOW, "17:05:09"),
    (NOW - 17 * 3600, "00:05:09"),                  # same UTC day, early
    (NOW - 18 * 3600, "11-27 23:05"),               # yesterday
    (NOW + 86_400, "11-29 17:05"),                  # tomorrow (a next run)
    ("2026-11-28T09:00:00+00:00", "09:00:00"),      # ISO text as stored
    (None, "-"),
])
def test_short_time(value: float | str | None, expected: str) -> None:
    assert short_time(value, NOW) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (NOW - 180, "3 minutes ago"),
    (NOW + 120, "in 2 minutes"),                    # a future time reads as "in ..."
    (None, "never"),
])
def test_ago(value: float | None, expected: str) -> None:
    assert ago(value, NOW) == expected


MINUTE, HOUR, DAY = 60, 3600, 86_400


@pytest.mark.parametrize(("seconds", "expected"), [
    (47 * HOUR + 59 * MINUTE, "1 day 23 hours"),    # never "a day": a deadline rounds down
    (48 * HOUR - 1, "1 day 23 hours"),
    (48 * HOUR, "2 days"),                          # a zero second unit is left out
    (DAY + 5 * MINUTE, "1 day"),                    # only two adjacent units
    (23 * HOUR + 59 * MINUTE + 59, "23 hours 59 minutes"),
    (3 * HOUR, "3 hours"),
    (HOUR + MINUTE, "1 hour 1 minute"),
    (90, "1 minute 30 seconds"),
    (59.9, "59 seconds"),                           # rounded down, not up to a minute
    (1, "1 second"),
    (0.4, "under a second"),
    (-5, "under a second"),
    (33 * DAY + 7 * HOUR, "33 days 7 hours"),       # no vague "a month"
    (400 * DAY, "1 year 35 days"),
])
def test_span(seconds: float, expected: str) -> None:
    assert span(seconds) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (NOW + 3 * 3600, "in 3 hours"),
    (NOW + 47 * HOUR + 59 * MINUTE, "in 1 day 23 hours"),
    (NOW + 2 * HOUR + 59 * MINUTE + 30, "in 2 hours 59 minutes"),
    (NOW - 5, "due now"),
    (None, "-"),
])
def test_until(value: float | None, expected: str) -> None:
    assert until(value, NOW) == expected


@pytest.mark.parametrize(("seconds", "expected"), [
    (0.25, "250 ms"),
    (2.5, "2.5 seconds"),
    (None, "-"),
])
def test_duration(seconds: float | None, expected: str) -> None:
    assert duration(seconds) == expected


def test_clock_time_and_size() -> None:
    assert clock_time(NOW) == "2026-11-28 17:05"
    assert precise_time(NOW) == "2026-11-28 17:05:09"  # job detail: to the second
    assert precise_time(NOW + 31) == "2026-11-28 17:05:40"
    assert precise_time(None) == "-"
    assert clock_time(None) == "-"
    assert size(1536) == "1.5 KiB"
    assert size(None) == "-"


@pytest.mark.parametrize(("result", "words"), [
    ({"status": "ok", "sent": 5, "failed": 1, "retrying": 0}, "sent 5, failed 1, retrying 0"),
    ({"job": "email.reap", "status": "ok", "reaped": 0}, "reaped 0"),
    ({"job": "video.check", "status": "ok", "full": True, "activated": 2, "deactivated": 0,
      "rotated": 4, "archived": 0, "digest_mailed": False, "seconds": 0.01},
     "activated 2, rotated 4"),
    ({"job": "lifecycle.check", "status": "ok", "full": True,
      "changes": {"project": {"archived": 1, "active": 0}, "portrait": {"expiring": 2}},
      "sent": {}, "skipped": 0, "emails": 3, "seconds": 0.002}, "changes 3, emails 3"),
    ({"job": "backup.rotation", "status": "ok", "deleted": {"database": 2, "full": 1}},
     "deleted 3"),
    ({"job": "backup.database", "status": "ok", "id": 7, "size": 233_472, "seconds": 0.02,
      "path": "/b/db.db"}, ""),  # "done" and the path
    ({"job": "video.check", "status": "ok", "activated": 0, "rotated": 0}, ""),  # "done"
])
def test_outcome_words_say_what_an_action_did(result: dict[str, object], words: str) -> None:
    from vertex_tui.screens.base import outcome_words

    assert outcome_words(result) == words
