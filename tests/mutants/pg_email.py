"""Proof that the PostgreSQL email tests fail on the naive ports they guard (issue 11: "each
with a test that runs against PostgreSQL and fails on the naive port").

    .venv/bin/python tests/mutants/pg_email.py [--only NAME ...] [--json]    # ~3 min

Each mutant swaps one PostgreSQL statement of store/email_pg.py (or its caller in
store/email.py) for what a straight port of the SQLite code would do. For each, the script
runs pytest over the PostgreSQL email tests in a child process with this module loaded as a
plugin (`-p pg_email`, MUTANT=name) and checks that the tests named in `MUTANTS` fail. Exit 1
when a mutant survives (none of its tests fails), or when the unmutated run fails. It is not
collected by pytest itself (no test_ prefix); run it after changing email_pg.py.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FILES = ["tests/engine/test_pg_email_races.py", "tests/engine/test_pg_email.py",
         "tests/engine/test_pg_email_waits.py"]

# mutant -> the tests that must fail under it (others may fail too)
MUTANTS: dict[str, tuple[str, ...]] = {
    "claim_naive": ("test_eight_concurrent_claimers_never_share_a_job",),
    "claim_no_skip_locked": (
        "test_a_claim_skips_the_rows_another_claim_holds_instead_of_waiting",),
    "claim_subquery_in": ("test_a_claim_takes_at_most_its_limit",),
    "claim_caller_clock": ("test_lease_and_retry_expiries_follow_the_servers_clock",),
    "complete_two_statements": ("test_a_completion_behind_a_reaper_records_nothing",),
    "complete_caller_clock": ("test_lease_and_retry_expiries_follow_the_servers_clock",),
    "reap_two_statements": ("test_two_reapers_record_each_lost_attempt_once",),
    "reap_no_skip_locked": ("test_two_reapers_record_each_lost_attempt_once",),
    "reap_caller_clock": ("test_lease_and_retry_expiries_follow_the_servers_clock",),
    "extend_caller_clock": ("test_lease_and_retry_expiries_follow_the_servers_clock",),
    "writer_range": ("test_interleaved_inserts_get_their_own_ids",),
    "retry_select_then_update": ("test_retry_failed_takes_only_jobs_still_failed",),
    "retry_no_skip_locked": ("test_retry_of_the_oldest_skips_rows_another_retry_holds",),
}


# ---- the plugin: loaded by the child pytest, swaps in MUTANT -------------------------------


def _install(name: str) -> None:  # one branch per mutant, read side by side
    from vertex_tui.engine.email.models import ClaimedJob
    from vertex_tui.engine.store import email as store
    from vertex_tui.engine.store import email_pg
    from vertex_tui.engine.store.dialect import Sql

    now_sql = email_pg.DB_NOW
    cols = ClaimedJob.CLAIM_COLUMNS

    def replaced(text: str, old: str, new: str) -> str:
        assert old in text, f"mutant {name}: {old!r} is no longer in the statement"
        return text.replace(old, new)

    def set_claim(text: str, order: str) -> None:
        """The claim statement, and the order its parameters go in (names of claim()'s)."""
        sql = Sql(f"mutant.{name}", sqlite=store._CLAIM.sqlite, postgresql=text)

        async def claim(db: Any, *, owner: str, now: float, lease_until: float,
                        limit: int) -> list[ClaimedJob]:
            values = {"owner": owner, "now": now, "until": lease_until, "limit": limit}
            rows = await db.write(sql, [values[k] for k in order.split()])
            return [ClaimedJob.from_row(r, owner) for r in rows]

        store.claim = claim  # type: ignore[assignment]

    naive_set = (" UPDATE email_jobs SET status = 'sending', attempts = attempts + 1,"
                 f" lease_owner = ?, lease_expires_at = {now_sql} + (?::float8 - ?::float8),"
                 " updated_at = ?")
    if name == "claim_naive":  # the SQLite statement: no row locks, no status in the UPDATE
        set_claim(f"{naive_set} WHERE id IN (SELECT id FROM email_jobs WHERE status = 'pending'"
                  f" AND next_attempt_at <= {now_sql} ORDER BY next_attempt_at LIMIT ?)"
                  f" RETURNING {cols}", "owner until now now limit")
    elif name == "claim_no_skip_locked":
        set_claim(replaced(email_pg.CLAIM, " FOR UPDATE SKIP LOCKED", ""),
                  "limit owner until now now")
    elif name == "claim_subquery_in":  # SKIP LOCKED, but in a sub-select the plan may rescan
        set_claim(f"{naive_set} WHERE email_jobs.status = 'pending' AND id IN (SELECT id"
                  f" FROM email_jobs WHERE status = 'pending' AND next_attempt_at <= {now_sql}"
                  " ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)"
                  f" RETURNING {cols}", "owner until now now limit")
    elif name == "claim_caller_clock":
        text = replaced(email_pg.CLAIM, f"next_attempt_at <= {now_sql}",
                        "next_attempt_at <= ?::float8")
        text = replaced(text, f"{now_sql} + (?::float8 - ?::float8)",
                        "?::float8 + 0 * ?::float8")
        set_claim(text, "now limit owner until now now")
    elif name == "complete_two_statements":  # SQLite's shape: fenced INSERT, then UPDATE
        async def complete(db: Any, items: Any) -> Any:
            fence = "id = ? AND status = 'sending' AND lease_owner = ? AND attempts = ?"
            held = set()
            async with db.transaction() as conn:
                for i in items:
                    key = (i.job_id, i.owner, i.attempt)
                    if not await conn.execute_fetchall(
                        "INSERT INTO email_attempts (job_id, round, attempt, owner, at,"
                        " outcome, code, error) SELECT id, round, attempts, lease_owner,"
                        f" ?, ?, ?, ? FROM email_jobs WHERE {fence} RETURNING job_id",
                        (i.at, i.outcome, i.code, i.error, *key)):
                        continue
                    held.add(key)
                    await conn.execute(
                        "UPDATE email_jobs SET status = ?, next_attempt_at ="
                        " coalesce(?::float8, next_attempt_at), lease_owner = NULL,"
                        " lease_expires_at = NULL, updated_at = ?, finished_at = ?::float8,"
                        f" last_error = ?, last_code = ? WHERE {fence}",
                        (i.status, i.retry_at, i.at,
                         i.at if i.status in ("sent", "failed") else None, i.error, i.code,
                         *key))
            return [i for i in items if (i.job_id, i.owner, i.attempt) not in held]

        email_pg.complete = complete  # type: ignore[assignment]
    elif name == "complete_caller_clock":
        email_pg.COMPLETE = replaced(email_pg.COMPLETE, f"coalesce({now_sql} + v.retry_in",
                                     "coalesce(v.at + v.retry_in")
    elif name == "reap_two_statements":  # SQLite's shape: INSERT ... SELECT, then UPDATE
        async def reap_in(conn: Any, now: float, held: Any = ()) -> int:
            cond = (f"status = 'sending' AND lease_expires_at <= {now_sql}"
                    " AND NOT (id = ANY(?::bigint[]))")
            await conn.execute(
                "INSERT INTO email_attempts (job_id, round, attempt, owner, at, outcome, error)"
                f" SELECT id, round, attempts, lease_owner, ?, 'lost', ? FROM email_jobs"
                f" WHERE {cond}", (now, email_pg.LOST, list(held)))
            result = await conn.execute(
                "UPDATE email_jobs SET status = CASE WHEN attempts >= max_attempts"
                " THEN 'failed' ELSE 'pending' END, finished_at = CASE WHEN attempts >="
                f" max_attempts THEN ?::float8 END, next_attempt_at = {now_sql},"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = ?,"
                f" last_error = ?, last_code = NULL WHERE {cond}",
                (now, now, email_pg.LOST, list(held)))
            return int(result.rowcount)

        email_pg.reap_in = reap_in  # type: ignore[assignment]
    elif name == "reap_no_skip_locked":  # exactly-once still (the UPDATE re-checks), but waits
        email_pg.REAP = replaced(email_pg.REAP, " FOR UPDATE SKIP LOCKED", "")
    elif name == "reap_caller_clock":
        # `now` goes first: the expiry test is the statement's first placeholder.
        text = replaced(email_pg.REAP, f"lease_expires_at <= {now_sql}",
                        "lease_expires_at <= ?::float8")

        async def reap_in(conn: Any, now: float, held: Any = ()) -> int:
            result = await conn.execute(text, (now, list(held), now, now, email_pg.LOST, now,
                                               email_pg.LOST))
            return max(0, int(result.rowcount))

        email_pg.reap_in = reap_in  # type: ignore[assignment]
    elif name == "extend_caller_clock":  # the absolute `until` of the caller, as on SQLite
        extend = store.extend_leases

        async def extend_leases(db: Any, jobs: Any, until: float, now: Any = None) -> int:
            return await extend(db, jobs, until, None)

        store.extend_leases = extend_leases  # type: ignore[assignment]
    elif name == "writer_range":  # SQLite's JobWriter: one id range per transaction
        def ids(self: Any) -> list[int]:
            got = self._returned
            return list(range(got[0], got[0] + len(got))) if got else []

        store.PgJobWriter.ids = property(ids)  # type: ignore[assignment,method-assign]
    elif name == "retry_select_then_update":  # SQLite's shape: SELECT the ids, then UPDATE
        async def retry_ids(conn: Any, *, now: float, ids: Any, limit: Any) -> list[int]:
            if ids is not None:
                rows = await conn.execute_fetchall(
                    "SELECT id FROM email_jobs WHERE status IN ('failed', 'cancelled')"
                    " AND id = ANY(?::bigint[]) ORDER BY id", (list(ids),))
            else:
                rows = await conn.execute_fetchall(
                    "SELECT id FROM email_jobs WHERE status = 'failed' ORDER BY id LIMIT ?",
                    (limit,))
            chosen = [int(r[0]) for r in rows]
            for job_id in chosen:
                await conn.execute(
                    "UPDATE email_jobs SET status = 'pending', round = round + 1,"
                    " attempts = 0, next_attempt_at = ?, finished_at = NULL, updated_at = ?"
                    " WHERE id = ?", (now, now, job_id))
            return chosen

        email_pg.retry_ids = retry_ids  # type: ignore[assignment]
    elif name == "retry_no_skip_locked":
        email_pg.RETRY_OLDEST = replaced(email_pg.RETRY_OLDEST, " FOR UPDATE SKIP LOCKED", "")
    else:
        raise SystemExit(f"unknown mutant {name!r}; known: {', '.join(MUTANTS)}")


if os.environ.get("MUTANT") and __name__ != "__main__":
    _install(os.environ["MUTANT"])


# ---- the runner ------------------------------------------------------------------------------


def run(mutant: str | None) -> tuple[set[str], str]:
    """The names of the tests that failed (pytest run in a child process), and its summary."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    env.pop("MUTANT", None)
    if mutant:
        env["MUTANT"] = mutant
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "pg_email",
         "-o", "addopts=", "-rf", *FILES],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    failed = set(re.findall(r"^FAILED \S+::(\w+)", done.stdout, re.MULTILINE))
    summary = (done.stdout.strip().splitlines() or ["(no output)"])[-1]
    if done.returncode not in (0, 1):
        raise SystemExit(f"pytest exited {done.returncode}: {summary}\n{done.stderr[-2000:]}")
    return failed, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(MUTANTS), default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    failed, summary = run(None)
    results: dict[str, Any] = {"unmutated": {"failed": sorted(failed), "summary": summary}}
    ok = not failed
    for name in args.only or MUTANTS:
        failed, summary = run(name)
        must = set(MUTANTS[name])
        killed = must <= failed
        ok = ok and killed
        results[name] = {"killed": killed, "failed": sorted(failed), "summary": summary}
        if not args.json:
            print(f"{name:26} {'killed' if killed else 'SURVIVED'}  {summary}", flush=True)
    if args.json:
        print(json.dumps(results))
    elif results["unmutated"]["failed"]:
        print(f"unmutated run failed: {results['unmutated']['failed']}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
