"""kill -9 a real engine mid-delivery, restart it, and count what the SMTP sink received.

The contract: nothing is lost (every job's Message-ID arrives at least once, every job ends
`sent`), and the only duplicates are messages the dead process had claimed and may have sent
without recording it -- at most `workers x CLAIM_BATCH_MAX` of them (a worker's claim grows
from CLAIM_BATCH to CLAIM_BATCH_MAX when its sends are fast), each with its job's
Message-ID. Without a crash, even two engines sharing one database send nothing twice.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from typing import Any

import pytest

from vertex_tui.engine.email.queue import CLAIM_BATCH_MAX

pytestmark = pytest.mark.slow

TOTAL = 300
WORKERS = 3


def engine_env(ws: Any, sink: Any) -> dict[str, str]:
    return ws.env(
        sink,
        EMAIL_QUEUE_WORKERS=str(WORKERS),
        EMAIL_LEASE_SECONDS="5",
        EMAIL_POLL_INTERVAL="0.2",
    )


def queue_settled(ws: Any) -> bool:
    stats = ws.stats()
    return stats["pending"] == 0 and stats["sending"] == 0


def all_jobs(ws: Any) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = ws.cli_json("email", "list", "--limit", str(TOTAL * 2))
    return jobs


def held_claims(ws: Any, owner: str) -> set[str]:
    """Message-IDs of the jobs `owner`'s workers hold claimed (committed)."""
    return {
        row[0]
        for row in ws.query(
            "SELECT message_id FROM email_jobs WHERE status = 'sending'"
            " AND lease_owner LIKE ? || '/%'",
            (owner,),
        )
    }


def statements_done(ws: Any, name: str, timeout: float = 2.0) -> bool:
    """Whether the server finishes every statement of frozen engine `name` within
    `timeout` s (one waiting on a lock its own frozen transaction holds never does)."""
    deadline = time.monotonic() + timeout
    while ws.sessions(name, "active"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def freeze_holding_claims(ws: Any, sink: Any, victim: Any, owner: str) -> None:
    """SIGSTOP `victim` at a moment it holds committed claims. Stopped, it commits nothing
    more; on PostgreSQL a statement it had sent still runs on the server, so the claims are
    read once none of its sessions is active (its open transactions die with it,
    uncommitted). A freeze between two batches holds none: thaw and try again."""
    for _ in range(200):
        victim.freeze()
        if statements_done(ws, victim.name) and held_claims(ws, owner):
            return
        victim.thaw()
        assert sink.count() < TOTAL - WORKERS * CLAIM_BATCH_MAX, "delivery nearly done; raise TOTAL"
        time.sleep(0.01)
    raise AssertionError("never caught the victim holding a claim")


def kill_mid_delivery(ws: Any, sink: Any, victim: Any) -> set[str]:
    """SIGKILL `victim` once the sink has some but not all mail, at a moment it holds
    claims; returns the Message-IDs of the jobs it held claimed then (sent or not, their
    outcome is unknown)."""
    victim_owner = victim.wait_running()
    ws.wait_for(lambda: sink.count() >= 30, timeout=60, what="30 deliveries", interval=0.01)
    freeze_holding_claims(ws, sink, victim, victim_owner)
    victim.proc.send_signal(signal.SIGKILL)
    assert victim.proc.wait(30) == -signal.SIGKILL
    # Its server sessions end (rolling back what they had open) before anything is read.
    ws.wait_for(lambda: ws.sessions(victim.name) == 0, timeout=30,
                what="the victim's database sessions to end")

    # Read what is recorded as sent before what the sink holds: a live peer goes on sending.
    recorded_sent = {
        row[0] for row in ws.query("SELECT message_id FROM email_jobs WHERE status = 'sent'")
    }
    at_kill = Counter(sink.message_ids())
    assert len(at_kill) < TOTAL, "delivery finished before the kill; raise TOTAL"
    # The dead process still holds its claims: at most one claim batch per worker.
    held = held_claims(ws, victim_owner)
    assert 0 < len(held) <= WORKERS * CLAIM_BATCH_MAX
    # Recorded as sent implies received (the outcome is written after the server's 250).
    assert recorded_sent <= set(at_kill)
    return held


def assert_nothing_lost_few_duplicates(ws: Any, sink: Any, held: set[str]) -> None:
    jobs = all_jobs(ws)
    assert len(jobs) == TOTAL
    assert Counter(j["status"] for j in jobs) == {"sent": TOTAL}
    by_id = {j["message_id"]: j for j in jobs}
    records = sink.received()
    received = Counter(r["message_id"] for r in records)

    lost = set(by_id) - set(received)
    assert not lost, f"{len(lost)} job(s) never reached the sink"
    assert set(received) <= set(by_id), "the sink got a Message-ID no job carries"

    duplicates = {mid: n for mid, n in received.items() if n > 1}
    assert sum(n - 1 for n in duplicates.values()) <= WORKERS * CLAIM_BATCH_MAX
    # Only a job the dead process held can have been sent twice, and every copy is that
    # job's message: same Message-ID, recipient and subject.
    assert set(duplicates) <= held
    for record in records:
        job = by_id[record["message_id"]]
        assert record["recipients"] == [job["to"]]
        assert record["subject"] == job["subject"]

    # Each orphaned claim was reaped once, its attempt recorded as lost.
    lost_attempts = ws.query(
        "SELECT j.message_id FROM email_attempts a JOIN email_jobs j ON j.id = a.job_id"
        " WHERE a.outcome = 'lost'"
    )
    assert sorted(r[0] for r in lost_attempts) == sorted(held)


def enqueue_all(ws: Any) -> None:
    result = ws.cli("email", "enqueue", "--jsonl", str(ws.jsonl(TOTAL)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(TOTAL)


def test_sigkill_mid_delivery_then_restart_loses_nothing(ws: Any, backend: str) -> None:
    sink = ws.sink()
    enqueue_all(ws)
    env = engine_env(ws, sink)
    held = kill_mid_delivery(ws, sink, ws.start_engine(env, "victim"))

    restarted = ws.start_engine(env, "restarted")
    restarted.wait_running()
    ws.wait_for(lambda: queue_settled(ws), timeout=120, what="the queue to settle", interval=0.2)
    restarted.proc.send_signal(signal.SIGTERM)
    assert restarted.proc.wait(30) == 0
    restarted.assert_json_log()
    assert_nothing_lost_few_duplicates(ws, sink, held)


def test_sigkill_one_of_two_engines_the_other_takes_over(ws: Any, backend: str) -> None:
    sink = ws.sink()
    env = engine_env(ws, sink)
    peer = ws.start_engine(env, "peer")
    peer.wait_running()
    victim = ws.start_engine(env, "victim")
    victim.wait_running()
    # The sink is frozen while the CLI enqueues: the CLI exits well after its commit, and
    # in that time two engines on PostgreSQL can deliver most of the queue, the victim's
    # share included, leaving it nothing held to be killed with. Thawed, delivery begins.
    sink.proc.send_signal(signal.SIGSTOP)
    try:
        enqueue_all(ws)
    finally:
        sink.proc.send_signal(signal.SIGCONT)
    held = kill_mid_delivery(ws, sink, victim)

    # No restart: the live peer reaps the dead engine's claims when their leases expire.
    ws.wait_for(lambda: queue_settled(ws), timeout=120, what="the queue to settle", interval=0.2)
    peer.proc.send_signal(signal.SIGTERM)
    assert peer.proc.wait(30) == 0
    peer.assert_json_log()
    assert_nothing_lost_few_duplicates(ws, sink, held)


def test_two_engines_on_one_database_deliver_everything_exactly_once(ws: Any, backend: str) -> None:
    total = 2 * TOTAL
    sink = ws.sink()
    env = engine_env(ws, sink)
    first = ws.start_engine(env, "first")
    second = ws.start_engine(env, "second")
    owners = {first.wait_running(), second.wait_running()}
    assert len(owners) == 2

    result = ws.cli("email", "enqueue", "--jsonl", str(ws.jsonl(total)))
    assert result.returncode == 0, result.stderr
    ws.wait_for(
        lambda: ws.stats()["sent"] == total, timeout=180, what="every job sent", interval=0.2
    )
    for engine in (first, second):
        engine.proc.send_signal(signal.SIGTERM)
    assert [first.proc.wait(30), second.proc.wait(30)] == [0, 0]
    first.assert_json_log()
    second.assert_json_log()

    jobs = ws.cli_json("email", "list", "--limit", str(total * 2))
    received = Counter(sink.message_ids())
    assert len(jobs) == total
    assert set(received) == {j["message_id"] for j in jobs}
    assert [mid for mid, n in received.items() if n > 1] == []
    assert sum(received.values()) == total
    # Both engines took part: each recorded some of the attempts.
    attempt_owners = {
        row[0].rsplit("/", 1)[0] for row in ws.query("SELECT DISTINCT owner FROM email_attempts")
    }
    assert attempt_owners == owners
    assert ws.query("SELECT count(*) FROM email_attempts WHERE outcome != 'sent'") == [(0,)]
