"""Typed, validated settings read once from the environment.

Every variable of SPEC's configuration table has a field here. `Settings.from_env()` refuses a
bad value with a `ConfigError` naming the variable, the value and what is expected; the host
turns that into one stderr line and exit status 2.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from vertex_tui.engine.email.message import parse_address  # the queue's own rules
from vertex_tui.engine.email.tls import default_helo_name, load_ca_file, valid_host_name
from vertex_tui.engine.errors import ConfigError, InvalidMessage
from vertex_tui.engine.store.pgurl import check_url, display_url, mask_url

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Secret:
    """A string that never shows itself in `repr`, `str` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class DatabaseUrl(Secret):
    """A PostgreSQL URL: shown (`str`, `config`, logs) with its password masked."""

    __slots__ = ()

    def masked(self) -> str:
        return display_url(self._value)

    def __repr__(self) -> str:
        return f"DatabaseUrl({self.masked()!r})"

    __str__ = masked


def _database_url(raw: str) -> DatabaseUrl | None:
    if not raw.strip():
        return None  # set but empty: SQLite, as when unset
    return DatabaseUrl(check_url(_text(raw)))


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("a boolean (true/false, yes/no, on/off, 1/0)")


def _int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    expected = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"

    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(expected) from None
        if value < lo or (hi is not None and value > hi):
            raise ValueError(expected)
        return value

    return parse


def _positive_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError("a number of seconds > 0") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ValueError("a number of seconds > 0")
    return value


def _delays(raw: str) -> tuple[float, ...]:
    expected = "a comma-separated list of seconds >= 0, e.g. 1,2,4,8,16"
    parts = [p.strip() for p in raw.split(",")]
    if not parts or any(not p for p in parts):
        raise ValueError(expected)
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise ValueError(expected) from None
    if any(not (0 <= v < float("inf")) for v in values):
        raise ValueError(expected)
    return values


def _timezone(raw: str) -> str:
    name = raw.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("an IANA time zone name such as UTC or Europe/Berlin") from None
    return name


def _cron(raw: str) -> str:
    from vertex_tui.engine.scheduling import next_cron_time, validate_cron

    expr = " ".join(raw.split())
    problem = validate_cron(expr)
    if problem:
        raise ValueError(f"a 5-field cron expression (minute hour day month weekday): {problem}")
    if next_cron_time(expr, "UTC", datetime.now(UTC)) is None:
        # e.g. "0 2 30 2 *": accepted by the parser, but the job would never run.
        raise ValueError("a cron expression that can fire: this one matches no date")
    return expr


def _starttls(raw: str) -> str:
    value = raw.strip().lower()
    if value == "auto":
        return "auto"
    try:
        return "true" if _bool(value) else "false"
    except ValueError:
        raise ValueError("auto, true or false") from None


def _host(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("a host name or IP address")
    return value


def _ca_file(raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw.strip())
    load_ca_file(path)
    return path


def _helo_name(raw: str) -> str | None:
    value = _text(raw).strip()
    if not value:
        return None
    if not valid_host_name(value):
        raise ValueError("a host name such as mail.example.com (ASCII letters, digits, hyphens)"
                         " or an address literal such as [192.0.2.1]")
    return value


def _mailbox(raw: str) -> str:
    value = raw.strip()
    try:
        parse_address(value)
    except InvalidMessage:
        raise ValueError("an email address such as 'Vertex AR <noreply@example.com>'") from None
    return value


def _optional_mailbox(raw: str) -> str | None:
    return _mailbox(raw) if raw.strip() else None


@dataclass(frozen=True, kw_only=True)
class BackupAgeLimits:
    """Hours after its last success at which a backup kind is shown as overdue (warning);
    twice that is critical. The defaults fit the default schedules plus two hours: the
    database daily, storage and full weekly."""

    database: float = 26.0
    storage: float = 170.0
    full: float = 170.0

    def warn_hours(self, kind: str) -> float:
        return float(getattr(self, kind))

    def __str__(self) -> str:
        return ",".join(f"{f.name}={getattr(self, f.name):g}" for f in fields(self))


def _age_limits(raw: str) -> BackupAgeLimits:
    """`26` (every kind) or `database=26,full=200` (the kinds named; the others keep their
    defaults)."""
    expected = ("hours (a number from 1 to 8760) for every kind, or kind=hours pairs"
                " (database, storage, full), e.g. database=26,full=200")
    kinds = {f.name for f in fields(BackupAgeLimits)}

    def hours(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(expected) from None
        if not 1 <= value <= 8760:
            raise ValueError(expected)
        return value

    text = raw.strip()
    if "=" not in text:
        value = hours(text)
        return BackupAgeLimits(**dict.fromkeys(kinds, value))
    values: dict[str, float] = {}
    for item in text.split(","):
        kind, sep, number = item.partition("=")
        if not sep or kind.strip() not in kinds or kind.strip() in values:
            raise ValueError(expected)
        values[kind.strip()] = hours(number)
    return BackupAgeLimits(**values)


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("a non-empty path")
    return Path(raw.strip())


def _optional_dir(raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw.strip())
    if not path.is_dir():
        raise ValueError("an existing folder (of pg_dump and pg_restore)")
    return path


def _text(raw: str) -> str:
    # A line break here is an env-file accident (CRLF endings), never part of a credential.
    if "\r" in raw or "\n" in raw:
        raise ValueError("a value without line breaks (CR/LF)")
    return raw


def _secret(raw: str) -> Secret:
    return Secret(_text(raw))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Effective configuration. Tests construct it directly; hosts use `from_env()`."""

    db_path: Path = Path("vertex.db")
    # PostgreSQL instead of the SQLite file at db_path when set (store/backend.py).
    database_url: DatabaseUrl | None = None
    database_connect_timeout: float = 30.0  # seconds to wait for the server at start
    database_pool_size: int = 8  # PostgreSQL connections of one process (+ half for hot paths)
    storage_dir: Path = Path("storage")
    backup_dir: Path = Path("backups")
    # Declared the same folder on every host (NFS...): rotation and drills then weigh every
    # host's backups; checked by a token file (backup/folder.py). Else each host its own.
    backup_dir_shared: bool = False
    pg_bin: Path | None = None  # folder of pg_dump/pg_restore (default: the newest installed)
    timezone: str = "UTC"

    video_enabled: bool = True
    video_check_interval: int = 300
    video_rotation_interval: int = 3600
    video_archive_after_hours: int = 168
    video_notifications_enabled: bool = True

    lifecycle_enabled: bool = True
    lifecycle_check_interval: int = 3600
    lifecycle_notifications_enabled: bool = True

    backup_database_enabled: bool = True
    backup_storage_enabled: bool = False
    backup_full_enabled: bool = True
    backup_rotation_enabled: bool = True
    backup_database_schedule: str = "0 2 * * *"
    backup_storage_schedule: str = "0 3 * * 0"
    backup_full_schedule: str = "0 3 * * 0"
    backup_rotation_schedule: str = "0 4 * * *"
    backup_drill_enabled: bool = False
    backup_drill_schedule: str = "30 4 * * 0"
    backup_keep_last: int = 7
    backup_keep_daily: int = 0
    backup_keep_weekly: int = 0
    backup_keep_monthly: int = 0
    backup_misfire_grace_seconds: int = 3600
    backup_warn_age_hours: BackupAgeLimits = BackupAgeLimits()

    email_workers: int = 3
    email_retry_max_attempts: int = 5
    email_retry_delays: tuple[float, ...] = (1, 2, 4, 8, 16)
    email_lease_seconds: int = 60
    email_poll_interval: float = 1.0

    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: Secret = Secret("")  # noqa: RUF009 - immutable
    smtp_starttls: str = "auto"
    smtp_tls: bool = False
    smtp_timeout: float = 30.0
    smtp_ca_file: Path | None = None  # CAs trusted when TLS is required; None: system store
    smtp_helo_name: str | None = None  # None: the host's FQDN (email/tls.py)

    email_from: str = "Vertex AR <noreply@localhost>"
    notify_admin_email: str | None = None

    metrics_port: int = 0  # 0: no metrics endpoint
    metrics_address: str = "127.0.0.1"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every variable of `_VARIABLES` from `env` (default: `os.environ`)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var in _VARIABLES:
            raw = env.get(var.name)
            if raw is None:
                continue
            try:
                values[var.field] = var.parse(raw)
            except ValueError as exc:
                shown = ("********" if var.parse is _secret
                         else mask_url(raw) if var.parse is _database_url else raw)
                raise ConfigError(var.name, shown, str(exc)) from None
        settings = cls(**values)
        if settings.smtp_tls and settings.smtp_starttls == "true":
            raise ConfigError(
                "SMTP_STARTTLS", "true", "false or auto when SMTP_TLS=true (TLS from the start)"
            )
        _check_backup_dir(settings)
        return settings

    @property
    def database_label(self) -> str:
        """What names the database in messages: the URL (password masked) or the file."""
        return self.database_url.masked() if self.database_url else str(self.db_path)

    def values(self) -> list[tuple[str, Any]]:
        """(variable, effective value) pairs, typed (`config --json` renders them)."""
        return [(var.name, getattr(self, var.field)) for var in _VARIABLES]

    def describe(self) -> list[tuple[str, str]]:
        """(variable, effective value) pairs for `vertex-tui config`, secrets masked."""
        out = []
        for var in _VARIABLES:
            value = getattr(self, var.field)
            if isinstance(value, DatabaseUrl):
                shown = value.masked()
            elif var.field == "database_url" and value is None:
                shown = f"(not set: SQLite at VERTEX_DB_PATH={self.db_path})"
            elif isinstance(value, Secret):
                shown = "********" if value else "(not set)"
            elif isinstance(value, tuple):
                shown = ",".join(f"{v:g}" for v in value)
            elif var.field == "smtp_helo_name" and value is None:
                shown = f"(not set: this host's name, {default_helo_name()})"
            elif var.field == "smtp_ca_file" and value is None:
                shown = "(not set: the system store)"
            elif isinstance(value, bool):
                shown = "true" if value else "false"
            elif value is None or value == "":
                shown = "(not set)"
            else:
                shown = str(value)
            out.append((var.name, shown))
        return out


def _check_backup_dir(settings: Settings) -> None:
    """Backups must live outside the storage folder: inside it, every storage archive would
    hold all earlier backups (and its own temp file)."""
    backups, storage = settings.backup_dir.resolve(), settings.storage_dir.resolve()
    if backups == storage or backups.is_relative_to(storage):
        where = "the same folder as" if backups == storage else "a folder inside"
        raise ConfigError(
            "VERTEX_BACKUP_DIR", str(settings.backup_dir),
            f"a folder outside VERTEX_STORAGE_DIR={settings.storage_dir} (it is {where} it,"
            " so every storage archive would contain the backups)")


@dataclass(frozen=True)
class _Var:
    name: str
    field: str
    parse: Callable[[str], Any]


_VARIABLES: tuple[_Var, ...] = (
    _Var("VERTEX_DB_PATH", "db_path", _path),
    _Var("VERTEX_DATABASE_URL", "database_url", _database_url),
    _Var("VERTEX_DATABASE_CONNECT_TIMEOUT", "database_connect_timeout", _positive_float),
    _Var("VERTEX_DATABASE_POOL_SIZE", "database_pool_size", _int_range(2, 100)),
    _Var("VERTEX_STORAGE_DIR", "storage_dir", _path),
    _Var("VERTEX_BACKUP_DIR", "backup_dir", _path),
    _Var("VERTEX_BACKUP_DIR_SHARED", "backup_dir_shared", _bool),
    _Var("VERTEX_PG_BIN", "pg_bin", _optional_dir),
    _Var("VERTEX_TIMEZONE", "timezone", _timezone),
    _Var("VIDEO_SCHEDULER_ENABLED", "video_enabled", _bool),
    _Var("VIDEO_SCHEDULER_CHECK_INTERVAL", "video_check_interval", _int_range(1, 86_400)),
    _Var("VIDEO_SCHEDULER_ROTATION_INTERVAL", "video_rotation_interval", _int_range(1)),
    _Var("VIDEO_SCHEDULER_ARCHIVE_AFTER_HOURS", "video_archive_after_hours", _int_range(0)),
    _Var("VIDEO_SCHEDULER_NOTIFICATIONS_ENABLED", "video_notifications_enabled", _bool),
    _Var("LIFECYCLE_SCHEDULER_ENABLED", "lifecycle_enabled", _bool),
    _Var("LIFECYCLE_CHECK_INTERVAL_SECONDS", "lifecycle_check_interval", _int_range(1, 86_400)),
    _Var("LIFECYCLE_NOTIFICATIONS_ENABLED", "lifecycle_notifications_enabled", _bool),
    _Var("BACKUP_DATABASE_ENABLED", "backup_database_enabled", _bool),
    _Var("BACKUP_STORAGE_ENABLED", "backup_storage_enabled", _bool),
    _Var("BACKUP_FULL_ENABLED", "backup_full_enabled", _bool),
    _Var("BACKUP_ROTATION_ENABLED", "backup_rotation_enabled", _bool),
    _Var("BACKUP_DATABASE_SCHEDULE", "backup_database_schedule", _cron),
    _Var("BACKUP_STORAGE_SCHEDULE", "backup_storage_schedule", _cron),
    _Var("BACKUP_FULL_SCHEDULE", "backup_full_schedule", _cron),
    _Var("BACKUP_ROTATION_SCHEDULE", "backup_rotation_schedule", _cron),
    _Var("BACKUP_DRILL_ENABLED", "backup_drill_enabled", _bool),
    _Var("BACKUP_DRILL_SCHEDULE", "backup_drill_schedule", _cron),
    _Var("BACKUP_KEEP_LAST", "backup_keep_last", _int_range(1, 10_000)),
    _Var("BACKUP_KEEP_DAILY", "backup_keep_daily", _int_range(0, 10_000)),
    _Var("BACKUP_KEEP_WEEKLY", "backup_keep_weekly", _int_range(0, 10_000)),
    _Var("BACKUP_KEEP_MONTHLY", "backup_keep_monthly", _int_range(0, 10_000)),
    _Var("BACKUP_MISFIRE_GRACE_SECONDS", "backup_misfire_grace_seconds", _int_range(1)),
    _Var("BACKUP_WARN_AGE_HOURS", "backup_warn_age_hours", _age_limits),
    _Var("EMAIL_QUEUE_WORKERS", "email_workers", _int_range(1, 64)),
    _Var("EMAIL_RETRY_MAX_ATTEMPTS", "email_retry_max_attempts", _int_range(1, 100)),
    _Var("EMAIL_RETRY_DELAYS", "email_retry_delays", _delays),
    _Var("EMAIL_LEASE_SECONDS", "email_lease_seconds", _int_range(5, 86_400)),
    _Var("EMAIL_POLL_INTERVAL", "email_poll_interval", _positive_float),
    _Var("SMTP_HOST", "smtp_host", _host),
    _Var("SMTP_PORT", "smtp_port", _int_range(1, 65_535)),
    _Var("SMTP_USERNAME", "smtp_username", _text),
    _Var("SMTP_PASSWORD", "smtp_password", _secret),
    _Var("SMTP_STARTTLS", "smtp_starttls", _starttls),
    _Var("SMTP_TLS", "smtp_tls", _bool),
    _Var("SMTP_TIMEOUT", "smtp_timeout", _positive_float),
    _Var("SMTP_CA_FILE", "smtp_ca_file", _ca_file),
    _Var("SMTP_HELO_NAME", "smtp_helo_name", _helo_name),
    _Var("EMAIL_FROM", "email_from", _mailbox),
    _Var("NOTIFY_ADMIN_EMAIL", "notify_admin_email", _optional_mailbox),
    _Var("METRICS_PORT", "metrics_port", _int_range(0, 65_535)),
    _Var("METRICS_ADDRESS", "metrics_address", _host),
)

VARIABLE_NAMES: tuple[str, ...] = tuple(v.name for v in _VARIABLES)
assert {v.field for v in _VARIABLES} == {f.name for f in fields(Settings)}
