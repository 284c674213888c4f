"""A zombie worker: a real engine frozen with SIGSTOP past its lease while a second real
engine delivers the jobs it held, then thawed with SIGCONT.

What the design promises (README, "Headless under systemd"): a job whose lease ran out is
due again and another engine delivers it; the frozen worker's late outcomes are refused (its
attempts are fenced by owner and attempt number), so every job row is recorded as sent once,
by the engine that held it; the thawed worker does not go on sending a batch whose leases it
lost. Only what it had sent without recording yet, or had on the wire when it froze, reaches
the relay a second time, with the same Message-ID. The sink's raw deliveries are counted,
not deduplicated by Message-ID.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
import time
from collections import Counter
from typing import Any

import pytest

from vertex_tui.engine.email.queue import CLAIM_BATCH_MAX

pytestmark = pytest.mark.slow

TOTAL = 600
LEASE = 5  # EMAIL_LEASE_SECONDS of both engines
REFUSED = "lease lost, outcome of attempt"


def quiet(ws: Any, zombie: Any) -> bool:
    """True once the frozen `zombie` can neither block the peer nor change a row any more.
    On SQLite: no process holds the database's write lock. On PostgreSQL: every session of
    the zombie is idle -- none in a transaction (its row locks would make the peer's SKIP
    LOCKED reaper pass those jobs over), none running a statement the server could still
    commit after the test has read what the zombie holds."""
    if ws.database_url is not None:
        return bool(ws.sessions(zombie.name) == ws.sessions(zombie.name, "idle"))
    with contextlib.closing(sqlite3.connect(ws.db_path, timeout=0.2)) as conn:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False
        conn.rollback()
        return True


def settled_ids(sink: Any, quiet: float = 0.5) -> set[str]:
    """The Message-IDs the sink has received once it has taken nothing new for `quiet` s: a
    message whose end of DATA was on the wire when the sender froze still arrives (the
    kernel delivers what was written) and is one the frozen engine sent."""
    ids = sink.message_ids()
    still = time.monotonic()
    while time.monotonic() - still < quiet:
        time.sleep(0.02)
        now = sink.message_ids()
        if len(now) != len(ids):
            ids, still = now, time.monotonic()
    return set(ids)


def freeze_mid_batch(ws: Any, sink: Any, zombie: Any, owner: str) -> tuple[set[str], set[str]]:
    """SIGSTOP `zombie` at a moment it holds claims, has sent at least one of them without
    recording it yet, and holds no write lock. Returns (Message-IDs it holds, Message-IDs the
    sink has received so far)."""
    ws.wait_for(lambda: sink.count() >= 20, timeout=60, what="20 deliveries", interval=0.01)
    for _ in range(200):
        zombie.freeze()
        if not quiet(ws, zombie):
            zombie.thaw()
            time.sleep(0.01)
            continue
        held = {
            row[0]
            for row in ws.query(
                "SELECT message_id FROM email_jobs WHERE status = 'sending'"
                " AND lease_owner LIKE ? || '/%'", (owner,))
        }
        received = settled_ids(sink)
        if held & received:
            return held, received
        zombie.thaw()
        assert len(received) < TOTAL - CLAIM_BATCH_MAX, "delivery nearly done; raise TOTAL"
        time.sleep(0.01)
    raise AssertionError("never caught the zombie with a sent, unrecorded claim")


def refused_job_ids(engine: Any) -> list[int]:
    ids = []
    for line in engine.log_lines():
        record = json.loads(line)
        if REFUSED in record["message"]:
            ids.append(int(record["message"].split()[2].rstrip(":")))
    return ids


def test_a_frozen_engines_jobs_are_delivered_by_another_and_its_late_outcomes_refused(
    ws: Any, backend: str,
) -> None:
    sink = ws.sink()
    env = ws.env(sink, EMAIL_QUEUE_WORKERS="1", EMAIL_LEASE_SECONDS=str(LEASE),
                 EMAIL_POLL_INTERVAL="0.2")
    zombie = ws.start_engine(env, "zombie")
    zombie_owner = zombie.wait_running()
    result = ws.cli("email", "enqueue", "--jsonl", str(ws.jsonl(TOTAL)))
    assert result.returncode == 0, result.stderr

    held, received_at_stop = freeze_mid_batch(ws, sink, zombie, zombie_owner)
    assert 0 < len(held) <= CLAIM_BATCH_MAX  # one worker: one claim batch
    sent_unrecorded = held & received_at_stop

    # A second engine reaps the frozen one's expired claims and delivers everything.
    peer = ws.start_engine(env, "peer")
    peer_owner = peer.wait_running()
    ws.wait_for(lambda: ws.stats()["sent"] == TOTAL, timeout=120, what="every job sent",
                interval=0.2)
    peer.proc.send_signal(signal.SIGTERM)
    assert peer.proc.wait(30) == 0
    delivered_before_thaw = sink.count()

    zombie.thaw()
    # Left to itself, the thawed worker goes through the rest of its batch before it claims
    # again. A job enqueued now can only be sent by it (the peer is gone, it has one worker)
    # and only after that batch: once the probe is sent, the zombie has done all it would.
    result = ws.cli("email", "enqueue", "--to", "probe@example.com", "--subject", "probe",
                    "--body", "b")
    assert result.returncode == 0, result.stderr
    probe = int(result.stdout)
    ws.wait_for(lambda: ws.query("SELECT status FROM email_jobs WHERE id = ?", (probe,))
                == [("sent",)], timeout=60, what="the zombie to send the probe", interval=0.1)
    zombie.proc.send_signal(signal.SIGTERM)
    assert zombie.proc.wait(30) == 0
    for engine in (zombie, peer):
        engine.assert_json_log()

    # Late outcomes refused: at least those of the mail it had sent before freezing, and
    # only for jobs it held.
    jobs = dict(ws.query("SELECT message_id, id FROM email_jobs WHERE id <> ?", (probe,)))
    [(probe_mid, probe_owner)] = ws.query(
        "SELECT j.message_id, a.owner FROM email_jobs j JOIN email_attempts a"
        " ON a.job_id = j.id WHERE j.id = ?", (probe,))
    assert probe_owner == f"{zombie_owner}/w0"
    held_ids = {jobs[m] for m in held}
    refused = refused_job_ids(zombie)
    assert {jobs[m] for m in sent_unrecorded} <= set(refused) <= held_ids
    assert len(refused) == len(set(refused))

    # Every job row sent once, recorded by one attempt; the held ones by the peer, after the
    # zombie's attempt was recorded as lost by the reaper.
    assert ws.query("SELECT status, count(*) FROM email_jobs GROUP BY status") == [
        ("sent", TOTAL + 1)]
    sent_attempts = ws.query(
        "SELECT job_id, owner FROM email_attempts WHERE outcome = 'sent' AND job_id <> ?"
        " ORDER BY job_id", (probe,))
    assert len(sent_attempts) == TOTAL
    assert len({job_id for job_id, _ in sent_attempts}) == TOTAL
    by_job = dict(sent_attempts)
    for job_id in held_ids:
        assert by_job[job_id].startswith(f"{peer_owner}/"), job_id
        history = ws.query(
            "SELECT owner, outcome FROM email_attempts WHERE job_id = ? ORDER BY id", (job_id,))
        assert history == [(f"{zombie_owner}/w0", "lost"), (by_job[job_id], "sent")]

    # Raw deliveries at the sink: nothing lost, nothing the peer sent twice. After the thaw
    # only the zombie could deliver, and it sends at most the one message it had on the wire
    # when it froze: it does not go on with a batch whose leases it lost.
    raw = Counter(sink.message_ids())
    assert raw.pop(probe_mid) == 1
    assert set(raw) == set(jobs), "every job reached the sink, and nothing else did"
    after_thaw = [m for m in sink.message_ids()[delivered_before_thaw:] if m != probe_mid]
    assert len(after_thaw) <= 1, f"the thawed zombie sent {len(after_thaw)} of its lost batch"
    # So the only duplicates are what the zombie sent and never recorded: before it froze,
    # or on the wire then. Each arrived twice (its copy and the peer's), no more.
    duplicates = {m for m, n in raw.items() if n > 1}
    assert duplicates == sent_unrecorded | set(after_thaw)
    assert set(raw.values()) <= {1, 2}
    assert sum(raw.values()) == TOTAL + len(duplicates)
    # And each of those sends is exactly one refused late outcome.
    assert sorted(refused) == sorted(jobs[m] for m in duplicates)
