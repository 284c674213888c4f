"""The entity and scheduler commands as a user runs them: project/portrait/video add (each
prints the new id), one-line errors with exit 2, `lifecycle`/`video` `summary --json` and
`check`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

# Each test runs twice: on SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")

if TYPE_CHECKING:
    from conftest import CliRunner


def iso(days: float = 0.0, hours: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(days=days, hours=hours)).isoformat(timespec="seconds")


def new_id(cli: CliRunner, *args: str, **settings: str) -> int:
    out = cli.ok(*args, **settings)
    assert out.strip().isdigit(), f"expected the new id alone, got {out!r}"
    return int(out)


def counts(cli: CliRunner) -> tuple[int, int, int]:
    rows = cli.query("SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM portraits),"
                     " (SELECT count(*) FROM videos)")
    return rows[0]


# ---- add -------------------------------------------------------------------------------------


def test_add_commands_print_the_new_ids(cli: CliRunner) -> None:
    end = iso(days=30)
    p1 = new_id(cli, "project", "add", "--name", "Gallery", "--owner", "ann@example.com",
                "--subscription-end", end)
    p2 = new_id(cli, "project", "add", "--name", "Open", "--owner", "Bob <bob@example.com>")
    assert p2 == p1 + 1
    q1 = new_id(cli, "portrait", "add", "--owner", "ann@example.com", "--title", "Mona",
                "--project", str(p1))
    q2 = new_id(cli, "portrait", "add", "--owner", "c@example.com", "--title", "Own end",
                "--subscription-end", "2031-06-01T12:00:00+02:00")
    v1 = new_id(cli, "video", "add", "--portrait", str(q1), "--title", "Intro")
    v2 = new_id(cli, "video", "add", "--portrait", str(q1), "--title", "Loop",
                "--start", iso(hours=1), "--end", iso(days=2), "--rotation", "cyclic")
    assert v2 == v1 + 1
    projects = cli.query("SELECT id, name, owner_email, subscription_end FROM projects"
                         " ORDER BY id")
    assert projects[0][:3] == (p1, "Gallery", "ann@example.com")
    assert projects[0][3] == pytest.approx(datetime.fromisoformat(end).timestamp())
    assert projects[1] == (p2, "Open", "bob@example.com", None)
    portraits = dict(cli.query("SELECT id, subscription_end FROM portraits"))
    # A portrait without its own end takes its project's.
    assert portraits[q1] == projects[0][3]
    assert portraits[q2] == datetime(2031, 6, 1, 10, tzinfo=UTC).timestamp()
    videos = cli.query("SELECT id, portrait_id, rotation, position, status FROM videos"
                       " ORDER BY id")
    assert videos == [(v1, q1, "none", 0, "scheduled"), (v2, q1, "cyclic", 1, "scheduled")]


def test_a_date_alone_is_midnight_utc(cli: CliRunner) -> None:
    pid = new_id(cli, "project", "add", "--name", "n", "--owner", "o@example.com",
                 "--subscription-end", "2030-01-01")
    end = cli.query("SELECT subscription_end FROM projects WHERE id = ?", (pid,))[0][0]
    assert end == datetime(2030, 1, 1, tzinfo=UTC).timestamp()


BAD = [
    (("project", "add", "--name", "n", "--owner", "o@example.com",
      "--subscription-end", "2030-13-01"), "2030-13-01"),
    (("project", "add", "--name", "n", "--owner", "o@example.com",
      "--subscription-end", "next week"), "next week"),
    (("project", "add", "--name", "n", "--owner", "o@example.com",
      "--subscription-end", "9999-12-31T23:59:59-01:00"), "out of range"),
    (("project", "add", "--name", "n", "--owner", "not-an-address"), "not-an-address"),
    (("project", "add", "--name", "n", "--owner", "a@b@example.com"), "address"),
    (("project", "add", "--name", "  ", "--owner", "o@example.com"), "name"),
    (("portrait", "add", "--owner", "o@example.com", "--title", "t", "--project", "999"),
     "999"),
    (("portrait", "add", "--owner", "o@example.com", "--title", "t", "--project", "x"),
     "--project"),
    (("portrait", "add", "--owner", "o@@example.com", "--title", "t"), "address"),
    (("portrait", "add", "--owner", "o@example.com", "--title", "t",
      "--subscription-end", "2030-02-30"), "2030-02-30"),
    (("portrait", "add", "--owner", "o@example.com"), "--title"),
    (("video", "add", "--portrait", "999", "--title", "v"), "999"),
    (("video", "add", "--portrait", "0", "--title", "v"), "--portrait"),
    (("video", "add", "--portrait", "1", "--title", "v", "--start", "soon"), "soon"),
    (("video", "add", "--portrait", "1", "--title", "v", "--end", "2030-01-01T25:00"),
     "2030-01-01T25:00"),
    (("video", "add", "--portrait", "1", "--title", "v", "--start", "2030-01-02",
      "--end", "2030-01-01"), "after its start"),
    (("video", "add", "--portrait", "1", "--title", "v", "--rotation", "shuffle"),
     "rotation"),
]


@pytest.mark.parametrize(("args", "names"), BAD, ids=[" ".join(a[:2]) + f"-{i}"
                                                      for i, (a, _) in enumerate(BAD)])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    cli: CliRunner, args: tuple[str, ...], names: str
) -> None:
    pid = new_id(cli, "project", "add", "--name", "p", "--owner", "o@example.com")
    qid = new_id(cli, "portrait", "add", "--owner", "o@example.com", "--title", "q")
    assert (pid, qid) == (1, 1)
    before = counts(cli)
    line = cli.error(*args, code=2)
    assert names in line, line
    assert counts(cli) == before


# ---- lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_check_and_summary_json(cli: CliRunner) -> None:
    new_id(cli, "project", "add", "--name", "soon", "--owner", "a@example.com",
           "--subscription-end", iso(days=3))
    new_id(cli, "portrait", "add", "--owner", "b@example.com", "--title", "tomorrow",
           "--subscription-end", iso(hours=12))
    new_id(cli, "portrait", "add", "--owner", "c@example.com", "--title", "ended",
           "--subscription-end", iso(days=-2))
    new_id(cli, "portrait", "add", "--owner", "d@example.com", "--title", "old",
           "--subscription-end", iso(days=-300))
    new_id(cli, "portrait", "add", "--owner", "e@example.com", "--title", "far",
           "--subscription-end", iso(days=90))
    new_id(cli, "portrait", "add", "--owner", "f@example.com", "--title", "open")
    result = cli.run("lifecycle", "check")
    assert result.returncode == 0, result.stderr
    assert "status=ok" in result.stdout
    doc = cli.json("lifecycle", "summary")
    assert {"active", "expiring", "archived", "notifications"} <= set(doc)
    assert (doc["active"], doc["expiring"], doc["archived"]) == (2, 2, 2)
    assert doc["notifications"] == {"7days": 1, "24hours": 1, "expired": 1}
    assert doc["notifications_skipped"] == 1
    assert [u["name"] for u in doc["upcoming"]] == ["tomorrow", "soon", "far"]
    for u in doc["upcoming"]:
        assert datetime.fromisoformat(u["subscription_end"]).utcoffset() is not None
    recipients = sorted(json.loads(r[0])[0] for r in cli.query("SELECT recipients"
                                                                 " FROM email_jobs"))
    assert recipients == ["a@example.com", "b@example.com", "c@example.com"]
    again = cli.json("lifecycle", "check")
    assert again["status"] == "ok" and again["emails"] == 0
    assert cli.json("lifecycle", "summary")["notifications"] == doc["notifications"]


def test_lifecycle_summary_of_an_empty_database(cli: CliRunner) -> None:
    doc = cli.json("lifecycle", "summary")
    assert (doc["active"], doc["expiring"], doc["archived"]) == (0, 0, 0)
    assert doc["notifications"] == {"7days": 0, "24hours": 0, "expired": 0}
    assert doc["upcoming"] == []
    text = cli.ok("lifecycle", "summary")
    assert "active 0" in text and "expiring 0" in text


def test_lifecycle_notifications_disabled_from_the_environment(cli: CliRunner) -> None:
    new_id(cli, "portrait", "add", "--owner", "b@example.com", "--title", "tomorrow",
           "--subscription-end", iso(hours=12))
    doc = cli.json("lifecycle", "check", LIFECYCLE_NOTIFICATIONS_ENABLED="false")
    assert doc["status"] == "ok" and doc["emails"] == 0
    assert cli.query("SELECT lifecycle_status FROM portraits") == [("expiring",)]
    assert cli.query("SELECT count(*) FROM lifecycle_notifications") == [(0,)]
    assert cli.query("SELECT count(*) FROM email_jobs") == [(0,)]


def test_berlin_timezone_changes_nothing_in_lifecycle(cli: CliRunner) -> None:
    end = iso(days=6, hours=23)
    new_id(cli, "portrait", "add", "--owner", "b@example.com", "--title", "t",
           "--subscription-end", end)
    doc = cli.json("lifecycle", "check", VERTEX_TIMEZONE="Europe/Berlin")
    assert doc["sent"] == {"7days": 1}
    summary = cli.json("lifecycle", "summary", VERTEX_TIMEZONE="Europe/Berlin")
    shown = datetime.fromisoformat(summary["upcoming"][0]["subscription_end"])
    assert shown == datetime.fromisoformat(end)


# ---- videos ------------------------------------------------------------------------------------


def test_video_check_and_summary_json(cli: CliRunner) -> None:
    q = new_id(cli, "portrait", "add", "--owner", "o@example.com", "--title", "Mona")
    gone = new_id(cli, "portrait", "add", "--owner", "o@example.com", "--title", "Gone",
                  "--subscription-end", iso(days=-1))
    a = new_id(cli, "video", "add", "--portrait", str(q), "--title", "A", "--rotation",
               "cyclic")
    new_id(cli, "video", "add", "--portrait", str(q), "--title", "B", "--rotation", "cyclic")
    new_id(cli, "video", "add", "--portrait", str(q), "--title", "Later", "--start",
           iso(days=1))
    new_id(cli, "video", "add", "--portrait", str(gone), "--title", "Never")
    result = cli.run("video", "check")
    assert result.returncode == 0, result.stderr
    assert "status=ok" in result.stdout
    doc = cli.json("video", "summary")
    assert {"scheduled", "active", "inactive", "archived"} <= set(doc)
    assert (doc["scheduled"], doc["active"], doc["inactive"], doc["archived"]) == (3, 1, 0, 0)
    assert [(r["portrait"], r["video"]) for r in doc["rotating"]] == [(q, a)]
    assert {u["what"] for u in doc["upcoming"]} == {"activate", "rotate"}
    cli.assert_times_have_offsets(doc)
    assert cli.query("SELECT status FROM videos WHERE portrait_id = ?", (gone,)) == [
        ("scheduled",)]
    again = cli.json("video", "check")
    assert again["status"] == "ok" and again["activated"] == 0
    text = cli.ok("video", "summary")
    assert "active 1" in text and "current rotation:" in text


def test_video_check_mails_the_admin_digest_when_configured(cli: CliRunner) -> None:
    q = new_id(cli, "portrait", "add", "--owner", "o@example.com", "--title", "Mona")
    new_id(cli, "video", "add", "--portrait", str(q), "--title", "A")
    doc = cli.json("video", "check", NOTIFY_ADMIN_EMAIL="ops@example.com")
    assert doc["activated"] == 1 and doc["digest_mailed"] is True
    rows = cli.query("SELECT recipients, subject FROM email_jobs")
    assert rows == [('["ops@example.com"]',
                     "Video schedule: 1 activated, 0 deactivated, 0 rotated")]


def test_check_commands_on_an_empty_database_exit_0(cli: CliRunner) -> None:
    for service in ("lifecycle", "video"):
        result = cli.run(service, "check", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "ok"
        assert result.stderr == ""
    runs = cli.query("SELECT service, outcome FROM service_runs ORDER BY id")
    assert runs == [("lifecycle", "ok"), ("video", "ok")]


def test_video_summary_of_an_empty_database(cli: CliRunner) -> None:
    doc = cli.json("video", "summary")
    assert {k: doc[k] for k in ("scheduled", "active", "inactive", "archived")} == {
        "scheduled": 0, "active": 0, "inactive": 0, "archived": 0}
    assert doc["upcoming"] == [] and doc["rotating"] == []
