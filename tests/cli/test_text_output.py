"""What the text output of a command says is words, not Python reprs: `email show` and the
one-line results of `jobs run`, `lifecycle check`, `backup run` (their `--json` unchanged)."""

from __future__ import annotations

from typing import Any


def assert_no_reprs(text: str) -> None:
    for repr_mark in ("None", "{", "}", "[", "]", "True", "False"):
        assert repr_mark not in text, f"{repr_mark!r} in:\n{text}"


def fields(text: str) -> dict[str, str]:
    """`name: value` lines of `email show` (value lines of their own under the first)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("    round ") or line.strip() == "history:":
            continue
        if line[:18].strip():
            name, _, value = line.partition(": ")
            out[name.strip()] = value
        else:
            last = next(reversed(out))
            out[last] += "\n" + line.strip()
    return out


def test_email_show_prints_absent_values_lists_and_headers_in_words(cli: Any) -> None:
    sink = cli.sink("--reject", "bounce@*")
    relay = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(sink.port), "SMTP_STARTTLS": "false"}
    bounced = cli.enqueue(to="bounce@example.com", subject="to bounce")
    sent = int(cli.ok("email", "enqueue", "--to", "ok@example.com", "--subject", "fine",
                      "--body", "line one\nline two", "--header", "X-Tag: t",
                      "--header", "X-Other: u").strip())
    assert cli.json("email", "drain", logs=True, **relay)["sent"] == 1

    text = cli.ok("email", "show", str(bounced))
    assert_no_reprs(text)
    shown = fields(text)
    assert shown["status"] == "failed" and "550" in shown["last_error"]
    assert shown["recipients"] == "bounce@example.com"
    assert shown["html"] == "-" and shown["next_attempt_at"] == "-"
    assert "headers" not in shown  # none were given
    assert "permanent" in text

    text = cli.ok("email", "show", str(sent))
    assert_no_reprs(text)
    shown = fields(text)
    assert shown["status"] == "sent"
    assert shown["last_error"] == "-" and shown["last_code"] == "-"
    assert shown["headers"] == "X-Tag: t\nX-Other: u"
    assert shown["body"] == "line one\nline two"

    doc = cli.json("email", "show", str(bounced))
    assert doc["recipients"] == ["bounce@example.com"]
    assert doc["headers"] == {} and doc["html"] is None and doc["next_attempt_at"] is None


def test_a_lifecycle_run_names_what_changed(cli: Any) -> None:
    cli.ok("project", "add", "--name", "P", "--owner", "o@example.com",
           "--subscription-end", "2000-01-01T00:00:00+00:00")
    text = cli.ok("jobs", "run", "lifecycle.check").strip()
    assert_no_reprs(text)
    assert "\n" not in text
    assert text.startswith("job=lifecycle.check status=ok ")
    assert "changes.project.archived=1" in text.split()
    assert "changes.project.active" not in text  # a zero of a group is left out
    assert "emails=" in text and "seconds=" in text

    text = cli.ok("lifecycle", "check").strip()  # nothing left to change
    assert_no_reprs(text)
    assert text.startswith("status=ok ") and "skipped=0" in text.split()
    assert "sent" not in text  # no notice sent: the empty group is left out

    doc = cli.json("lifecycle", "check")
    assert doc["status"] == "ok" and isinstance(doc["changes"], dict) and doc["sent"] == {}


def test_backup_runs_print_counts_not_dicts(cli: Any) -> None:
    assert cli.ok("backup", "run", "rotation").strip() == "job=rotation status=ok deleted=0"
    for _ in range(2):
        assert "status=ok" in cli.ok("backup", "run", "database")
    text = cli.ok("jobs", "run", "backup.rotation", BACKUP_KEEP_LAST="1").strip()
    assert_no_reprs(text)
    assert text == "job=backup.rotation status=ok deleted.database=1"

    text = cli.ok("backup", "run", "drill").strip()
    assert_no_reprs(text)
    assert text.startswith("job=drill status=ok path=")
    assert "rows.backups=" in text and "schema_version=" in text

    failed = cli.run("backup", "run", "storage")  # no storage folder
    assert failed.returncode == 1
    assert_no_reprs(failed.stdout)
    assert "status=failed" in failed.stdout and "error=storage folder" in failed.stdout

    doc = cli.json("backup", "run", "rotation")
    assert doc["status"] == "ok" and doc["deleted"] == {"database": 0, "storage": 0, "full": 0}
