"""Backup schedules: cron expressions in VERTEX_TIMEZONE through APScheduler's CronTrigger,
next run times from a fixed clock, disabled jobs, DST change days and bad expressions.

What a 02:30 Europe/Berlin job does on the DST change days (APScheduler 3.11, pinned here):

* 2026-03-29, clocks jump 02:00 CET -> 03:00 CEST, so 02:30 does not exist that day. The job
  runs ONCE, at 01:30 UTC (= 03:30 CEST, one hour "late"); a 02:00 job runs at 01:00 UTC
  (= 03:00 CEST, together with a 03:00 job). No day is skipped.
* 2026-10-25, clocks fall back 03:00 CEST -> 02:00 CET, so 02:30 happens twice. The job runs
  TWICE: 00:30 UTC (02:30 CEST) and 01:30 UTC (02:30 CET). For a backup this costs one extra
  backup (and, with keep_last, one slot); nothing is lost.

The tests with an engine run on both backends (`backend`): next runs come from the engine's
clock, published schedules are read through the database. Tests of an engine's liveness use a
fake clock started at the real time, since PostgreSQL judges heartbeats on the server's clock.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from support.db import query

from vertex_tui.engine.backup.service import JOBS
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import ConfigError
from vertex_tui.engine.scheduling import cron_trigger, next_cron_time, validate_cron
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import schedules

BERLIN = "Europe/Berlin"
SETTING_PREFIXES = (
    "VERTEX_",
    "SMTP_",
    "EMAIL_",
    "BACKUP_",
    "VIDEO_SCHEDULER_",
    "LIFECYCLE_",
    "NOTIFY_",
)


def utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso).replace(tzinfo=UTC)


def instant(text: str | None) -> datetime | None:
    """An ISO 8601 string with offset as an aware datetime (None stays None)."""
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)
    assert parsed.utcoffset() is not None, f"{text!r} has no offset"
    return parsed


# ---- next_cron_time --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "tz", "after", "expected"),
    [
        ("0 2 * * *", "UTC", "2026-01-10T01:59:59", "2026-01-10T02:00:00"),
        # Strictly after: at the fire time itself, the next one is tomorrow's.
        ("0 2 * * *", "UTC", "2026-01-10T02:00:00", "2026-01-11T02:00:00"),
        ("0 2 * * *", BERLIN, "2026-01-10T00:00:00", "2026-01-10T01:00:00"),  # CET, +1
        ("0 2 * * *", BERLIN, "2026-07-09T12:00:00", "2026-07-10T00:00:00"),  # CEST, +2
        ("0 2 * * *", BERLIN, "2026-07-10T00:00:00", "2026-07-11T00:00:00"),
        ("0 4 * * *", "America/New_York", "2026-01-10T12:00:00", "2026-01-11T09:00:00"),
        ("15 4 1 * *", "UTC", "2025-12-31T23:00:00", "2026-01-01T04:15:00"),
        ("0 0 29 2 *", "UTC", "2026-01-01T00:00:00", "2028-02-29T00:00:00"),
        ("*/30 * * * *", "UTC", "2026-01-10T10:10:00", "2026-01-10T10:30:00"),
        # Year boundary, in the zone: Jan 1st 00:30 Berlin is Dec 31st 23:30 UTC.
        ("30 0 1 1 *", BERLIN, "2026-06-01T00:00:00", "2026-12-31T23:30:00"),
    ],
)
def test_next_cron_time(expr: str, tz: str, after: str, expected: str) -> None:
    got = next_cron_time(expr, tz, utc(after))
    assert got is not None
    assert got == utc(expected)
    assert got > utc(after)


@pytest.mark.parametrize(
    ("expr", "weekday"),
    [
        # Crontab numbering: 0 and 7 are Sunday (the SPEC's weekly default is "0 3 * * 0").
        ("0 3 * * 0", "Sunday"),
        ("0 3 * * 7", "Sunday"),
        ("0 3 * * sun", "Sunday"),
        ("0 3 * * 1", "Monday"),
        ("0 3 * * 6", "Saturday"),
        ("0 3 * * SAT", "Saturday"),
    ],
)
def test_weekday_numbers_follow_crontab(expr: str, weekday: str) -> None:
    after = utc("2026-01-07T12:00:00")  # a Wednesday
    runs = [after]
    for _ in range(3):
        nxt = next_cron_time(expr, "UTC", runs[-1])
        assert nxt is not None
        runs.append(nxt)
    assert {r.strftime("%A") for r in runs[1:]} == {weekday}
    assert runs[2] - runs[1] == timedelta(days=7)


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("1-5", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("mon-fri", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}),
        ("5-7", {"Friday", "Saturday", "Sunday"}),
        ("fri-sun", {"Friday", "Saturday", "Sunday"}),
        ("*/2", {"Sunday", "Tuesday", "Thursday", "Saturday"}),
        ("0,3", {"Sunday", "Wednesday"}),
        ("*", {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}),
    ],
)
def test_weekday_ranges_lists_and_steps_follow_crontab(field: str, days: set[str]) -> None:
    at = utc("2026-01-04T00:00:00")  # a Sunday, midnight: the next 7 days
    seen = set()
    for _ in range(len(days)):
        nxt = next_cron_time(f"0 3 * * {field}", "UTC", at)
        assert nxt is not None and nxt < utc("2026-01-11T00:00:00")
        seen.add(nxt.strftime("%A"))
        at = nxt
    assert seen == days


# ---- DST ----------------------------------------------------------------------------------------


def test_spring_forward_runs_a_0230_job_once_an_hour_late() -> None:
    # 02:30 does not exist in Berlin on 2026-03-29.
    first = next_cron_time("30 2 * * *", BERLIN, utc("2026-03-28T12:00:00"))
    assert first == utc("2026-03-29T01:30:00")  # 03:30 CEST
    assert first is not None
    assert first.astimezone(ZoneInfo(BERLIN)).strftime("%H:%M %Z") == "03:30 CEST"
    assert next_cron_time("30 2 * * *", BERLIN, first) == utc("2026-03-30T00:30:00")
    assert next_cron_time("0 2 * * *", BERLIN, utc("2026-03-28T12:00:00")) == utc(
        "2026-03-29T01:00:00"
    )  # 03:00 CEST
    assert next_cron_time("0 3 * * *", BERLIN, utc("2026-03-28T12:00:00")) == utc(
        "2026-03-29T01:00:00"
    )


def test_fall_back_runs_a_0230_job_twice() -> None:
    # 02:30 happens twice in Berlin on 2026-10-25: in CEST (00:30 UTC) and CET (01:30 UTC).
    first = next_cron_time("30 2 * * *", BERLIN, utc("2026-10-24T12:00:00"))
    assert first == utc("2026-10-25T00:30:00")
    second = next_cron_time("30 2 * * *", BERLIN, utc("2026-10-25T00:30:00"))
    assert second == utc("2026-10-25T01:30:00")
    assert next_cron_time("30 2 * * *", BERLIN, utc("2026-10-25T01:30:00")) == utc(
        "2026-10-26T01:30:00"
    )
    # A job outside the repeated hour runs once.
    assert next_cron_time("0 4 * * *", BERLIN, utc("2026-10-24T12:00:00")) == utc(
        "2026-10-25T03:00:00"
    )
    assert next_cron_time("0 4 * * *", BERLIN, utc("2026-10-25T03:00:00")) == utc(
        "2026-10-26T03:00:00"
    )


@pytest.mark.parametrize(
    ("start", "fires"),
    [
        (
            "2026-03-28T12:00:00",
            ["2026-03-29T01:30:00", "2026-03-30T00:30:00", "2026-03-31T00:30:00"],
        ),
        (
            "2026-10-24T12:00:00",
            ["2026-10-25T00:30:00", "2026-10-25T01:30:00", "2026-10-26T01:30:00"],
        ),
    ],
)
def test_scheduler_fire_sequence_on_dst_days(start: str, fires: list[str]) -> None:
    """What the running AsyncIOScheduler computes: each next fire time from the previous."""
    trigger = cron_trigger("30 2 * * *", BERLIN)
    previous = None
    now = utc(start)
    got = []
    for _ in fires:
        nxt = trigger.get_next_fire_time(previous, now)
        assert nxt is not None
        got.append(nxt.astimezone(UTC))
        previous = now = nxt
    assert got == [utc(f) for f in fires]


# ---- engine.backup.schedule() with a fixed clock ----------------------------------------------


async def test_schedule_lists_every_job_with_next_run_from_the_clock(
    backend_settings_factory: Callable[..., Settings],
) -> None:
    settings = backend_settings_factory(
        timezone=BERLIN, backup_storage_enabled=False, backup_drill_enabled=False
    )
    clock = FakeClock(start=utc("2026-01-07T12:00:00").timestamp())  # Wednesday
    async with Engine(settings, run=[], clock=clock) as engine:
        jobs = {j["job"]: j for j in await engine.backup.schedule()}
    assert list(jobs) == list(JOBS)
    assert {k: (j["schedule"], j["enabled"]) for k, j in jobs.items()} == {
        "database": ("0 2 * * *", True),
        "storage": ("0 3 * * 0", False),
        "full": ("0 3 * * 0", True),
        "rotation": ("0 4 * * *", True),
        "drill": ("30 4 * * 0", False),
    }
    assert jobs["storage"]["next_run"] is None
    assert jobs["drill"]["next_run"] is None
    assert instant(jobs["database"]["next_run"]) == utc("2026-01-08T01:00:00")  # 02:00 CET
    assert instant(jobs["full"]["next_run"]) == utc("2026-01-11T02:00:00")  # Sunday 03:00 CET
    assert instant(jobs["rotation"]["next_run"]) == utc("2026-01-08T03:00:00")


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("2026-03-28T12:00:00", ["2026-03-29T01:30:00", "2026-03-30T00:30:00"]),
        (
            "2026-10-24T12:00:00",
            ["2026-10-25T00:30:00", "2026-10-25T01:30:00", "2026-10-26T01:30:00"],
        ),
    ],
)
async def test_schedule_on_dst_change_days(
    backend_settings_factory: Callable[..., Settings], start: str, expected: list[str]
) -> None:
    settings = backend_settings_factory(timezone=BERLIN, backup_database_schedule="30 2 * * *")
    clock = FakeClock(start=utc(start).timestamp())
    seen = []
    async with Engine(settings, run=[], clock=clock) as engine:
        for _ in expected:
            job = next(j for j in await engine.backup.schedule() if j["job"] == "database")
            when = instant(job["next_run"])
            assert when is not None
            seen.append(when)
            clock.set(when.timestamp())  # the job ran; what comes next?
    assert seen == [utc(e) for e in expected]


async def test_started_service_reports_apscheduler_next_runs(
    backend_settings_factory: Callable[..., Settings],
) -> None:
    """With the service started, next runs come from the live APScheduler jobs (wall clock);
    schedules far from any boundary keep the expectation exact."""
    settings = backend_settings_factory(
        timezone=BERLIN,
        backup_database_schedule="0 0 29 2 *",
        backup_full_schedule="30 2 1 1 *",
        backup_rotation_schedule="0 4 13 6 *",
        backup_storage_enabled=False,
        backup_drill_enabled=False,
        backup_misfire_grace_seconds=1234,
    )
    before = datetime.now(UTC)
    async with Engine(settings, run=["backup"], clock=FakeClock()) as engine:
        jobs = {j["job"]: j for j in await engine.backup.schedule()}
    after = datetime.now(UTC)
    for name in ("database", "full", "rotation"):
        expr = jobs[name]["schedule"]
        allowed = {next_cron_time(expr, BERLIN, before), next_cron_time(expr, BERLIN, after)}
        assert instant(jobs[name]["next_run"]) in allowed, name
        assert jobs[name]["enabled"] is True
    for name in ("storage", "drill"):
        assert jobs[name]["enabled"] is False
        assert jobs[name]["next_run"] is None


async def test_backup_jobs_use_max_instances_coalesce_and_misfire_grace(
    backend_settings_factory: Callable[..., Settings],
) -> None:
    settings = backend_settings_factory(
        backup_misfire_grace_seconds=1234, **{f"backup_{j}_schedule": "0 0 29 2 *" for j in JOBS}
    )
    async with Engine(settings, run=["backup"], clock=FakeClock()) as engine:
        scheduler = engine.backup._scheduler  # the APScheduler behind the service
        assert scheduler is not None
        for name in JOBS:
            job = scheduler._scheduler.get_job(f"backup.{name}")  # the job's dotted name
            assert job is not None, name
            assert job.max_instances == 1 and job.coalesce is True
            assert job.misfire_grace_time == 1234
            assert str(job.trigger.timezone) == "UTC"
        listed = {j.name: j for j in scheduler.jobs()}
        assert listed["backup.storage"].enabled is False
        assert listed["backup.storage"].next_run is None


# ---- bad expressions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "61 2 * * *",
        "0 24 * * *",
        "0 2 32 * *",
        "0 2 * 13 *",
        "0 2 * * 8",
        "0 2 * * 5-1",
        "0 2 * *",
        "0 2 * * * *",
        "@daily",
        "",
        "every day",
    ],
)
def test_bad_cron_expressions_are_refused(expr: str) -> None:
    assert validate_cron(expr) is not None
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BACKUP_FULL_SCHEDULE": expr})
    assert caught.value.variable == "BACKUP_FULL_SCHEDULE"
    assert "BACKUP_FULL_SCHEDULE" in str(caught.value)


def clean_env(tmp_path: Path, backend: str, **settings: str) -> dict[str, str]:
    """The environment of a `vertex-tui` run in tmp_path. On PostgreSQL the URL names a port
    nobody listens on: a command that reached for the database before refusing its settings
    would wait for it and exit 1 ("cannot connect"), not 2."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env["VERTEX_DB_PATH"] = str(tmp_path / "vertex.db")
    if backend == "postgresql":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env["VERTEX_DATABASE_URL"] = f"postgresql://vertex@127.0.0.1:{port}/vertex"
        env["VERTEX_DATABASE_CONNECT_TIMEOUT"] = "2"
    env.update(settings)
    return env


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BACKUP_DATABASE_SCHEDULE", "61 2 * * *"),
        ("BACKUP_STORAGE_SCHEDULE", "0 3 * *"),
        ("BACKUP_FULL_SCHEDULE", "0 3 * * 8"),
        ("BACKUP_ROTATION_SCHEDULE", "nightly"),
        ("BACKUP_DRILL_SCHEDULE", "0 25 * * *"),
        ("VERTEX_TIMEZONE", "Mars/Olympus_Mons"),
    ],
)
def test_cli_exits_2_naming_a_bad_schedule_variable(
    tmp_path: Path, backend: str, variable: str, value: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vertex_tui", "backup", "schedule", "--json"],
        env=clean_env(tmp_path, backend, **{variable: value}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    line = done.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    assert variable in line and value in line
    assert not (tmp_path / "vertex.db").exists()  # refused before touching anything


async def test_a_process_that_schedules_nothing_shows_the_running_engines_schedule(
    backend_settings_factory: Callable[..., Settings],
) -> None:
    """An attached console (or a CLI command) over SSH rarely has the engine's environment:
    it shows the schedule the running engine published, not its own defaults; once that
    engine is gone, its own configuration again."""
    engine_settings = backend_settings_factory(
        backup_database_schedule="0 0 29 2 *", backup_storage_enabled=True,
        backup_storage_schedule="15 1 * * 3", backup_full_enabled=False,
        lifecycle_check_interval=900,
    )
    shell_settings = backend_settings_factory()  # the same database, SPEC's defaults otherwise
    clock = FakeClock()
    async with Engine(engine_settings, run=["backup", "lifecycle"], clock=clock) as running:
        theirs = {j["job"]: j for j in await running.backup.schedule()}
        async with Engine(shell_settings, run=[], clock=clock) as attached:
            seen = {j["job"]: j for j in await attached.backup.schedule()}
            lifecycle = await attached.lifecycle.status()
        expected_lifecycle = (await running.lifecycle.status())["next_run"]
    assert {k: (j["schedule"], j["enabled"], j["next_run"]) for k, j in seen.items()} == {
        k: (j["schedule"], j["enabled"], j["next_run"]) for k, j in theirs.items()}
    assert seen["database"]["schedule"] == "0 0 29 2 *"
    assert (seen["storage"]["enabled"], seen["full"]["enabled"]) == (True, False)
    assert seen["full"]["next_run"] is None
    assert lifecycle["next_run"] == expected_lifecycle is not None

    async with Engine(shell_settings, run=[], clock=clock) as alone:
        own = {j["job"]: j for j in await alone.backup.schedule()}
        assert own["database"]["schedule"] == "0 2 * * *" and own["storage"]["enabled"] is False
        assert query_flags(shell_settings) == [], "the engine withdrew what it published"


def query_flags(settings: Settings) -> list[tuple[str]]:
    return [(str(name),) for (name,) in query(
        settings, "SELECT name FROM engine_flags WHERE name LIKE 'schedule:%' ORDER BY name")]


async def test_a_process_that_schedules_nothing_does_not_hide_the_engines_schedule(
    backend_settings_factory: Callable[..., Settings],
) -> None:
    """`email drain` runs the email workers only: it is alive and publishes no job, and must
    not stand in for the engine that runs the schedules, whichever sorts first. Entries of
    engines no longer alive are never read, and the next publish drops them."""
    settings = backend_settings_factory()
    clock = FakeClock(start=time.time())  # PostgreSQL: liveness on the server's clock
    now = clock.time()
    theirs = '{"database": {"schedule": "cron 5 * * * *", "enabled": true, "next_run": 1.0}}'
    async with Engine(settings, run=[], clock=clock) as engine:
        for owner, doc, expires in (("a-drain", "{}", now + 30), ("b-engine", theirs, now + 30),
                                    ("0-dead", theirs.replace("5 *", "7 *"), now - 1)):
            await engine.db.write("INSERT INTO leases (name, owner, acquired_at, expires_at)"
                                  " VALUES (?, ?, 0, ?)", (f"engine:{owner}", owner, expires))
            await engine.db.write("INSERT INTO engine_flags (name, value, updated_at)"
                                  " VALUES (?, ?, 0)", (f"schedule:{owner}", doc))
        got = await schedules.published(engine.db, now=now, reader=engine.owner)
        assert got == {"database": {"schedule": "cron 5 * * * *", "enabled": True,
                                    "next_run": 1.0}}
        assert await schedules.published(engine.db, now=now, reader="b-engine") == {}
        await schedules.publish(engine.db, "b-engine", [], at=now)
    assert query_flags(settings) == [("schedule:a-drain",), ("schedule:b-engine",)]
