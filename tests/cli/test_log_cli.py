"""`vertex-tui log` as an operator runs it: a real headless engine (a subprocess) delivering
to a real aiosmtpd sink (another subprocess), then `vertex-tui log` from a third."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

# Each test runs twice: on SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")

KEYS = {"at", "service", "level", "event", "message"}


def entries(cli: Any, *args: str) -> list[dict[str, Any]]:
    out = cli.ok("log", "--json", *args)
    lines = [json.loads(line) for line in out.splitlines()]
    for line in lines:
        assert set(line) == KEYS, line
    return lines


def wait(predicate: Any, what: str, timeout: float = 60) -> Any:
    """Poll a subprocess-level predicate with a deadline (a broken build, not a timing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def sent_and_failed(lines: list[dict[str, Any]]) -> tuple[int, int]:
    sent = failed = 0
    for line in lines:
        if line["event"] == "email.delivery":
            match = re.search(r"(\d+) sent", line["message"])
            sent += int(match.group(1)) if match else 0
            match = re.search(r"(\d+) failed", line["message"])
            failed += int(match.group(1)) if match else 0
    return sent, failed


def test_log_shows_what_a_headless_engine_did(cli: Any) -> None:
    sink = cli.sink("--reject", "bounce*")
    for i in range(4):
        cli.enqueue(to=f"user{i}@example.org", subject=f"s{i}")
    cli.enqueue(to="bounce@example.org", subject="refused")
    env = cli.env(SMTP_HOST="127.0.0.1", SMTP_PORT=str(sink.port), SMTP_STARTTLS="false",
                  BACKUP_DATABASE_ENABLED="false", BACKUP_FULL_ENABLED="false",
                  BACKUP_ROTATION_ENABLED="false", EMAIL_QUEUE_WORKERS="2")
    with (cli.path / "engine.log").open("w") as log:
        engine = subprocess.Popen([sys.executable, "-m", "vertex_tui", "--no-ui"], env=env,
                                  cwd=cli.path, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=log)
    try:
        wait(lambda: cli.stats()["sent"] == 4 and cli.stats()["failed"] == 1,
             "the engine to deliver")
        # While it runs: the passes it made are there within a second or so.
        passes = wait(lambda: [e for e in entries(cli) if e["event"] == "pass.ok"
                               and e["message"].startswith("lifecycle.check: ")],
                      "the lifecycle pass in the log")
        assert passes[0]["service"] == "lifecycle" and passes[0]["level"] == "info"
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(30)
    assert engine.returncode == 0, (cli.path / "engine.log").read_text()
    assert len(sink.received()) == 4

    lines = entries(cli)
    events = [(e["service"], e["event"]) for e in lines]
    for service in ("email", "backup", "lifecycle", "video"):
        assert (service, "service.started") in events
        assert (service, "service.stopped") in events
    assert ("video", "pass.ok") in events
    # Deliveries: summaries per minute (one, or two if the run crossed a minute), not a row
    # per mail; the minute with the refused mail is a warning.
    summaries = [e for e in lines if e["event"] == "email.delivery"]
    assert 1 <= len(summaries) <= 2
    assert sent_and_failed(lines) == (4, 1)
    assert any(e["level"] == "warning" and "1 failed" in e["message"] for e in summaries)
    for e in lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00", e["at"]), e

    # Filters.
    warnings = entries(cli, "--service", "email", "--level", "warning")
    assert warnings and all(e["service"] == "email" and e["level"] in ("warning", "error")
                            for e in warnings)
    assert {e["event"] for e in entries(cli, "--search", "LIFECYCLE.CHECK")} == {"pass.ok"}
    assert entries(cli, "--since", "10m") == lines
    # --search is the Log screen's language: terms and free text, all must hold.
    videos = entries(cli, "--search", "service:video")
    assert videos and {e["service"] for e in videos} == {"video"}
    assert entries(cli, "--search", "service:email level:warning") == warnings
    assert {e["event"] for e in entries(cli, "--search", "service:lifecycle lifecycle.check")
            } == {"pass.ok"}
    assert entries(cli, "--search", "newer:10m") == lines
    assert entries(cli, "--search", "older:10m") == []
    # The text form: one line an entry, time, level, service, message.
    text = cli.ok("log", "--service", "video").splitlines()
    assert text and all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  \w+ +video +", t)
                        for t in text)


def test_bad_log_options_are_one_line_and_exit_2(cli: Any) -> None:
    assert "--since" in cli.error("log", "--since", "ten minutes")
    assert "--level" in cli.error("log", "--level", "loud")
    assert "status:" in cli.error("log", "--search", "status:failed")  # not a Log term
    assert "level:" in cli.error("log", "--search", "level:loud")
    # Nothing logged yet: an empty list, not an error.
    assert cli.ok("log", "--json") == ""


class Lines:
    """The lines a subprocess prints, read by a thread (a selector on a buffered text pipe
    misses lines that arrived in one read with an earlier one)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self._queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stdout = proc.stdout
        threading.Thread(target=lambda: [self._queue.put(line) for line in stdout],
                         daemon=True).start()

    def next(self, timeout: float = 60) -> dict[str, Any]:
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no line from vertex-tui log --follow") from None
        doc: dict[str, Any] = json.loads(line)
        return doc


def test_follow_prints_new_entries_until_sigint(cli: Any) -> None:
    cli.ok("email", "pause")  # an operator action: the first entry
    follow = subprocess.Popen([sys.executable, "-m", "vertex_tui", "log", "--follow", "--json"],
                              env=cli.env(), cwd=cli.path, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    lines = Lines(follow)
    try:
        first = lines.next()
        assert first["event"] == "audit.email.pause"
        # Another process acts: the follower prints it.
        cli.ok("email", "resume")
        second = lines.next()
        assert second["event"] == "audit.email.resume" and second["service"] == "email"
        # A pass run by a CLI command is logged too (written when the command ends).
        cli.ok("video", "check")
        third = lines.next()
        assert third["event"] == "audit.video.check"
        fourth = lines.next()
        assert (fourth["event"], fourth["service"]) == ("pass.ok", "video")
    finally:
        follow.send_signal(signal.SIGINT)
        _, stderr = follow.communicate(timeout=30)
    assert follow.returncode == 0
    assert "Traceback" not in stderr and stderr == ""
