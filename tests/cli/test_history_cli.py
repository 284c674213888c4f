"""`vertex-tui email history` as an operator runs it: what was just delivered shows at once
(the current minute is computed from the jobs), JSON and text forms, ranges, bad usage."""

from __future__ import annotations

from typing import Any

import pytest

# Each test runs twice: on SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")

KEYS = {"at", "enqueued", "sent", "failed", "retried", "p50_ms", "p95_ms", "depth"}


def test_history_shows_mail_just_delivered_in_every_range(cli: Any) -> None:
    sink = cli.sink()
    smtp = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), "SMTP_STARTTLS": "false"}
    for n in range(3):
        cli.enqueue(to=f"user{n}@example.com")
    assert cli.json("email", "drain", **smtp)["sent"] == 3
    cli.enqueue(to="late@example.com")  # pending: the depth

    for range_name, count in (("1h", 60), ("24h", 24), ("7d", 168)):
        buckets = cli.json("email", "history", "--range", range_name)
        assert len(buckets) == count, range_name
        assert all(set(b) == KEYS for b in buckets)
        assert cli.assert_times_have_offsets(buckets) == count
        assert sum(b["sent"] for b in buckets) == 3
        assert sum(b["enqueued"] for b in buckets) == 4
        assert sum(b["failed"] for b in buckets) == 0
        assert buckets[-1]["depth"] == 1  # the current bucket, sampled now
        latencies = [b for b in buckets if b["sent"]]
        assert latencies and all(0 <= b["p50_ms"] <= b["p95_ms"] for b in latencies)
    assert cli.json("email", "history") == cli.json("email", "history", "--range", "1h")

    # The rollup (run now, through the service interface) changes none of it.
    assert cli.json("jobs", "run", "email.rollup")["status"] == "ok"
    assert sum(b["sent"] for b in cli.json("email", "history")) == 3

    text = cli.ok("email", "history").splitlines()
    assert text[0].split() == ["at", "enqueued", "sent", "failed", "retried", "p50", "p95",
                               "depth"]
    assert len(text) == 1 + 60 + 1
    assert text[-1] == "60 buckets · sent 3 · failed 0 · retried 0"
    assert text[-2].split()[-1] == "1"


def test_an_unknown_range_is_bad_usage(cli: Any) -> None:
    line = cli.error("email", "history", "--range", "2h", code=2)
    cli.assert_one_line(line)
    assert "'2h'" in line and "1h" in line and "7d" in line
