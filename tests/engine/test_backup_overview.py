"""The backup panel and the rotation preview (engine/backup/overview.py): the pure
age-colour policy as a table, BACKUP_WARN_AGE_HOURS parsing, and the panel and the preview
over real backups on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vertex_tui.engine.backup.overview import freshness
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import ConfigError
from vertex_tui.engine.settings import BackupAgeLimits, Settings

HOUR = 3600.0

# (hours since the last success or None for never, warning hours, enabled) -> level
FRESHNESS = [
    (0.0, 26, True, "ok"),
    (25.99, 26, True, "ok"),
    (26.0, 26, True, "warning"),  # at the warning age: warn
    (51.99, 26, True, "warning"),
    (52.0, 26, True, "critical"),  # twice the warning age
    (500.0, 26, True, "critical"),
    (None, 26, True, "critical"),  # never succeeded
    (169.0, 170, True, "ok"),  # weekly kinds: a week and two hours
    (171.0, 170, True, "warning"),
    (None, 26, False, "disabled"),  # nothing is expected of a job that is off
    (500.0, 26, False, "disabled"),
]


@pytest.mark.parametrize(("hours", "warn", "enabled", "level"), FRESHNESS)
def test_freshness_policy(hours: float | None, warn: float, enabled: bool, level: str) -> None:
    age = None if hours is None else hours * HOUR
    assert freshness(age, warn, enabled=enabled) == level


AGE_SETTINGS = [
    (None, BackupAgeLimits(database=26, storage=170, full=170)),
    ("30", BackupAgeLimits(database=30, storage=30, full=30)),
    ("database=12", BackupAgeLimits(database=12, storage=170, full=170)),
    (" full = 200 , storage=100", BackupAgeLimits(database=26, storage=100, full=200)),
    ("1.5", BackupAgeLimits(database=1.5, storage=1.5, full=1.5)),
]


@pytest.mark.parametrize(("raw", "expected"), AGE_SETTINGS)
def test_warn_age_setting(raw: str | None, expected: BackupAgeLimits) -> None:
    env = {} if raw is None else {"BACKUP_WARN_AGE_HOURS": raw}
    assert Settings.from_env(env).backup_warn_age_hours == expected


BAD_AGES = ["", "0", "-4", "x", "9000", "db=3", "database=", "database=2,database=3",
            "database:26", "database=26,,full=2", "nan"]


@pytest.mark.parametrize("raw", BAD_AGES)
def test_bad_warn_age_setting_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"BACKUP_WARN_AGE_HOURS": raw})
    assert caught.value.variable == "BACKUP_WARN_AGE_HOURS"
    assert "database=26" in caught.value.expected  # says what a good value looks like


async def statuses(engine: Engine) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in await engine.db.read(
        "SELECT id, status FROM backups ORDER BY id")]


async def test_panel_ages_turn_warning_then_critical_and_count_what_is_on_disk(
        backend_settings_factory: Callable[..., Settings], clock: FakeClock) -> None:
    settings = backend_settings_factory(backup_warn_age_hours=BackupAgeLimits(database=10),
                                backup_storage_enabled=False)
    async with Engine(settings, run=[], clock=clock) as engine:
        first = await engine.backup.run("database")
        clock.advance(HOUR)
        second = await engine.backup.run("database")
        panel = {k["kind"]: k for k in (await engine.backup.panel())["kinds"]}
        db = panel["database"]
        assert (db["level"], db["count"]) == ("ok", 2)
        assert db["total_size"] == first["size"] + second["size"] > 0
        assert db["age_seconds"] == 0.0
        assert db["last_verified_ok"] is True and db["last_verified_at"] is not None
        assert (db["warn_age_hours"], db["critical_age_hours"]) == (10, 20)
        assert panel["storage"]["level"] == "disabled"
        assert panel["full"]["level"] == "critical"  # enabled, never ran

        clock.advance(10 * HOUR)
        db = (await engine.backup.panel())["kinds"][0]
        assert (db["kind"], db["level"], db["age_seconds"]) == ("database", "warning",
                                                                10 * HOUR)
        clock.advance(10 * HOUR)
        assert (await engine.backup.panel())["kinds"][0]["level"] == "critical"

        # A failed verification is the last verification, with its reason.
        Path(second["path"]).write_bytes(b"garbage")
        verdict = await engine.backup.verify(Path(second["path"]))
        assert not verdict.ok
        db = (await engine.backup.panel())["kinds"][0]
        assert db["last_verified_ok"] is False and db["last_verified_error"]
        doc = await engine.backup.panel()
        assert doc["last_drill"] is None


async def test_rotation_preview_names_what_rotation_deletes_and_deletes_nothing(
        backend_settings_factory: Callable[..., Settings], clock: FakeClock) -> None:
    settings = backend_settings_factory(backup_keep_last=2)
    async with Engine(settings, run=[], clock=clock) as engine:
        made = []
        for _ in range(4):
            made.append(await engine.backup.run("database"))
            clock.advance(HOUR)
        before = await statuses(engine)
        preview = await engine.backup.rotation_preview()
        assert [d["id"] for d in preview["database"]] == [made[0]["id"], made[1]["id"]]
        assert preview["database"][0]["path"] == made[0]["path"]
        assert (preview["storage"], preview["full"]) == ([], [])
        assert await statuses(engine) == before, "the preview marked nothing"
        assert all(Path(m["path"]).exists() for m in made), "the preview deleted no file"

        result = await engine.backup.run("rotation")
        assert result["deleted"]["database"] == 2
        deleted = [i for i, status in await statuses(engine) if status == "deleted"]
        assert deleted == [d["id"] for d in preview["database"]]
        assert (await engine.backup.rotation_preview())["database"] == []
