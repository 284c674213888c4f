"""`email list --search` speaks the search language; `email cancel` (by id or search) prints
the count, and cancelled jobs are never sent. Run as a user does: `python -m vertex_tui`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vertex_tui.engine.email.bulk import BULK_CAP

# Each test runs twice: on SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")


def relay(cli: Any, *options: str) -> dict[str, str]:
    sink = cli.sink(*options)
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), "SMTP_STARTTLS": "false"}


def test_list_search_finds_the_last_error_and_bad_terms_exit_2(cli: Any) -> None:
    smtp = relay(cli, "--reject", "bounce*@*")
    good = [cli.enqueue(to=f"user{i}@example.com", subject=f"Invoice {i}") for i in range(3)]
    bad = [cli.enqueue(to=f"bounce{i}@example.com", subject="Welcome") for i in range(4)]
    drained = cli.json("email", "drain", logs=True, **smtp)
    assert (drained["sent"], drained["failed"]) == (3, 4)

    # Today's `--search mailbox` found 0 of the jobs failed with "mailbox unavailable".
    found = cli.json("email", "list", "--search", "mailbox")
    assert [j["id"] for j in found] == bad[::-1]
    assert {j["id"] for j in cli.json("email", "list", "--search", "status:sent invoice")} == set(
        good)
    assert [j["id"] for j in cli.json("email", "list", "--search", 'to:bounce2 error:"5.1.1"',
                                      "--status", "failed")] == [bad[2]]
    assert cli.json("email", "list", "--search", "mailbox", "--status", "sent") == []
    text = cli.ok("email", "list", "--search", "newer:1h mailbox")
    assert len(text.splitlines()) == 1 + 4  # header and the four failed jobs

    for query, message in [("from:bob", "unknown search term from:"),
                           ("status:lost", "unknown status 'lost'"),
                           ("older:2x", "expected a duration"),
                           ('"open', "unterminated quote")]:
        assert message in cli.error("email", "list", "--search", query)


def test_cancel_by_search_and_id_prints_the_count_and_nothing_cancelled_is_sent(
    cli: Any,
) -> None:
    promo = [cli.enqueue(to=f"p{i}@example.com", subject="Spring promo") for i in range(4)]
    other = [cli.enqueue(to=f"r{i}@example.com", subject="Receipt") for i in range(2)]

    # Without a terminal and without --yes: refused, nothing cancelled.
    line = cli.error("email", "cancel", "--search", "promo")
    assert "4 pending or failed job(s) matching 'promo'" in line
    assert "--yes" in line
    assert cli.stats()["cancelled"] == 0

    assert cli.ok("email", "cancel", "--search", "subject:promo", "--yes") == (
        "cancelled 4 job(s)\n")
    assert cli.json("email", "cancel", "--id", str(other[0]), "--yes") == {
        "cancelled": 1, "ids": [other[0]]}
    assert "only pending or failed" in cli.error("email", "cancel", "--id", str(promo[0]),
                                                 "--yes")
    assert "unknown search term" in cli.error("email", "cancel", "--search", "sent:1", "--yes")
    assert "one of the arguments --id --search is required" in cli.error("email", "cancel")
    # Nothing matches: nothing to confirm, count 0.
    assert cli.ok("email", "cancel", "--search", "nomatch") == "cancelled 0 job(s)\n"

    stats = cli.stats()
    assert (stats["pending"], stats["cancelled"]) == (1, 5)
    assert "cancelled 5" in cli.ok("email", "stats")
    shown = {j["id"]: j["status"] for j in cli.json("email", "list", "--search",
                                                    "status:cancelled")}
    assert shown == dict.fromkeys([*promo, other[0]], "cancelled")

    smtp = relay(cli)
    drained = cli.json("email", "drain", **smtp)
    assert drained["sent"] == 1
    sink = cli.sinks[-1]
    assert len(sink.received()) == 1
    assert cli.query("SELECT status FROM email_jobs WHERE id = ?", (promo[0],)) == [
        ("cancelled",)]
    audit = cli.query("SELECT count FROM audit_log WHERE action = 'email.cancel' ORDER BY id")
    assert audit == [(4,), (1,)]  # nothing matched: nothing asked, nothing done


@pytest.mark.slow
def test_cancel_past_the_bulk_cap_says_how_many_match_and_how_many_are_left(
    cli: Any, tmp_path: Path,
) -> None:
    """A bulk cancel takes at most BULK_CAP jobs, the newest. It used to print "cancelled
    100,000 job(s)" for 100,025 matching and leave 25 pending without a word."""
    over = 25
    lines = [json.dumps({"to": f"p{i}@example.com", "subject": "Spring promo", "body": "b"})
             for i in range(BULK_CAP + over)]
    lines += [json.dumps({"to": f"r{i}@example.com", "subject": "Receipt", "body": "b"})
              for i in range(3)]
    batch = tmp_path / "promo.jsonl"
    batch.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cli.ok("email", "enqueue", "--jsonl", str(batch))

    line = cli.error("email", "cancel", "--search", "promo")
    assert (f"the newest {BULK_CAP:,} of {BULK_CAP + over:,} pending or failed jobs matching"
            f" 'promo' (at most {BULK_CAP:,} at a time)") in line
    first = cli.json("email", "cancel", "--search", "promo", "--yes")
    assert (first["cancelled"], len(first["ids"]), first["remaining"]) == (
        BULK_CAP, BULK_CAP, over)
    assert cli.ok("email", "cancel", "--search", "promo", "--yes") == f"cancelled {over} job(s)\n"
    stats = cli.stats()
    assert (stats["cancelled"], stats["pending"]) == (BULK_CAP + over, 3)
