"""`vertex-tui jobs` as an operator runs it: the list (JSON and list-timers text), run now,
pause/resume, history, unknown jobs; without an engine and against a running one."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Each test runs twice: on SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")

JOBS = {"backup.database", "backup.storage", "backup.full", "backup.rotation", "backup.drill",
        "lifecycle.check", "video.check", "email.reap", "email.rollup",
        "engine.log_prune"}
KEYS = {"job", "service", "schedule", "enabled", "paused", "next_run", "last_run",
        "last_outcome", "last_duration_s", "holder"}


def until(predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.2)


def by_job(cli: Any) -> dict[str, dict[str, Any]]:
    return {j["job"]: j for j in cli.json("jobs")}


def test_jobs_lists_every_job_of_every_service(cli: Any) -> None:
    jobs = cli.json("jobs")
    assert {j["job"] for j in jobs} == JOBS
    assert all(set(j) == KEYS for j in jobs)
    listed = {j["job"]: j for j in jobs}
    assert listed["backup.database"]["schedule"] == "cron 0 2 * * *"
    assert listed["backup.storage"]["enabled"] is False
    assert listed["video.check"]["schedule"] == "every 300 s"
    assert listed["lifecycle.check"]["service"] == "lifecycle"
    text = cli.ok("jobs").splitlines()
    assert text[0].split() == ["NEXT", "LEFT", "LAST", "PASSED", "JOB", "RESULT"]
    assert text[-1] == f"{len(JOBS)} jobs listed."
    assert any("backup.storage" in line and "disabled" in line for line in text)


@pytest.mark.parametrize("action", ["run", "pause", "resume", "history"])
def test_an_unknown_job_is_bad_usage_naming_the_known_ones(cli: Any, action: str) -> None:
    line = cli.error("jobs", action, "backup.nightly", code=2)
    assert "unknown job 'backup.nightly'" in line
    assert "backup.database" in line and "lifecycle.check" in line and "email.reap" in line
    assert cli.query("SELECT count(*) FROM audit_log") == [(0,)]


def test_run_now_without_an_engine_runs_here_and_lands_in_history(cli: Any) -> None:
    result = cli.json("jobs", "run", "lifecycle.check")
    assert result["job"] == "lifecycle.check" and result["status"] == "ok"
    assert "via" not in result  # no engine: this process ran it
    cli.ok("jobs", "run", "backup.rotation")
    history = cli.json("jobs", "history", "lifecycle.check", "--limit", "5")
    assert [(h["job"], h["outcome"]) for h in history] == [("lifecycle.check", "ok")]
    assert history[0]["duration_s"] is not None and history[0]["started_at"].endswith("+00:00")
    listed = by_job(cli)
    assert listed["lifecycle.check"]["last_outcome"] == "ok"
    assert listed["backup.rotation"]["last_run"] is not None
    assert listed["video.check"]["last_run"] is None
    assert cli.query("SELECT action FROM audit_log ORDER BY id") == [
        ("lifecycle.check",), ("backup.run.rotation",)]
    text = cli.ok("jobs", "history", "backup.rotation")
    assert text.splitlines()[0].split()[:3] == ["STARTED", "OUTCOME", "SECONDS"]
    assert "database=0" in text


def test_pause_and_resume_are_durable_and_audited(cli: Any) -> None:
    assert cli.ok("jobs", "pause", "backup.database").strip() == "backup.database paused"
    assert "already paused" in cli.ok("jobs", "pause", "backup.database")
    listed = by_job(cli)
    assert listed["backup.database"]["paused"] is True
    assert listed["backup.full"]["paused"] is False
    assert "paused" in next(line for line in cli.ok("jobs").splitlines()
                            if "backup.database" in line)
    assert cli.json("jobs", "resume", "backup.database") == {
        "job": "backup.database", "paused": False, "changed": True}
    assert by_job(cli)["backup.database"]["paused"] is False
    audit = cli.query("SELECT action, detail FROM audit_log ORDER BY id")
    assert [(a, json.loads(d)["changed"]) for a, d in audit] == [
        ("job.pause", True), ("job.pause", False), ("job.resume", True)]


@pytest.fixture
def engine(cli: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A headless engine on the test's database (mail to a closed port), until SIGTERM."""
    log = (cli.path / "engine.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "vertex_tui", "--no-ui"],
                            env=cli.env(SMTP_PORT=str(cli.closed_port())), cwd=cli.path,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        until(lambda: proc.poll() is not None or any(
            e["pid"] == proc.pid for e in cli.json("status")["engines"]), "the engine to run")
        assert proc.poll() is None, (cli.path / "engine.log").read_text()
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def test_jobs_against_a_running_engine(cli: Any, engine: subprocess.Popen[bytes]) -> None:
    status = cli.json("status")
    (mine,) = [e for e in status["engines"] if e["pid"] == engine.pid]
    owner = mine["owner"]
    assert mine["host"] and mine["since"] and mine["heartbeat_at"]
    # The engine ran its first passes at start and holds their leases between passes.
    until(lambda: by_job(cli)["lifecycle.check"]["last_outcome"] == "ok", "the first pass")
    assert sorted(cli.json("status")["engines"][0]["leases"]) == ["lifecycle", "video"]
    assert status["services"]["lifecycle"]["holder"] == owner
    listed = by_job(cli)
    assert listed["lifecycle.check"]["holder"] == owner
    assert listed["backup.database"]["next_run"] is not None  # as the engine published it

    # Run now goes to the running engine, which schedules the job.
    result = cli.json("jobs", "run", "backup.database")
    assert result["status"] == "ok", result
    assert result["via"].startswith("request #") and owner in result["via"]
    ran = cli.query("SELECT owner, outcome FROM service_runs WHERE job = 'database'")
    assert ran == [(owner, "ok")]

    # A pause made here is followed by the engine within a poll: its scheduler pauses the
    # job (the schedule it publishes says so, with no next run); a resume brings it back.
    def published() -> dict[str, Any]:
        (value,) = cli.query("SELECT value FROM engine_flags WHERE name = ?",
                             (f"schedule:{owner}",))[0]
        doc: dict[str, Any] = json.loads(value)["backup.database"]
        return doc

    assert published()["paused"] is False and published()["next_run"] is not None
    cli.ok("jobs", "pause", "backup.database")
    until(lambda: published()["paused"] and published()["next_run"] is None,
          "the engine to pause backup.database")
    assert by_job(cli)["backup.database"]["next_run"] is None
    cli.ok("jobs", "resume", "backup.database")
    until(lambda: not published()["paused"] and published()["next_run"] is not None,
          "the engine to resume backup.database")
    assert by_job(cli)["backup.database"]["next_run"] is not None
