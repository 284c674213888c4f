"""The command line as scripts and operators use it: real processes, exit codes, `--json`.

Exit status (SPEC): 0 done, 1 the operation failed, 2 bad usage, configuration or input --
with one line on stderr naming what is wrong.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

pytestmark = pytest.mark.slow

STATS_KEYS = {"pending", "sending", "sent", "failed"}
JOB_KEYS = {"id", "to", "subject", "status", "attempts", "last_error", "message_id"}
SERVICES = {"email", "backup", "lifecycle", "video"}
# The configuration table of SPEC, every variable.
SPEC_VARIABLES = [
    "VERTEX_DB_PATH",
    "VERTEX_STORAGE_DIR",
    "VERTEX_BACKUP_DIR",
    "VERTEX_TIMEZONE",
    "VIDEO_SCHEDULER_ENABLED",
    "VIDEO_SCHEDULER_CHECK_INTERVAL",
    "VIDEO_SCHEDULER_ROTATION_INTERVAL",
    "VIDEO_SCHEDULER_ARCHIVE_AFTER_HOURS",
    "VIDEO_SCHEDULER_NOTIFICATIONS_ENABLED",
    "LIFECYCLE_SCHEDULER_ENABLED",
    "LIFECYCLE_CHECK_INTERVAL_SECONDS",
    "LIFECYCLE_NOTIFICATIONS_ENABLED",
    "BACKUP_DATABASE_ENABLED",
    "BACKUP_STORAGE_ENABLED",
    "BACKUP_FULL_ENABLED",
    "BACKUP_ROTATION_ENABLED",
    "BACKUP_DATABASE_SCHEDULE",
    "BACKUP_STORAGE_SCHEDULE",
    "BACKUP_FULL_SCHEDULE",
    "BACKUP_ROTATION_SCHEDULE",
    "BACKUP_KEEP_LAST",
    "BACKUP_KEEP_DAILY",
    "BACKUP_KEEP_WEEKLY",
    "BACKUP_KEEP_MONTHLY",
    "EMAIL_QUEUE_WORKERS",
    "EMAIL_RETRY_MAX_ATTEMPTS",
    "EMAIL_RETRY_DELAYS",
    "EMAIL_LEASE_SECONDS",
    "EMAIL_POLL_INTERVAL",
    "BACKUP_MISFIRE_GRACE_SECONDS",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_USERNAME",
    "SMTP_PASSWORD",
    "SMTP_STARTTLS",
    "SMTP_TLS",
    "SMTP_TIMEOUT",
    "EMAIL_FROM",
    "NOTIFY_ADMIN_EMAIL",
    "SMTP_CA_FILE",
    "SMTP_HELO_NAME",
]


def good_line(i: int) -> str:
    return json.dumps({"to": f"user{i}@example.com", "subject": f"hello {i}", "body": "hi"})


def fail_everything(cli: Any) -> dict[str, str]:
    """Settings under which every delivery attempt fails at once, for good (a job's
    attempt limit is fixed when it is enqueued, so enqueue under these too): a relay that
    answers 451 to every message, with one attempt allowed. (A relay that cannot be reached
    fails nothing: jobs wait for it.)"""
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(cli.sink("--fail-451", "1").port),
        "SMTP_TIMEOUT": "5",
        "EMAIL_RETRY_MAX_ATTEMPTS": "1",
    }


# ---- reading ------------------------------------------------------------------------------


def test_stats_json_on_a_new_database(cli: Any) -> None:
    stats = cli.stats()
    assert STATS_KEYS <= set(stats)
    assert {k: stats[k] for k in STATS_KEYS} == dict.fromkeys(STATS_KEYS, 0)
    assert cli.db_path.is_file(), "the database is created where VERTEX_DB_PATH says"


def test_enqueue_prints_the_id_and_the_job_is_listed(backend: str, cli: Any) -> None:
    first = cli.enqueue("Ann <ann@example.com>", "Welcome", "Hello Ann")
    second = cli.enqueue("bob@example.com", "Second", "Hello Bob")
    assert second == first + 1

    jobs = cli.json("email", "list")
    assert isinstance(jobs, list)
    assert [j["id"] for j in jobs] == [second, first], "newest first"
    for job in jobs:
        assert JOB_KEYS <= set(job)
        assert job["status"] == "pending"
        assert job["attempts"] == 0
        assert job["last_error"] is None
        assert job["message_id"].startswith("<") and job["message_id"].endswith(">")
    assert jobs[1]["to"] == "Ann <ann@example.com>"
    assert jobs[1]["subject"] == "Welcome"
    assert len({j["message_id"] for j in jobs}) == 2
    assert cli.assert_times_have_offsets(jobs) >= 2

    stats = cli.stats()
    assert (stats["pending"], stats["sent"]) == (2, 0)
    assert cli.assert_times_have_offsets(stats) >= 1

    text = cli.ok("email", "list")
    assert "Welcome" in text and "pending" in text


def test_list_filters_by_status_and_limits(backend: str, cli: Any) -> None:
    for i in range(5):
        cli.enqueue(subject=f"n{i}")
    assert len(cli.json("email", "list", "--limit", "3")) == 3
    assert len(cli.json("email", "list", "--status", "pending")) == 5
    assert cli.json("email", "list", "--status", "sent") == []
    assert cli.json("email", "failed") == []


def test_status_json_reports_every_service(backend: str, cli: Any) -> None:
    cli.enqueue()  # gives the email service a next run
    doc = cli.json("status")
    services = doc["services"]
    assert set(services) >= SERVICES
    for name in SERVICES:
        assert {"state", "last_run", "next_run"} <= set(services[name]), name
        assert isinstance(services[name]["state"], str) and services[name]["state"]
    assert services["email"]["next_run"] is not None
    assert cli.assert_times_have_offsets(doc) >= 2
    assert "email" in cli.ok("status")


# ---- enqueue ------------------------------------------------------------------------------


def test_enqueue_jsonl_prints_the_count(backend: str, cli: Any) -> None:
    path = cli.write_jsonl("mail.jsonl", [good_line(i) for i in range(7)] + [""])
    assert cli.ok("email", "enqueue", "--jsonl", str(path)).strip() == "7"
    assert cli.stats()["pending"] == 7
    subjects = {j["subject"] for j in cli.json("email", "list", "--limit", "100")}
    assert subjects == {f"hello {i}" for i in range(7)}


BAD_LINES = {
    "bad JSON": '{"to": "x@example.com", "subject": ',
    "not an object": "[1, 2, 3]",
    "bad address": json.dumps({"to": "not-an-address", "subject": "s", "body": "b"}),
    "CR/LF in subject": json.dumps(
        {"to": "x@example.com", "subject": "hi\r\nBcc: evil@example.com", "body": "b"}
    ),
    "LF in a header": json.dumps(
        {"to": "x@example.com", "subject": "s", "body": "b", "headers": {"X-Tag": "a\nBcc: e@x.io"}}
    ),
    "U+2028 in subject": json.dumps({"to": "x@example.com", "subject": "a\u2028b", "body": "b"}),
    "unpaired surrogate": '{"to": "x@example.com", "subject": "\\ud800", "body": "b"}',
    "unknown field": json.dumps({"to": "x@example.com", "subject": "s", "body": "b", "prio": 1}),
    "missing body": json.dumps({"to": "x@example.com", "subject": "s"}),
}


@pytest.mark.parametrize("bad", list(BAD_LINES.values()), ids=list(BAD_LINES))
def test_enqueue_jsonl_with_one_bad_line_stores_none(backend: str, cli: Any, bad: str) -> None:
    cli.enqueue()  # one message already queued must stay the only one
    lines = [good_line(1), good_line(2), bad, good_line(4), good_line(5)]
    path = cli.write_jsonl("mail.jsonl", lines)
    message = cli.error("email", "enqueue", "--jsonl", str(path))
    assert "line 3" in message
    stats = cli.stats()
    assert (stats["pending"], stats["sending"], stats["sent"], stats["failed"]) == (1, 0, 0, 0)


@pytest.mark.parametrize(
    "args",
    [
        ["--to", "not an address", "--subject", "s", "--body", "b"],
        ["--to", "a@example.com", "--subject", "s\r\nBcc: evil@example.com", "--body", "b"],
        ["--to", "a@example.com\nBcc: evil@example.com", "--subject", "s", "--body", "b"],
        ["--to", "a@example.com", "--subject", "s", "--body", "b", "--header", "X: a\nBcc: e@x.io"],
        ["--to", "a@example.com", "--subject", "s"],
        ["--to", "a@example.com", "--subject", "s", "--body", "b", "--jsonl", "mail.jsonl"],
        ["--jsonl", "does-not-exist.jsonl"],
    ],
    ids=[
        "bad address",
        "CRLF in subject",
        "LF in to",
        "LF in header",
        "missing body",
        "both forms",
        "missing file",
    ],
)
def test_enqueue_refuses_bad_input(cli: Any, args: list[str]) -> None:
    cli.write_jsonl("mail.jsonl", [good_line(1)])
    cli.error("email", "enqueue", *args)
    assert cli.stats()["pending"] == 0


def test_enqueue_refuses_a_subject_that_is_not_utf8(backend: str, cli: Any) -> None:
    # argv bytes that are not UTF-8 reach Python as unpaired surrogates.
    args = ["email", "enqueue", "--to", "a@example.com", "--subject", b"caf\xe9", "--body", "b"]
    cli.error(*args)
    assert cli.stats()["pending"] == 0


def test_enqueue_jsonl_of_an_empty_file_is_bad_input(backend: str, cli: Any) -> None:
    path = cli.write_jsonl("empty.jsonl", [])
    cli.error("email", "enqueue", "--jsonl", str(path))


# ---- operator tools -----------------------------------------------------------------------


def test_drain_delivers_everything_to_a_sink_process(backend: str, cli: Any) -> None:
    sink = cli.sink()
    lines = [good_line(i) for i in range(25)]
    assert cli.ok("email", "enqueue", "--jsonl", str(cli.write_jsonl("m.jsonl", lines))) == "25\n"
    smtp = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), "SMTP_STARTTLS": "false"}

    result = cli.json("email", "drain", **smtp)
    assert result["sent"] == 25
    assert result["failed"] == 0

    received = sink.received()
    jobs = cli.json("email", "list", "--limit", "100")
    assert len(received) == 25
    assert sorted(r["message_id"] for r in received) == sorted(j["message_id"] for j in jobs)
    assert {j["status"] for j in jobs} == {"sent"}
    stats = cli.stats()
    assert (stats["pending"], stats["sending"], stats["sent"]) == (0, 0, 25)
    # A finished command leaves no lease behind in the shared database.
    assert cli.query("SELECT count(*) FROM leases") == [(0,)]

    # Nothing left: drain again sends nothing and the sink gets nothing more.
    assert "sent 0" in cli.ok("email", "drain", **smtp)
    assert len(sink.received()) == 25


def test_failed_jobs_retry_and_cleanup(backend: str, cli: Any) -> None:
    failing = fail_everything(cli)
    ids = [cli.enqueue(subject=f"n{i}", **failing) for i in range(5)]
    drained = cli.json("email", "drain", logs=True, **failing)
    assert (drained["sent"], drained["failed"]) == (0, 5)

    failed = cli.json("email", "failed")
    assert sorted(j["id"] for j in failed) == ids
    for job in failed:
        assert JOB_KEYS <= set(job)
        assert job["status"] == "failed"
        assert job["attempts"] == 1
        assert job["last_error"], "the last error is stored on the job"
    assert cli.assert_times_have_offsets(failed) >= 5

    # One job by id.
    assert cli.json("email", "retry", "--id", str(ids[4]))["ids"] == [ids[4]]
    job = next(j for j in cli.json("email", "list") if j["id"] == ids[4])
    assert (job["status"], job["attempts"]) == ("pending", 0)
    # An unknown id, or a job that is not failed, is bad input.
    assert "999" in cli.error("email", "retry", "--id", "999")
    cli.error("email", "retry", "--id", str(ids[4]))
    # At most N, oldest first.
    assert cli.json("email", "retry", "--max", "2")["ids"] == ids[:2]
    stats = cli.stats()
    assert (stats["pending"], stats["failed"]) == (3, 2)

    # Cleanup removes finished jobs older than the cutoff only.
    assert cli.json("email", "cleanup", "--older-than", "1")["deleted"] == 0
    assert "deleted 2" in cli.ok("email", "cleanup", "--older-than", "0")
    stats = cli.stats()
    assert (stats["pending"], stats["failed"]) == (3, 0)
    assert sorted(j["id"] for j in cli.json("email", "list")) == [ids[0], ids[1], ids[4]]

    # Retry with nothing failed is not an error.
    assert cli.json("email", "retry")["retried"] == 0


def test_pause_and_resume(backend: str, cli: Any) -> None:
    assert cli.stats()["paused"] is False
    assert "paused" in cli.ok("email", "pause")
    assert cli.stats()["paused"] is True
    assert cli.json("status")["services"]["email"]["state"] == "paused"
    failing = fail_everything(cli)
    cli.enqueue(**failing)
    assert "paused" in cli.error("email", "drain", **failing)
    assert cli.stats()["pending"] == 1, "nothing is attempted while paused"

    assert "resumed" in cli.ok("email", "resume")
    assert cli.stats()["paused"] is False
    assert cli.json("status")["services"]["email"]["state"] != "paused"
    assert cli.json("email", "drain", logs=True, **failing)["failed"] == 1


# ---- configuration ------------------------------------------------------------------------


def test_config_masks_the_password_and_lists_every_variable(cli: Any) -> None:
    secret = "s3cr3t-Xyzzy-9472"
    settings = {"SMTP_PASSWORD": secret, "SMTP_USERNAME": "mailer", "EMAIL_QUEUE_WORKERS": "7"}
    result = cli.run("config", **settings)
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    shown = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert set(SPEC_VARIABLES) <= set(shown)
    assert shown["SMTP_PASSWORD"] not in ("", secret)
    assert set(shown["SMTP_PASSWORD"]) == {"*"}
    assert shown["EMAIL_QUEUE_WORKERS"] == "7"
    assert shown["SMTP_USERNAME"] == "mailer"
    assert shown["VERTEX_DB_PATH"] == str(cli.db_path)

    # Nor in any other output, including errors.
    for args in (["status", "--json"], ["email", "stats"]):
        result = cli.run(*args, **settings)
        assert result.returncode == 0
        assert secret not in result.stdout + result.stderr
    result = cli.run("email", "stats", **settings, SMTP_PORT="x")
    assert result.returncode == 2
    assert secret not in result.stdout + result.stderr


def test_config_defaults_follow_spec(cli: Any) -> None:
    shown = dict(line.split("=", 1) for line in cli.ok("config").splitlines())
    assert shown["EMAIL_QUEUE_WORKERS"] == "3"
    assert shown["EMAIL_RETRY_DELAYS"] == "1,2,4,8,16"
    assert shown["BACKUP_DATABASE_SCHEDULE"] == "0 2 * * *"
    assert shown["SMTP_PORT"] == "25"
    assert shown["VERTEX_TIMEZONE"] == "UTC"
    assert "*" not in shown["SMTP_PASSWORD"], "an unset password is not shown as set"


BAD_SETTINGS = [
    ("EMAIL_QUEUE_WORKERS", "0"),
    ("EMAIL_QUEUE_WORKERS", "abc"),
    ("SMTP_TLS", "maybe"),
    ("BACKUP_FULL_SCHEDULE", "0 99 * * *"),
    ("VERTEX_TIMEZONE", "Mars/Olympus"),
    ("EMAIL_RETRY_DELAYS", "1,,2"),
    ("SMTP_PORT", "70000"),
    ("EMAIL_FROM", "nobody"),
    ("EMAIL_POLL_INTERVAL", "-1"),
    ("SMTP_STARTTLS", "sometimes"),
    ("NOTIFY_ADMIN_EMAIL", "admin"),
    ("SMTP_CA_FILE", "/nonexistent/relay-ca.pem"),
    ("SMTP_HELO_NAME", "not a host"),
]


@pytest.mark.parametrize(
    ("variable", "value"), BAD_SETTINGS, ids=[f"{v}={x}" for v, x in BAD_SETTINGS]
)
def test_bad_setting_exits_2_naming_the_variable_and_value(
    cli: Any, variable: str, value: str
) -> None:
    result = cli.run("email", "stats", **{variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    cli.assert_one_line(result.stderr)
    assert variable in result.stderr
    assert value in result.stderr
    assert not cli.db_path.exists(), "a bad configuration is refused before the database"


def test_bad_setting_stops_the_headless_engine_before_it_starts(cli: Any) -> None:
    result = cli.run("--no-ui", timeout=60, EMAIL_QUEUE_WORKERS="0")
    assert result.returncode == 2
    cli.assert_one_line(result.stderr)
    assert "EMAIL_QUEUE_WORKERS" in result.stderr
    assert not cli.db_path.exists()


def test_database_path_that_is_a_text_file_is_refused_untouched(cli: Any) -> None:
    notes = cli.path / "notes.txt"
    content = b"not a database\nkeep me\n"
    notes.write_bytes(content)
    enqueue = ["email", "enqueue", "--to", "a@example.com", "--subject", "s", "--body", "b"]
    for args in (["email", "stats"], enqueue, ["email", "drain"], ["--no-ui"]):
        cli.error(*args, code=(1, 2), VERTEX_DB_PATH=str(notes))
    message = cli.error("status", code=(1, 2), VERTEX_DB_PATH=str(notes))
    assert "notes.txt" in message
    assert notes.read_bytes() == content
    assert sorted(p.name for p in cli.path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("where", ["folder", "missing folder"])
def test_database_path_that_cannot_be_used(cli: Any, where: str) -> None:
    target = cli.path / "data"
    if where == "folder":
        target.mkdir()
    else:
        target = target / "vertex.db"
    cli.error("email", "stats", code=(1, 2), VERTEX_DB_PATH=str(target))
    assert sorted(p.name for p in cli.path.iterdir()) == (["data"] if where == "folder" else [])


# ---- usage --------------------------------------------------------------------------------


BAD_ARGS = [
    ["email", "list", "--limit", "x"],
    ["email", "list", "--limit", "0"],
    ["email", "list", "--status", "lost"],
    ["email", "retry", "--id", "abc"],
    ["email", "retry", "--max", "-3"],
    ["email", "cleanup", "--older-than", "abc"],
    ["email", "cleanup", "--older-than", "-1"],
    ["email", "stats", "--bogus"],
    ["email", "bogus"],
    ["bogus"],
    ["--log-format", "xml"],
]


@pytest.mark.parametrize("args", BAD_ARGS, ids=[" ".join(a) for a in BAD_ARGS])
def test_bad_arguments_exit_2_with_one_line(cli: Any, args: list[str]) -> None:
    result = cli.run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    cli.assert_one_line(result.stderr)
    assert not cli.db_path.exists(), "bad usage is refused before the database is touched"


def test_drain_with_the_relay_down_fails_no_job_and_says_why(backend: str, cli: Any) -> None:
    down = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(cli.closed_port()),
            "EMAIL_RETRY_MAX_ATTEMPTS": "1"}
    ids = [cli.enqueue(subject=f"r{i}", **down) for i in range(3)]
    result = cli.run("email", "drain", **down)
    assert result.returncode == 1, result.stderr
    *logged, last = result.stderr.strip().splitlines()
    assert last.startswith("vertex-tui: SMTP relay unreachable since ")
    assert "connection failed" in last and "stay pending" in last
    # The outage is logged once, not once per job.
    assert len(logged) == 1 and "delivery paused" in logged[0]
    jobs = {j["id"]: j for j in cli.json("email", "list")}
    assert [jobs[i]["status"] for i in ids] == ["pending"] * 3
    # Charged at most one attempt each for the outage (only those in flight when it began).
    assert all(jobs[i]["attempts"] <= 1 for i in ids)
    assert sum(jobs[i]["attempts"] for i in ids) >= 1
    status = cli.json("status")["services"]["email"]["smtp"]
    assert status == {"state": "unknown", "since": None, "error": None}  # no engine alive
