"""CLI fixes of the console-safety work, as a user runs them: option combinations that make
no sense, a database folder that does not exist, `config --json`, a subcommand group without
its subcommand, `backup run rotation --dry-run`.

Every test runs on both backends (`backend`; the `cli` fixture sets VERTEX_DATABASE_URL on the
PostgreSQL run) except the missing folder of the SQLite file, whose PostgreSQL side (it does not
matter there) has a test of its own.
Commands that must be refused before they open the database are run, on PostgreSQL, against a
server that is not there (`cli.refused_early()`): one that connected first would wait for it and
exit 1, so exit 2 proves it was refused first, as the missing SQLite file proves it on SQLite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vertex_tui.engine.settings import VARIABLE_NAMES

# On SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
both = pytest.mark.usefixtures("backend")


@both
def test_attach_with_no_ui_is_bad_usage_and_starts_nothing(cli: Any) -> None:
    # Before: a second full engine started silently (this run then timed out).
    message = cli.error("--attach", "--no-ui", **cli.refused_early())
    assert "--attach" in message and "--no-ui" in message
    assert not cli.db_path.exists(), "no engine opened the database"


@both
def test_read_only_needs_attach(cli: Any) -> None:
    message = cli.error("--read-only", "status", **cli.refused_early())
    assert "--read-only needs --attach" in message
    assert not cli.db_path.exists()


# SQLite only: the folder of the SQLite file (PostgreSQL: the next test).
@pytest.mark.parametrize("args", [["status"], ["email", "stats"], ["--no-ui"],
                                  ["backup", "run", "database"], ["jobs"]])
def test_database_folder_that_does_not_exist_is_bad_configuration(
        cli: Any, args: list[str]) -> None:
    target = cli.path / "no-such-folder" / "vertex.db"
    message = cli.error(*args, code=2, VERTEX_DB_PATH=str(target))
    assert "VERTEX_DB_PATH" in message and "does not exist" in message
    assert str(target.parent) in message
    assert not target.parent.exists()


def test_postgresql_ignores_a_missing_sqlite_folder(cli: Any, pg_url: str) -> None:
    """With VERTEX_DATABASE_URL set, VERTEX_DB_PATH names nothing in use: its folder may be
    missing, and no command makes it (nor a file there)."""
    target = cli.path / "no-such-folder" / "vertex.db"
    for args in (["status"], ["email", "stats"], ["backup", "run", "database"], ["jobs"]):
        cli.ok(*args, VERTEX_DB_PATH=str(target))
    assert cli.query("SELECT kind, status FROM backups") == [("database", "ok")]
    assert not target.parent.exists()


@both
def test_config_json_is_one_typed_document_with_secrets_masked(cli: Any) -> None:
    secret = "s3cr3t-Q-7781"
    result = cli.run("config", "--json", SMTP_PASSWORD=secret, EMAIL_QUEUE_WORKERS="7",
                     BACKUP_WARN_AGE_HOURS="database=30")
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert list(doc) == list(VARIABLE_NAMES)
    assert doc["EMAIL_QUEUE_WORKERS"] == 7
    assert doc["SMTP_TLS"] is False and doc["SMTP_STARTTLS"] == "auto"
    assert doc["EMAIL_RETRY_DELAYS"] == [1, 2, 4, 8, 16]
    assert doc["SMTP_PASSWORD"] == "********"
    assert doc["SMTP_USERNAME"] is None  # not set
    assert doc["VERTEX_DB_PATH"] == str(cli.db_path)
    assert doc["VERTEX_DATABASE_URL"] == cli.database_url  # no password in the test's URL
    assert doc["BACKUP_WARN_AGE_HOURS"] == {"database": 30, "storage": 170, "full": 170}
    # The same values as the text form.
    text = dict(line.split("=", 1) for line in cli.ok("config",
                                                       EMAIL_QUEUE_WORKERS="7").splitlines())
    assert text["EMAIL_QUEUE_WORKERS"] == "7"
    assert text["BACKUP_WARN_AGE_HOURS"] == "database=26,storage=170,full=170"


@both
@pytest.mark.parametrize("value", ["0", "soon", "database=26,weekly=3"])
def test_bad_warn_age_exits_2_naming_the_variable(cli: Any, value: str) -> None:
    message = cli.error("status", BACKUP_WARN_AGE_HOURS=value, **cli.refused_early())
    assert "BACKUP_WARN_AGE_HOURS" in message and value in message
    assert not cli.db_path.exists()


@both
@pytest.mark.parametrize(("group", "subcommands"), [
    ("email", ["stats", "list", "failed", "show", "retry", "drain", "cleanup", "pause",
               "resume", "enqueue"]),
    ("backup", ["schedule", "list", "run", "verify", "restore", "drill"]),
])
def test_a_group_alone_lists_its_subcommands(cli: Any, group: str,
                                             subcommands: list[str]) -> None:
    result = cli.run(group, **cli.refused_early())
    assert result.returncode == 2  # usage, as argparse programs do
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"vertex-tui {group}: a subcommand is required, one of:"
    listed = [line.split()[0] for line in lines[1:] if line.startswith("  ")]
    # Every one, once each (other branches add some: email history, cancel).
    assert set(subcommands) <= set(listed) and len(listed) == len(set(listed))
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines[1:-1]), "each with its help"
    assert not cli.db_path.exists()


def test_rotation_dry_run_lists_what_rotation_deletes_and_deletes_nothing(cli: Any,
                                                                         backend: str) -> None:
    made = [cli.json("backup", "run", "database") for _ in range(3)]
    paths = [Path(m["path"]) for m in made]
    before = cli.query("SELECT id, status, path FROM backups ORDER BY id")

    doc = cli.json("backup", "run", "rotation", "--dry-run", BACKUP_KEEP_LAST="1")
    assert doc["dry_run"] is True
    doomed = [item["id"] for item in doc["would_delete"]["database"]]
    assert doomed == [made[0]["id"], made[1]["id"]]
    assert doc["would_delete"]["storage"] == doc["would_delete"]["full"] == []
    text = cli.ok("backup", "run", "rotation", "--dry-run", BACKUP_KEEP_LAST="1")
    assert f"#{made[0]['id']}" in text and str(paths[1]) in text
    assert "2 backup(s) would be deleted" in text and "nothing was deleted" in text
    assert cli.query("SELECT id, status, path FROM backups ORDER BY id") == before
    assert all(p.exists() for p in paths)
    assert cli.query("SELECT COUNT(*) FROM service_runs WHERE job = 'rotation'") == [(0,)]

    # The real run deletes exactly what the preview named.
    result = cli.json("backup", "run", "rotation", BACKUP_KEEP_LAST="1")
    assert result["deleted"]["database"] == 2
    gone = [r[0] for r in cli.query("SELECT id FROM backups WHERE status = 'deleted'")]
    assert gone == doomed
    assert [p.exists() for p in paths] == [False, False, True]


@both
def test_dry_run_of_a_backup_kind_is_bad_usage(cli: Any) -> None:
    message = cli.error("backup", "run", "database", "--dry-run", **cli.refused_early())
    assert "rotation only" in message
    assert not cli.db_path.exists()
