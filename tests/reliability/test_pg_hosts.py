"""Several engines on several hosts over one PostgreSQL database (real processes throughout).

Three headless engines share one database; one of them runs under another host name (its own
UTS namespace, `unshare --uts`), so nothing can tell whether it is alive by looking for its
process id: only its heartbeat in the database says so. Mail goes to one recording sink.

- No crash: 3,000 mails, each delivered exactly once, by all three engines.
- kill -9 of two engines mid-delivery (one of them the other host's): nothing is lost; the
  only duplicates are messages the dead engines held claimed when they died (sent, maybe,
  without the outcome recorded: at most workers x CLAIM_BATCH_MAX each), and the survivor reaps
  each orphaned claim once.
- Singletons: the killed holder of the lifecycle and video passes and of a running database
  backup (another host's engine) loses them to a live engine within 60 s of the kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from vertex_tui.engine.email.queue import CLAIM_BATCH_MAX

pytestmark = pytest.mark.slow

TOTAL = 3_000
WORKERS = 3
OTHER_HOST = "other"


def engine_env(ws: Any, sink: Any, **settings: str) -> dict[str, str]:
    return ws.env(sink, EMAIL_QUEUE_WORKERS=str(WORKERS), EMAIL_LEASE_SECONDS="5",
                  EMAIL_POLL_INTERVAL="0.2", **settings)


def start_three(ws: Any, env: dict[str, str]) -> list[Any]:
    """Two engines on this host and one on OTHER_HOST; returns them once all run."""
    engines = [ws.start_engine(env, "here1"), ws.start_engine(env, "here2"),
               ws.start_engine(env, "there", host=OTHER_HOST)]
    owners = [e.wait_running() for e in engines]
    assert len(set(owners)) == 3
    assert owners[2].startswith(f"{OTHER_HOST}:") and not owners[0].startswith(f"{OTHER_HOST}:")
    return engines


def enqueue(ws: Any) -> None:
    result = ws.cli("email", "enqueue", "--jsonl", str(ws.jsonl(TOTAL)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(TOTAL)


def sent(ws: Any) -> int:
    return int(ws.query("SELECT count(*) FROM email_jobs WHERE status = 'sent'")[0][0])


def stop_cleanly(*engines: Any) -> None:
    for engine in engines:
        engine.proc.send_signal(signal.SIGTERM)
    assert [e.proc.wait(30) for e in engines] == [0] * len(engines)
    for engine in engines:
        engine.assert_json_log()


def jobs_by_message_id(ws: Any) -> dict[str, tuple[str, str, str]]:
    rows = ws.query("SELECT message_id, status, to_header, subject FROM email_jobs")
    assert len(rows) == TOTAL
    return {mid: (status, to, subject) for mid, status, to, subject in rows}


def attempt_hosts(ws: Any) -> set[str]:
    rows = ws.query("SELECT DISTINCT owner FROM email_attempts")
    return {owner.split(":", 1)[0] for (owner,) in rows}


def test_three_engines_on_two_hosts_deliver_3000_mails_exactly_once(ws: Any,
                                                                    pg_url: str) -> None:
    sink = ws.sink()
    engines = start_three(ws, engine_env(ws, sink))
    enqueue(ws)
    ws.wait_for(lambda: sent(ws) == TOTAL, timeout=300, what="every job sent", interval=0.5)
    stop_cleanly(*engines)

    jobs = jobs_by_message_id(ws)
    received = Counter(sink.message_ids())
    assert set(received) == set(jobs)
    assert [mid for mid, n in received.items() if n > 1] == []
    assert sum(received.values()) == TOTAL
    assert ws.query("SELECT outcome, count(*) FROM email_attempts GROUP BY outcome") == [
        ("sent", TOTAL)]
    # All three engines delivered, the other host's among them.
    owners = {row[0].rsplit("/", 1)[0] for row in
              ws.query("SELECT DISTINCT owner FROM email_attempts")}
    assert len(owners) == 3
    assert attempt_hosts(ws) == {OTHER_HOST, os.uname().nodename}


def test_kill_two_of_three_engines_mid_delivery_nothing_lost(ws: Any, pg_url: str) -> None:
    sink = ws.sink()
    survivor, victim, far_victim = start_three(ws, engine_env(ws, sink))
    victims = {e.owner(): e for e in (victim, far_victim)}
    enqueue(ws)
    ws.wait_for(lambda: sink.count() >= 300, timeout=120, what="300 deliveries", interval=0.01)
    for engine in victims.values():
        engine.proc.send_signal(signal.SIGKILL)
    assert [e.proc.wait(30) for e in victims.values()] == [-signal.SIGKILL] * 2

    # What each dead engine held claimed when it died: its outcome is unknown.
    held = {owner: {row[0] for row in ws.query(
        "SELECT message_id FROM email_jobs WHERE status = 'sending' AND lease_owner LIKE ?"
        " || '/%'", (owner,))} for owner in victims}
    assert all(len(h) <= WORKERS * CLAIM_BATCH_MAX for h in held.values()), held
    held_any = set().union(*held.values())
    assert held_any, "the kills came mid-delivery: the dead engines held claims"
    assert sink.count() < TOTAL, "delivery finished before the kills; raise TOTAL"

    ws.wait_for(lambda: sent(ws) == TOTAL, timeout=300, what="the survivor to send the rest",
                interval=0.5)
    stop_cleanly(survivor)

    jobs = jobs_by_message_id(ws)
    assert Counter(status for status, _, _ in jobs.values()) == {"sent": TOTAL}
    records = sink.received()
    received = Counter(r["message_id"] for r in records)
    assert set(jobs) - set(received) == set(), "a job never reached the sink"
    assert set(received) <= set(jobs)
    duplicates = {mid for mid, n in received.items() if n > 1}
    assert duplicates <= held_any, "only a claim of a dead engine may go out twice"
    assert sum(received[mid] - 1 for mid in duplicates) <= len(held_any)
    print(f"killed holding {len(held_any)} claims; {len(duplicates)} sent twice")
    for record in records:
        _, to, subject = jobs[record["message_id"]]
        assert (record["recipients"], record["subject"]) == ([to], subject)
    # Every orphaned claim was reaped once (an attempt recorded as lost), nothing else was.
    lost = ws.query("SELECT j.message_id FROM email_attempts a JOIN email_jobs j"
                    " ON j.id = a.job_id WHERE a.outcome = 'lost'")
    assert sorted(r[0] for r in lost) == sorted(held_any)
    assert OTHER_HOST in attempt_hosts(ws)


# ---- singletons --------------------------------------------------------------------------


def slow_pg_bin(tmp: Path, real: Path) -> tuple[Path, Path]:
    """A folder of PostgreSQL tools whose pg_dump answers --version and otherwise sleeps
    (a database backup that stays running), writing its pid to the returned file."""
    folder, pid_file = tmp / "slow-pg-bin", tmp / "slow-pg-dump.pid"
    folder.mkdir()
    (folder / "pg_restore").symlink_to(real / "pg_restore")
    script = folder / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = --version ] && exec "{real}/pg_dump" "$@"\n'
        f'echo $$ > "{pid_file}"\n'
        "exec sleep 600\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return folder, pid_file


def holders(ws: Any, *names: str) -> dict[str, str]:
    marks = ", ".join("?" * len(names))
    return dict(ws.query(f"SELECT name, owner FROM leases WHERE name IN ({marks})", names))


@pytest.mark.timeout(600)  # waits for minute boundaries: up to ~4 minutes
def test_a_killed_hosts_singletons_are_taken_over_within_60_s(ws: Any, pg_url: str,
                                                              pg_server: Any) -> None:
    singletons = ("lifecycle", "video", "backup:database")
    slow_bin, dump_pid = slow_pg_bin(ws.path, Path(pg_server.bin_dir))
    common = {"LIFECYCLE_CHECK_INTERVAL_SECONDS": "5", "VIDEO_SCHEDULER_CHECK_INTERVAL": "5",
              "BACKUP_DATABASE_SCHEDULE": "* * * * *", "BACKUP_DATABASE_ENABLED": "true"}
    sink = ws.sink()
    far = ws.start_engine(engine_env(ws, sink, VERTEX_PG_BIN=str(slow_bin), **common),
                          "there", host=OTHER_HOST)
    far_owner = far.wait_running()
    try:
        # The other host's engine holds all three: the passes between runs, the backup while
        # its pg_dump runs (from the next minute on).
        ws.wait_for(lambda: holders(ws, *singletons) == dict.fromkeys(singletons, far_owner),
                    timeout=90, what="the other host's engine to hold every singleton",
                    interval=0.2)
        [(backup_id,)] = ws.query("SELECT id FROM backups WHERE status = 'running'")
        here = ws.start_engine(engine_env(ws, sink, VERTEX_PG_BIN=str(pg_server.bin_dir),
                                          **common), "here")
        here_owner = here.wait_running()
        # A live holder keeps them: the engine here runs a pass of each, on standby.
        ws.wait_for(lambda: ws.query("SELECT count(DISTINCT service) FROM service_runs"
                                     " WHERE owner = ? AND outcome = 'skipped'"
                                     " AND service IN ('lifecycle', 'video')",
                                     (here_owner,)) == [(2,)],
                    timeout=30, what="standby passes of the engine here", interval=0.2)
        assert holders(ws, *singletons) == dict.fromkeys(singletons, far_owner)

        # Killed at 20-25 s past a minute: its heartbeat (beaten every 10 s, 30 s to live)
        # is stale before the next minute, when the backup job fires again here.
        ws.wait_for(lambda: 20 <= time.time() % 60 < 25, timeout=60,
                    what="20 s past a minute", interval=0.1)
        far.proc.send_signal(signal.SIGKILL)
        assert far.proc.wait(30) == -signal.SIGKILL
        killed_at = time.monotonic()

        def taken(*names: str) -> bool:
            return holders(ws, *names) == dict.fromkeys(names, here_owner)

        ws.wait_for(lambda: taken("lifecycle", "video"), timeout=60,
                    what="the engine here to take the passes over", interval=0.2)
        passes_after = time.monotonic() - killed_at
        ws.wait_for(lambda: taken("backup:database"),
                    timeout=60 - (time.monotonic() - killed_at),
                    what="the engine here to take the database backup over", interval=0.2)
        backup_after = time.monotonic() - killed_at
        print(f"taken over after the kill: passes {passes_after:.1f} s,"
              f" backup {backup_after:.1f} s")
        ws.wait_for(lambda: ws.query("SELECT count(*) FROM backups WHERE status = 'ok'"
                                     " AND owner = ?", (here_owner,)) == [(1,)],
                    timeout=60, what="the engine here to make the backup", interval=0.2)
        # The dead engine's backup is recorded as interrupted, not left running.
        [(status, error)] = ws.query("SELECT status, error FROM backups WHERE id = ?",
                                     (backup_id,))
        assert (status, error) == ("failed", "interrupted: the process making it stopped")
        stop_cleanly(here)
    finally:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            os.kill(int(dump_pid.read_text(encoding="utf-8")), signal.SIGKILL)
