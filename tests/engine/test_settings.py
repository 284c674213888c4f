"""Settings: SPEC's configuration table, variable by variable.

Every variable has its default, at least one good value and at least one bad value here; the
table-coverage tests fail when a variable is added to `_VARIABLES` without rows below.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vertex_tui.engine.errors import ConfigError, UsageError
from vertex_tui.engine.settings import (
    _VARIABLES,
    VARIABLE_NAMES,
    BackupAgeLimits,
    DatabaseUrl,
    Secret,
    Settings,
)

FIELD = {v.name: v.field for v in _VARIABLES}

# SPEC "Configuration": variable -> (the table's text, or None for "-" (unset), the typed default).
SPEC_DEFAULTS: dict[str, tuple[str | None, object]] = {
    "VERTEX_DB_PATH": ("vertex.db", Path("vertex.db")),
    "VERTEX_STORAGE_DIR": ("storage", Path("storage")),
    "VERTEX_BACKUP_DIR": ("backups", Path("backups")),
    "VERTEX_TIMEZONE": ("UTC", "UTC"),
    "VIDEO_SCHEDULER_ENABLED": ("true", True),
    "VIDEO_SCHEDULER_CHECK_INTERVAL": ("300", 300),
    "VIDEO_SCHEDULER_ROTATION_INTERVAL": ("3600", 3600),
    "VIDEO_SCHEDULER_ARCHIVE_AFTER_HOURS": ("168", 168),
    "VIDEO_SCHEDULER_NOTIFICATIONS_ENABLED": ("true", True),
    "LIFECYCLE_SCHEDULER_ENABLED": ("true", True),
    "LIFECYCLE_CHECK_INTERVAL_SECONDS": ("3600", 3600),
    "LIFECYCLE_NOTIFICATIONS_ENABLED": ("true", True),
    "BACKUP_DATABASE_ENABLED": ("true", True),
    "BACKUP_STORAGE_ENABLED": ("false", False),
    "BACKUP_FULL_ENABLED": ("true", True),
    "BACKUP_ROTATION_ENABLED": ("true", True),
    "BACKUP_DATABASE_SCHEDULE": ("0 2 * * *", "0 2 * * *"),
    "BACKUP_STORAGE_SCHEDULE": ("0 3 * * 0", "0 3 * * 0"),
    "BACKUP_FULL_SCHEDULE": ("0 3 * * 0", "0 3 * * 0"),
    "BACKUP_ROTATION_SCHEDULE": ("0 4 * * *", "0 4 * * *"),
    "BACKUP_KEEP_LAST": ("7", 7),
    "BACKUP_KEEP_DAILY": ("0", 0),
    "BACKUP_KEEP_WEEKLY": ("0", 0),
    "BACKUP_KEEP_MONTHLY": ("0", 0),
    "EMAIL_QUEUE_WORKERS": ("3", 3),
    "EMAIL_RETRY_MAX_ATTEMPTS": ("5", 5),
    "EMAIL_RETRY_DELAYS": ("1,2,4,8,16", (1.0, 2.0, 4.0, 8.0, 16.0)),
    "EMAIL_LEASE_SECONDS": ("60", 60),
    "EMAIL_POLL_INTERVAL": ("1", 1.0),
    "BACKUP_MISFIRE_GRACE_SECONDS": ("3600", 3600),
    "SMTP_HOST": ("localhost", "localhost"),
    "SMTP_PORT": ("25", 25),
    "SMTP_USERNAME": (None, ""),
    "SMTP_PASSWORD": (None, Secret("")),
    "SMTP_STARTTLS": ("auto", "auto"),
    "SMTP_TLS": ("false", False),
    "SMTP_TIMEOUT": ("30", 30.0),
    "EMAIL_FROM": ("Vertex AR <noreply@localhost>", "Vertex AR <noreply@localhost>"),
    "NOTIFY_ADMIN_EMAIL": (None, None),
    "SMTP_CA_FILE": (None, None),
    "SMTP_HELO_NAME": (None, None),
}
# Variables the code adds beyond SPEC's table, with the code's defaults.
EXTRA_DEFAULTS: dict[str, tuple[str | None, object]] = {
    "VERTEX_DATABASE_URL": (None, None),
    "VERTEX_DATABASE_CONNECT_TIMEOUT": ("30", 30.0),
    "VERTEX_BACKUP_DIR_SHARED": ("false", False),
    "VERTEX_PG_BIN": (None, None),
    "BACKUP_DRILL_ENABLED": ("false", False),
    "BACKUP_DRILL_SCHEDULE": ("30 4 * * 0", "30 4 * * 0"),
    "METRICS_PORT": ("0", 0),
    "METRICS_ADDRESS": ("127.0.0.1", "127.0.0.1"),
    "BACKUP_WARN_AGE_HOURS": ("database=26,storage=170,full=170",
                              BackupAgeLimits(database=26, storage=170, full=170)),
    "VERTEX_DATABASE_POOL_SIZE": ("8", 8),
}
ALL_DEFAULTS = {**SPEC_DEFAULTS, **EXTRA_DEFAULTS}

NOT_AN_INT = ["", "abc", "1.5", "ten", "0x10", "1e3"]
NOT_A_BOOL = ["maybe", "", "2", "tru", "enabled"]
BAD_CRON = [
    "0 99 * * *",
    "* * *",
    "61 * * * *",
    "0 2 * * * *",
    "0 2 32 * *",
    "0 2 * 13 *",
    "every day",
    "",
]
BAD_SECONDS = ["0", "-1", "abc", "", "nan", "inf"]

BAD_VALUES: dict[str, list[str]] = {
    "VERTEX_DB_PATH": ["", "   "],
    "VERTEX_DATABASE_URL": ["mysql://u@h/db", "postgresql://u@h:99999/db", "postgresql://u@h/",
                            "postgresql://u@h:port/db", "vertex.db", "postgresql://u@h/d b",
                            "postgresql://u@h/db\r", "postgresql://u@db1:5432,db2:x/vt",
                            "postgresql://u@[::1/vt", "postgresql:/vt"],
    "VERTEX_DATABASE_CONNECT_TIMEOUT": BAD_SECONDS,
    "VERTEX_STORAGE_DIR": ["", "   "],
    "VERTEX_BACKUP_DIR": [""],
    "VERTEX_BACKUP_DIR_SHARED": NOT_A_BOOL,
    "VERTEX_PG_BIN": ["/nonexistent/pg/bin", "pyproject.toml"],
    "VERTEX_TIMEZONE": ["Mars/Olympus", "", "UTC+3", "../etc/passwd", "Europe/"],
    "VIDEO_SCHEDULER_ENABLED": NOT_A_BOOL,
    "VIDEO_SCHEDULER_CHECK_INTERVAL": ["0", "-5", "86401", *NOT_AN_INT],
    "VIDEO_SCHEDULER_ROTATION_INTERVAL": ["0", "-1", *NOT_AN_INT],
    "VIDEO_SCHEDULER_ARCHIVE_AFTER_HOURS": ["-1", *NOT_AN_INT],
    "VIDEO_SCHEDULER_NOTIFICATIONS_ENABLED": NOT_A_BOOL,
    "LIFECYCLE_SCHEDULER_ENABLED": NOT_A_BOOL,
    "LIFECYCLE_CHECK_INTERVAL_SECONDS": ["0", "86401", *NOT_AN_INT],
    "LIFECYCLE_NOTIFICATIONS_ENABLED": NOT_A_BOOL,
    "BACKUP_DATABASE_ENABLED": NOT_A_BOOL,
    "BACKUP_STORAGE_ENABLED": NOT_A_BOOL,
    "BACKUP_FULL_ENABLED": NOT_A_BOOL,
    "BACKUP_ROTATION_ENABLED": NOT_A_BOOL,
    "BACKUP_DATABASE_SCHEDULE": BAD_CRON,
    "BACKUP_STORAGE_SCHEDULE": BAD_CRON,
    "BACKUP_FULL_SCHEDULE": BAD_CRON,
    "BACKUP_ROTATION_SCHEDULE": BAD_CRON,
    "BACKUP_KEEP_LAST": ["0", "-1", "10001", *NOT_AN_INT],
    "BACKUP_KEEP_DAILY": ["-1", "10001", *NOT_AN_INT],
    "BACKUP_KEEP_WEEKLY": ["-1", *NOT_AN_INT],
    "BACKUP_KEEP_MONTHLY": ["-1", *NOT_AN_INT],
    "BACKUP_MISFIRE_GRACE_SECONDS": ["0", "-1", *NOT_AN_INT],
    "BACKUP_WARN_AGE_HOURS": ["0", "9000", "x", "", "weekly=3", "database=", "database:26"],
    "BACKUP_DRILL_ENABLED": NOT_A_BOOL,
    "BACKUP_DRILL_SCHEDULE": BAD_CRON,
    "METRICS_PORT": ["-1", "65536", *NOT_AN_INT],
    "METRICS_ADDRESS": ["", " ", "0.0.0.0 ::"],
    "EMAIL_QUEUE_WORKERS": ["0", "-1", "65", "1000", *NOT_AN_INT],
    "EMAIL_RETRY_MAX_ATTEMPTS": ["0", "-3", "101", *NOT_AN_INT],
    "EMAIL_RETRY_DELAYS": ["1,,2", "a,b", "-1", "", " ", ",", "1,2,", "1;2", "1,-2", "nan", "inf"],
    "EMAIL_LEASE_SECONDS": ["0", "4", "86401", *NOT_AN_INT],
    "EMAIL_POLL_INTERVAL": BAD_SECONDS,
    "SMTP_HOST": ["", "   ", "mail example.com"],
    "SMTP_PORT": ["0", "-25", "65536", *NOT_AN_INT],
    "SMTP_USERNAME": ["bob\r", "bob\nalice"],
    "SMTP_PASSWORD": ["hunter2\r", "hun\nter2"],
    "SMTP_STARTTLS": ["maybe", "", "required", "2"],
    "SMTP_TLS": NOT_A_BOOL,
    "SMTP_TIMEOUT": BAD_SECONDS,
    "EMAIL_FROM": ["bad", "", "Vertex AR", "@example.com", "noreply@", "a@b.com\r\nBcc: x@y.z",
                   "Vertex AR <noreply@example.com", "noreply@-example.com"],
    "NOTIFY_ADMIN_EMAIL": ["bad", "admin@", "@example.com", "admin@example.com\nBcc: x@y.z"],
    # Missing, a directory, a file without a PEM certificate (more in test_smtp_tls.py).
    "SMTP_CA_FILE": ["/nonexistent/vertex-ca.pem", "/", __file__],
    "SMTP_HELO_NAME": ["mail example.com", "-bad.example", "bad-.example", "under_score.example",
                       "a..b", ".", "[300.1.1.1]", "[mail]", "x" * 64 + ".example", "Ä.example",
                       "mail.example.com\r"],
    "VERTEX_DATABASE_POOL_SIZE": ["0", "1", "101", "many"],
}

GOOD_VALUES: dict[str, list[tuple[str, object]]] = {
    "VERTEX_DATABASE_URL": [
        ("postgresql://vertex@db.internal:5432/vertex",
         DatabaseUrl("postgresql://vertex@db.internal:5432/vertex")),
        (" postgres://u:p%40ss@[::1]/vt?sslmode=require ",
         DatabaseUrl("postgres://u:p%40ss@[::1]/vt?sslmode=require")),
        ("postgresql:///vertex", DatabaseUrl("postgresql:///vertex")),  # the local socket
        ("postgresql://u@db1:5432,db2:5433/vt?target_session_attrs=read-write",
         DatabaseUrl("postgresql://u@db1:5432,db2:5433/vt?target_session_attrs=read-write")),
        ("", None),  # set but empty: SQLite, as when unset
    ],
    "VERTEX_DATABASE_CONNECT_TIMEOUT": [("5", 5.0), ("0.5", 0.5)],
    "VERTEX_BACKUP_DIR_SHARED": [("yes", True), ("0", False)],
    "VERTEX_PG_BIN": [("/usr", Path("/usr")), ("", None)],
    "VERTEX_DB_PATH": [
        ("/var/lib/vertex/v.db", Path("/var/lib/vertex/v.db")),
        (" x.db ", Path("x.db")),
    ],
    "VERTEX_STORAGE_DIR": [("/srv/media", Path("/srv/media"))],
    "VERTEX_BACKUP_DIR": [("bk", Path("bk"))],
    "VERTEX_TIMEZONE": [
        ("Europe/Berlin", "Europe/Berlin"),
        ("America/New_York", "America/New_York"),
    ],
    "VIDEO_SCHEDULER_ENABLED": [("false", False), ("Yes", True), ("0", False), (" ON ", True)],
    "VIDEO_SCHEDULER_CHECK_INTERVAL": [("1", 1), ("86400", 86400), (" 60 ", 60)],
    "VIDEO_SCHEDULER_ROTATION_INTERVAL": [("1", 1), ("7200", 7200)],
    "VIDEO_SCHEDULER_ARCHIVE_AFTER_HOURS": [("0", 0), ("24", 24)],
    "VIDEO_SCHEDULER_NOTIFICATIONS_ENABLED": [("no", False), ("TRUE", True)],
    "LIFECYCLE_SCHEDULER_ENABLED": [("off", False), ("1", True)],
    "LIFECYCLE_CHECK_INTERVAL_SECONDS": [("1", 1), ("86400", 86400)],
    "LIFECYCLE_NOTIFICATIONS_ENABLED": [("False", False)],
    "BACKUP_DATABASE_ENABLED": [("false", False)],
    "BACKUP_STORAGE_ENABLED": [("true", True)],
    "BACKUP_FULL_ENABLED": [("no", False)],
    "BACKUP_ROTATION_ENABLED": [("off", False)],
    "BACKUP_DATABASE_SCHEDULE": [("*/15 * * * *", "*/15 * * * *"), ("  0  1 * * * ", "0 1 * * *")],
    "BACKUP_STORAGE_SCHEDULE": [("30 3 * * mon-fri", "30 3 * * mon-fri")],
    "BACKUP_FULL_SCHEDULE": [("0 0 1 * *", "0 0 1 * *")],
    "BACKUP_ROTATION_SCHEDULE": [("59 23 * * 6", "59 23 * * 6")],
    "BACKUP_KEEP_LAST": [("1", 1), ("10000", 10000)],
    "BACKUP_KEEP_DAILY": [("0", 0), ("7", 7)],
    "BACKUP_KEEP_WEEKLY": [("4", 4)],
    "BACKUP_KEEP_MONTHLY": [("12", 12)],
    "BACKUP_MISFIRE_GRACE_SECONDS": [("1", 1), ("60", 60)],
    "BACKUP_WARN_AGE_HOURS": [("48", BackupAgeLimits(database=48, storage=48, full=48)),
                              ("full=200", BackupAgeLimits(full=200))],
    "BACKUP_DRILL_ENABLED": [("true", True)],
    "BACKUP_DRILL_SCHEDULE": [("0 5 1 * *", "0 5 1 * *")],
    "METRICS_PORT": [("9410", 9410), ("0", 0)],
    "METRICS_ADDRESS": [("0.0.0.0", "0.0.0.0"), ("::1", "::1")],
    "EMAIL_QUEUE_WORKERS": [("1", 1), ("64", 64)],
    "EMAIL_RETRY_MAX_ATTEMPTS": [("1", 1), ("100", 100)],
    "EMAIL_RETRY_DELAYS": [
        ("0.5,3", (0.5, 3.0)),
        ("0", (0.0,)),
        (" 1 , 2 ,4 ", (1.0, 2.0, 4.0)),
        ("60,300,3600", (60.0, 300.0, 3600.0)),
    ],
    "EMAIL_LEASE_SECONDS": [("5", 5), ("86400", 86400)],
    "EMAIL_POLL_INTERVAL": [("0.25", 0.25), ("5", 5.0)],
    "SMTP_HOST": [("smtp.example.com", "smtp.example.com"), ("127.0.0.1", "127.0.0.1")],
    "SMTP_PORT": [("1", 1), ("587", 587), ("65535", 65535)],
    "SMTP_USERNAME": [("mailer", "mailer"), ("", "")],
    "SMTP_PASSWORD": [("s3cr3t pass", Secret("s3cr3t pass"))],
    "SMTP_STARTTLS": [("auto", "auto"), ("TRUE", "true"), ("no", "false"), ("0", "false")],
    "SMTP_TLS": [("true", True), ("off", False)],
    "SMTP_TIMEOUT": [("0.5", 0.5), ("120", 120.0)],
    "EMAIL_FROM": [
        ("noreply@example.com", "noreply@example.com"),
        ("Vertex <noreply@example.com>", "Vertex <noreply@example.com>"),
    ],
    "NOTIFY_ADMIN_EMAIL": [("ops@example.com", "ops@example.com"), ("", None), ("  ", None)],
    "SMTP_CA_FILE": [("", None)],  # a real PEM file: test_smtp_tls.py
    "SMTP_HELO_NAME": [
        ("mail.example.com", "mail.example.com"),
        (" relay-01 ", "relay-01"),
        ("[192.0.2.1]", "[192.0.2.1]"),
        ("[IPv6:2001:db8::1]", "[IPv6:2001:db8::1]"),
        ("", None),
    ],
    "VERTEX_DATABASE_POOL_SIZE": [("2", 2), ("32", 32)],
}


def _cases(table: dict[str, list[str]]) -> list[object]:
    return [
        pytest.param(name, value, id=f"{name}={value!r}") for name in table for value in table[name]
    ]


@pytest.mark.parametrize(
    "table", [ALL_DEFAULTS, BAD_VALUES, GOOD_VALUES], ids=["defaults", "bad", "good"]
)
def test_every_variable_has_rows(table: dict[str, object]) -> None:
    assert set(table) == set(VARIABLE_NAMES)
    assert all(table[name] for name in VARIABLE_NAMES)


def test_every_variable_of_spec_is_read() -> None:
    assert set(SPEC_DEFAULTS) <= set(VARIABLE_NAMES)
    assert len(set(VARIABLE_NAMES)) == len(VARIABLE_NAMES)


@pytest.mark.parametrize("name", list(ALL_DEFAULTS))
def test_default_equals_spec(name: str) -> None:
    _, typed = ALL_DEFAULTS[name]
    assert getattr(Settings.from_env({}), FIELD[name]) == typed
    assert getattr(Settings(), FIELD[name]) == typed


@pytest.mark.parametrize("name", [n for n, (text, _) in ALL_DEFAULTS.items() if text is not None])
def test_spec_default_text_parses_to_the_default(name: str) -> None:
    text, typed = ALL_DEFAULTS[name]
    assert text is not None
    assert getattr(Settings.from_env({name: text}), FIELD[name]) == typed


def test_empty_environment_equals_constructed_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMAIL_QUEUE_WORKERS", "7")
    monkeypatch.setenv("EMAIL_RETRY_DELAYS", "0.5,3")
    settings = Settings.from_env()
    assert settings.email_workers == 7
    assert settings.email_retry_delays == (0.5, 3.0)


@pytest.mark.parametrize(("name", "raw"), _cases(BAD_VALUES))
def test_bad_value_is_refused_in_one_line_naming_variable_value_and_expectation(
    name: str, raw: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: raw})
    err = info.value
    message = str(err)
    assert isinstance(err, UsageError)  # the CLI's exit status 2
    assert "\n" not in message and "\r" not in message
    assert message.startswith(f"{name}=")
    assert err.variable == name
    if name == "SMTP_PASSWORD":
        assert err.value == "********"
        assert raw.strip() not in message
    else:
        assert err.value == raw
        assert repr(raw) in message
    assert "expected " in message
    assert err.expected.strip()
    assert message.endswith(err.expected)


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        pytest.param(name, raw, typed, id=f"{name}={raw!r}")
        for name, rows in GOOD_VALUES.items()
        for raw, typed in rows
    ],
)
def test_good_value_parses(name: str, raw: str, expected: object) -> None:
    settings = Settings.from_env({name: raw})
    assert getattr(settings, FIELD[name]) == expected
    # Nothing else moved.
    others = {f: getattr(Settings(), f) for f in FIELD.values() if f != FIELD[name]}
    assert {f: getattr(settings, f) for f in others} == others


def test_retry_delays_example_of_the_brief() -> None:
    assert Settings.from_env({"EMAIL_RETRY_DELAYS": "0.5,3"}).email_retry_delays == (0.5, 3.0)


def test_bad_value_among_good_ones_names_the_bad_one() -> None:
    env = {"SMTP_PORT": "587", "EMAIL_QUEUE_WORKERS": "zero", "SMTP_HOST": "mx.example.com"}
    with pytest.raises(ConfigError, match=r"^EMAIL_QUEUE_WORKERS='zero' is invalid"):
        Settings.from_env(env)


def test_unknown_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "SMTP_PORTT": "x"}) == Settings()


def test_tls_with_starttls_true_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SMTP_TLS": "true", "SMTP_STARTTLS": "true"})
    message = str(info.value)
    assert "SMTP_STARTTLS" in message and "SMTP_TLS" in message
    assert "\n" not in message


@pytest.mark.parametrize("starttls", ["auto", "false"])
def test_tls_with_starttls_auto_or_false_is_accepted(starttls: str) -> None:
    settings = Settings.from_env({"SMTP_TLS": "yes", "SMTP_STARTTLS": starttls})
    assert settings.smtp_tls is True
    assert settings.smtp_starttls == starttls


PASSWORD = "Sup3r-Secret-Pa55"


def test_password_never_shows_in_repr_str_or_describe() -> None:
    settings = Settings.from_env({"SMTP_PASSWORD": PASSWORD, "SMTP_USERNAME": "mailer"})
    assert settings.smtp_password.reveal() == PASSWORD
    assert PASSWORD not in repr(settings)
    assert PASSWORD not in str(settings)
    assert PASSWORD not in repr(settings.smtp_password)
    assert PASSWORD not in str(settings.smtp_password)
    assert PASSWORD not in f"{settings.smtp_password}"
    described = dict(settings.describe())
    assert described["SMTP_PASSWORD"] == "********"
    assert PASSWORD not in repr(settings.describe())
    assert described["SMTP_USERNAME"] == "mailer"


def test_unset_password_is_described_as_not_set() -> None:
    assert dict(Settings().describe())["SMTP_PASSWORD"] == "(not set)"
    assert not Settings().smtp_password


def test_describe_lists_every_variable_once_in_table_order() -> None:
    described = Settings().describe()
    assert [name for name, _ in described] == list(VARIABLE_NAMES)
    assert all(isinstance(v, str) and v and "\n" not in v for _, v in described)


def test_describe_of_defaults_shows_spec_texts() -> None:
    described = dict(Settings().describe())
    assert described["EMAIL_RETRY_DELAYS"] == "1,2,4,8,16"
    assert described["VIDEO_SCHEDULER_ENABLED"] == "true"
    assert described["BACKUP_STORAGE_ENABLED"] == "false"
    assert described["BACKUP_DATABASE_SCHEDULE"] == "0 2 * * *"
    assert described["NOTIFY_ADMIN_EMAIL"] == "(not set)"
    assert described["EMAIL_FROM"] == "Vertex AR <noreply@localhost>"


def test_describe_output_reads_back_to_the_same_settings() -> None:
    settings = Settings.from_env(
        {
            "EMAIL_RETRY_DELAYS": "0.5,3,120",
            "SMTP_TIMEOUT": "2.5",
            "VERTEX_TIMEZONE": "Europe/Berlin",
            "NOTIFY_ADMIN_EMAIL": "ops@example.com",
            "BACKUP_STORAGE_ENABLED": "yes",
        }
    )
    env = {
        name: value for name, value in settings.describe() if not value.startswith("(not set")
    }
    assert Settings.from_env(env) == settings


def test_secret_equality_and_hash_do_not_need_reveal() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
