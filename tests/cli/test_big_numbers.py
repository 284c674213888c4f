"""Ids, limits and counts past what the store holds (2**63 - 1 on SQLite and PostgreSQL alike),
and 0 or negative ones, are a one-line usage error with exit 2 that names the option or the
search term and changes nothing; they used to reach the driver and end in an OverflowError
traceback (exit 1). An id in range that names no row is still "not found"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

# Each test runs twice: on SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")

if TYPE_CHECKING:
    from conftest import CliRunner

MAX = str(2**63 - 1)
BIG = str(2**63)
TOO_BIG = f"expected a number <= {MAX}, got {BIG}"
NOT_POSITIVE = "expected a number >= 1"
NOT_AN_ID = f"expected a job number from 1 to {MAX}"

# (command, what its one stderr line says) for a number past the bound.
BIG_NUMBERS: list[tuple[tuple[str, ...], str]] = [
    (("email", "show", BIG), f"argument id: {TOO_BIG}"),
    (("email", "cancel", "--id", BIG, "--yes"), f"argument --id: {TOO_BIG}"),
    (("email", "cancel", "--search", f"id:{BIG}", "--yes"), f"id:{BIG}: {NOT_AN_ID}"),
    (("email", "list", "--limit", BIG), f"argument --limit: {TOO_BIG}"),
    (("email", "list", "--before-id", BIG), f"argument --before-id: {TOO_BIG}"),
    (("email", "list", "--search", f"id:{BIG}"), f"id:{BIG}: {NOT_AN_ID}"),
    (("email", "list", "--search", f"id:#{BIG} to:a"), f"id:#{BIG}: {NOT_AN_ID}"),
    (("email", "failed", "--limit", BIG), f"argument --limit: {TOO_BIG}"),
    (("email", "retry", "--id", BIG), f"argument --id: {TOO_BIG}"),
    (("email", "retry", "--max", BIG), f"argument --max: {TOO_BIG}"),
    (("log", "--limit", BIG), f"argument --limit: {TOO_BIG}"),
    (("backup", "list", "--limit", BIG), f"argument --limit: {TOO_BIG}"),
    (("jobs", "history", "email.reap", "--limit", BIG), f"argument --limit: {TOO_BIG}"),
    (("video", "add", "--portrait", BIG, "--title", "t"), f"argument --portrait: {TOO_BIG}"),
    (("portrait", "add", "--owner", "o@example.com", "--title", "t", "--project", BIG),
     f"argument --project: {TOO_BIG}"),
    (("email", "show", "9" * 5000), f"argument id: expected a number <= {MAX}, got 999"),
]

# 0 and negative numbers where they make no sense: the same one line, exit 2.
SMALL_NUMBERS: list[tuple[tuple[str, ...], str]] = [
    (("log", "--limit", "0"), f"argument --limit: {NOT_POSITIVE}, got 0"),
    (("log", "--limit", "-1"), f"argument --limit: {NOT_POSITIVE}, got -1"),
    (("email", "list", "--search", "id:0"), f"id:0: {NOT_AN_ID}"),
    (("email", "cancel", "--search", "id:0", "--yes"), f"id:0: {NOT_AN_ID}"),
    (("email", "list", "--limit", "0"), f"argument --limit: {NOT_POSITIVE}, got 0"),
    (("email", "show", "-5"), f"argument id: {NOT_POSITIVE}, got -5"),
    (("email", "cancel", "--id", "0", "--yes"), f"argument --id: {NOT_POSITIVE}, got 0"),
    (("video", "add", "--portrait", "0", "--title", "t"), f"argument --portrait: {NOT_POSITIVE}"),
    (("backup", "list", "--limit", "-3"), f"argument --limit: {NOT_POSITIVE}, got -3"),
    (("email", "show", "\u00b2"), "argument id: expected a whole number, got '\u00b2'"),
    (("email", "list", "--search", "id:\u00b2"), "id:\u00b2: expected a job number, e.g. id:42"),
]


def state(cli: CliRunner) -> list[tuple[Any, ...]]:
    """What a refused command must leave as it was: the mail, the entities, the audit trail,
    the backups and the requests to running engines."""
    return cli.query(
        "SELECT (SELECT count(*) FROM email_jobs WHERE status = 'pending'),"
        " (SELECT count(*) FROM email_jobs), (SELECT count(*) FROM portraits),"
        " (SELECT count(*) FROM projects), (SELECT count(*) FROM videos),"
        " (SELECT count(*) FROM audit_log), (SELECT count(*) FROM backups),"
        " (SELECT count(*) FROM requests)")


def setup(cli: CliRunner) -> list[tuple[Any, ...]]:
    """A pending mail and a portrait (so a cancel or a video add would have something to
    change), and the state they leave."""
    cli.enqueue(to="keep@example.com")
    cli.ok("portrait", "add", "--owner", "o@example.com", "--title", "p")
    before = state(cli)
    assert before[0][:3] == (1, 1, 1)
    return before


@pytest.mark.parametrize("table", ["big", "small"])
def test_out_of_range_numbers_are_one_line_exit_2_and_change_nothing(
    cli: CliRunner, table: str
) -> None:
    before = setup(cli)
    for args, message in BIG_NUMBERS if table == "big" else SMALL_NUMBERS:
        line = cli.error(*args)  # exit 2, one stderr line, no "Traceback"
        assert message in line, f"{args[:3]}: {line[:200]}"
        assert "OverflowError" not in line and len(line) < 200, line[:200]
    assert state(cli) == before


def test_ids_in_range_that_name_no_row_are_still_not_found(cli: CliRunner) -> None:
    before = setup(cli)
    assert cli.error("email", "show", MAX) == f"vertex-tui: no email job with id {MAX}"
    assert cli.error("email", "cancel", "--id", MAX, "--yes") == (
        f"vertex-tui: no email job with id {MAX}")
    assert cli.error("video", "add", "--portrait", MAX, "--title", "t") == (
        f"vertex-tui: no portrait with id {MAX}")
    assert cli.json("email", "list", "--search", f"id:{MAX}") == []
    assert cli.json("email", "list", "--before-id", MAX, "--limit", MAX) != []  # the one job
    log = cli.run("log", "--limit", MAX)
    assert log.returncode == 0 and "Traceback" not in log.stderr, log.stderr
    assert cli.ok("backup", "list", "--limit", MAX).strip() == "no backups"
    assert state(cli) == before
