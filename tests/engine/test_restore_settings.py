"""Settings a restore and the backups depend on: a backup folder inside (or equal to) the
storage folder, and a cron schedule that can never fire, are refused at start (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vertex_tui.engine.errors import ConfigError, UsageError
from vertex_tui.engine.settings import Settings

SCHEDULES = (
    "BACKUP_DATABASE_SCHEDULE",
    "BACKUP_STORAGE_SCHEDULE",
    "BACKUP_FULL_SCHEDULE",
    "BACKUP_ROTATION_SCHEDULE",
    "BACKUP_DRILL_SCHEDULE",
)


@pytest.mark.parametrize(
    ("storage", "backups"),
    [
        ("storage", "storage/backups"),
        ("storage", "storage/deep/er/backups"),
        ("storage", "storage"),
        ("storage", "./storage/"),
        ("media/storage", "media/storage/../storage/b"),
    ],
)
def test_backup_dir_inside_or_equal_to_storage_dir_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str, backups: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"VERTEX_STORAGE_DIR": storage, "VERTEX_BACKUP_DIR": backups})
    message = str(info.value)
    assert isinstance(info.value, UsageError)  # exit status 2
    assert "\n" not in message
    assert "VERTEX_BACKUP_DIR" in message and "VERTEX_STORAGE_DIR" in message
    assert info.value.variable == "VERTEX_BACKUP_DIR"


def test_backup_dir_inside_storage_dir_through_an_absolute_path(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    with pytest.raises(ConfigError, match="VERTEX_STORAGE_DIR"):
        Settings.from_env({"VERTEX_STORAGE_DIR": str(storage),
                           "VERTEX_BACKUP_DIR": str(storage / "backups")})


def test_backup_dir_inside_storage_dir_through_a_symlink(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    storage.mkdir()
    (tmp_path / "link").symlink_to(storage)
    with pytest.raises(ConfigError, match="VERTEX_STORAGE_DIR"):
        Settings.from_env({"VERTEX_STORAGE_DIR": str(storage),
                           "VERTEX_BACKUP_DIR": str(tmp_path / "link" / "backups")})


@pytest.mark.parametrize(
    ("storage", "backups"),
    [
        ("storage", "backups"),  # the defaults, side by side
        ("storage", "storage-backups"),  # a name that starts like the storage folder
        ("data/storage", "data/backups"),
        ("backups/storage", "backups"),  # storage inside backups: archives stay small
    ],
)
def test_backup_dir_outside_storage_dir_is_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, storage: str, backups: str
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({"VERTEX_STORAGE_DIR": storage, "VERTEX_BACKUP_DIR": backups})
    assert settings.backup_dir == Path(backups)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("expr", ["0 2 30 2 *", "0 2 31 4 *", "0 0 31 2,4,6,9,11 *"])
def test_cron_that_can_never_fire_is_refused(name: str, expr: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: expr})
    message = str(info.value)
    assert message.startswith(f"{name}={expr!r} is invalid")
    assert "matches no date" in message
    assert "\n" not in message


@pytest.mark.parametrize("expr", ["0 2 29 2 *", "0 2 31 * *", "0 2 30 1-12 *"])
def test_cron_that_fires_rarely_is_accepted(expr: str) -> None:
    assert Settings.from_env({"BACKUP_DATABASE_SCHEDULE": expr}).backup_database_schedule == expr
