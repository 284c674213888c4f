"""`vertex-tui --no-ui` as systemd runs it: a real process, a real SMTP sink, real signals."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from typing import Any

import pytest

pytestmark = pytest.mark.slow

# SPEC: "exits 0 on SIGTERM/SIGINT after finishing in-flight sends" -- within 10 s.
EXIT_BOUND = 10.0


def stop_and_time(engine: Any, sig: int) -> tuple[int, float]:
    """Send `sig`, wait for the exit; (exit status, seconds from signal to exit)."""
    start = time.monotonic()
    engine.proc.send_signal(sig)
    try:
        code = engine.proc.wait(EXIT_BOUND * 3)
    except subprocess.TimeoutExpired:
        pytest.fail(f"engine did not exit within {EXIT_BOUND * 3:g} s of signal {sig}")
    return code, time.monotonic() - start


def lease_rows(ws: Any, owner: str) -> list[tuple[object, ...]]:
    return ws.query("SELECT name, owner FROM leases WHERE owner = ?", (owner,))


def job_lease_rows(ws: Any, owner: str) -> list[tuple[object, ...]]:
    return ws.query("SELECT id, status FROM email_jobs WHERE lease_owner LIKE ? || '/%'", (owner,))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_headless_engine_delivers_logs_json_and_stops_cleanly(ws: Any, sig: int,
                                                              backend: str) -> None:
    sink = ws.sink()
    engine = ws.start_engine(ws.env(sink, EMAIL_POLL_INTERVAL="0.2"))
    owner = engine.wait_running()
    # While it runs, the engine holds its heartbeat lease in the shared database, and the
    # CLI (another process) sees it alive and its email service serving.
    assert lease_rows(ws, owner), "a running engine holds a lease row"
    status = ws.cli_json("status")
    assert owner in [e["owner"] for e in status["engines"]]
    assert status["services"]["email"]["state"] in ("running", "idle")

    one = ws.cli("email", "enqueue", "--to", "ops@example.com", "--subject", "hi", "--body", "x")
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip().isdigit()
    many = ws.cli("email", "enqueue", "--jsonl", str(ws.jsonl(9)))
    assert many.returncode == 0, many.stderr
    assert many.stdout.strip() == "9"

    ws.wait_for(lambda: sink.count() >= 10, timeout=60, what="10 messages at the sink")
    ws.wait_for(lambda: ws.stats()["sent"] == 10, timeout=60, what="10 jobs recorded as sent")
    jobs = ws.cli_json("email", "list", "--limit", "100")
    assert sorted(sink.message_ids()) == sorted(j["message_id"] for j in jobs)
    received = {r["message_id"]: r for r in sink.received()}
    for job in jobs:
        assert received[job["message_id"]]["subject"] == job["subject"]
        assert received[job["message_id"]]["recipients"] == [job["to"]]

    code, elapsed = stop_and_time(engine, sig)
    assert code == 0
    assert elapsed < EXIT_BOUND

    messages = [r["message"] for r in engine.assert_json_log()]
    assert "engine stopped" in messages

    assert lease_rows(ws, owner) == [], "a stopped engine releases its leases"
    assert job_lease_rows(ws, owner) == []
    assert ws.stats()["sending"] == 0
    assert ws.query("SELECT service, job FROM service_runs WHERE outcome = 'running'") == []
    status = ws.cli_json("status")
    assert status["engines"] == []
    assert status["services"]["email"]["state"] == "stopped"


def test_graceful_stop_mid_delivery_records_every_outcome(ws: Any, backend: str) -> None:
    """SIGTERM while hundreds are queued: what went out is recorded as sent, the rest is
    handed back, so a restarted engine delivers each remaining message exactly once."""
    total = 300
    sink = ws.sink()
    env = ws.env(sink, EMAIL_POLL_INTERVAL="0.2")
    result = ws.cli("email", "enqueue", "--jsonl", str(ws.jsonl(total)))
    assert result.returncode == 0, result.stderr

    first = ws.start_engine(env)
    owner = first.wait_running()
    ws.wait_for(lambda: sink.count() >= 20, timeout=60, what="some deliveries", interval=0.01)
    code, elapsed = stop_and_time(first, signal.SIGTERM)
    assert code == 0
    assert elapsed < EXIT_BOUND

    stats = ws.stats()
    received = Counter(sink.message_ids())
    assert stats["sent"] < total, "the stop came before delivery finished (raise `total`)"
    assert stats["sending"] == 0, "unsent claims are handed back on a graceful stop"
    assert stats["pending"] + stats["sent"] == total
    sent_ids = {
        j["message_id"] for j in ws.cli_json("email", "list", "--status", "sent", "--limit", "1000")
    }
    # Every message that reached the sink was recorded as sent, and nothing else was.
    assert set(received) == sent_ids
    assert lease_rows(ws, owner) == []
    assert job_lease_rows(ws, owner) == []

    second = ws.start_engine(env)
    second.wait_running()
    ws.wait_for(lambda: ws.stats()["sent"] == total, timeout=120, what="every job sent")
    code, _ = stop_and_time(second, signal.SIGTERM)
    assert code == 0
    first.assert_json_log()
    second.assert_json_log()

    received = Counter(sink.message_ids())
    jobs = ws.cli_json("email", "list", "--limit", "1000")
    assert len(jobs) == total
    assert set(received) == {j["message_id"] for j in jobs}
    assert [m for m, n in received.items() if n > 1] == [], "no duplicate without a crash"


def test_sigterm_while_a_send_hangs_still_exits_in_time(ws: Any, backend: str) -> None:
    """A server that never answers DATA cannot hold the engine past its stop bound; the
    unfinished job is handed back for a prompt retry, not left leased or marked sent."""
    hanging = ws.sink("--hang", name="hanging")
    env = ws.env(
        hanging,
        EMAIL_POLL_INTERVAL="0.2",
        EMAIL_QUEUE_WORKERS="1",
        SMTP_TIMEOUT="120",
        EMAIL_LEASE_SECONDS="600",
    )
    engine = ws.start_engine(env)
    owner = engine.wait_running()
    result = ws.cli("email", "enqueue", "--to", "a@example.com", "--subject", "s", "--body", "b")
    assert result.returncode == 0, result.stderr
    job_id = int(result.stdout)

    ws.wait_for(
        lambda: (
            ws.query("SELECT status FROM email_jobs WHERE id = ?", (job_id,))[0][0] == "sending"
        ),
        timeout=30,
        what="the job to be claimed",
    )
    time.sleep(1.0)  # let the worker reach DATA, where the sink stops answering
    assert hanging.count() == 0

    code, elapsed = stop_and_time(engine, signal.SIGTERM)
    assert code == 0
    assert elapsed < EXIT_BOUND
    assert lease_rows(ws, owner) == []

    status, lease_expires_at = ws.query(
        "SELECT status, lease_expires_at FROM email_jobs WHERE id = ?", (job_id,)
    )[0]
    assert status != "sent"
    # Handed back: pending, or still 'sending' with a lease that has already run out
    # (its outcome is unknown), never held for the whole 600 s lease.
    assert status == "pending" or (lease_expires_at is not None and lease_expires_at <= time.time())

    # A healthy server and a new engine: the job goes out promptly.
    healthy = ws.sink(name="healthy")
    retry = ws.start_engine(ws.env(healthy, EMAIL_POLL_INTERVAL="0.2", EMAIL_LEASE_SECONDS="600"))
    retry.wait_running()
    ws.wait_for(
        lambda: healthy.count() == 1, timeout=60, what="the handed-back job to be delivered"
    )
    ws.wait_for(lambda: ws.stats()["sent"] == 1, timeout=30, what="the job recorded as sent")
    code, _ = stop_and_time(retry, signal.SIGTERM)
    assert code == 0
    engine.assert_json_log()
    retry.assert_json_log()


@pytest.mark.parametrize("round_", range(3))
def test_sigterm_as_the_engine_starts_ends_its_first_passes_cleanly(ws: Any, round_: int,
                                                                  backend: str) -> None:
    """SIGTERM while the first scheduler passes are in flight: they finish (or never start),
    nothing is logged as an error, and no pass is left recorded as running."""
    engine = ws.start_engine(ws.env(EMAIL_POLL_INTERVAL="0.2"))
    owner = engine.wait_running()
    code, elapsed = stop_and_time(engine, signal.SIGTERM)
    assert code == 0
    assert elapsed < EXIT_BOUND
    engine.assert_json_log()
    assert ws.query("SELECT service, job FROM service_runs WHERE outcome = 'running'") == []
    assert lease_rows(ws, owner) == []
