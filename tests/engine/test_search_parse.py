"""The search language: a pure parser, table tests (good searches and bad terms)."""

from __future__ import annotations

import pytest

from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.search import JOB_KEYS, KEYS, LOG_KEYS, Query, SearchError, parse

GOOD = [
    ("mailbox", Query(text=("mailbox",))),
    ("  mailbox   unavailable ", Query(text=("mailbox", "unavailable"))),
    ('"mailbox unavailable"', Query(text=("mailbox unavailable",))),
    ("status:failed", Query(statuses=frozenset({"failed"}))),
    ("status:failed,pending", Query(statuses=frozenset({"failed", "pending"}))),
    ("STATUS:Cancelled", Query(statuses=frozenset({"cancelled"}))),
    ("status:failed,pending status:pending", Query(statuses=frozenset({"pending"}))),
    ("to:bob@example.com", Query(fields=(("to", "bob@example.com"),))),
    ('subject:"your invoice"', Query(fields=(("subject", "your invoice"),))),
    ("error:5.1.1", Query(fields=(("error", "5.1.1"),))),
    ("id:42", Query(ids=(42,))),
    ("id:#42", Query(ids=(42,))),
    ("id:9223372036854775807", Query(ids=(2**63 - 1,))),  # the largest id either backend holds
    ("older:2h", Query(older=7200.0)),
    ("newer:15m", Query(newer=900.0)),
    ("older:1d12h", Query(older=129_600.0)),
    ("newer:90s newer:1m", Query(newer=60.0)),
    ("older:1w", Query(older=604_800.0)),
    (
        'status:failed error:"mailbox unavailable" to:example.org bob newer:1h',
        Query(
            text=("bob",),
            fields=(("error", "mailbox unavailable"), ("to", "example.org")),
            statuses=frozenset({"failed"}),
            newer=3600.0,
        ),
    ),
    ("550 5.1.1: user", Query(text=("550", "5.1.1:", "user"))),  # a colon after digits is text
    ('"http://example.com"', Query(text=("http://example.com",))),
    ("", Query()),
]


@pytest.mark.parametrize(("source", "expected"), GOOD, ids=[s or "<empty>" for s, _ in GOOD])
def test_parse(source: str, expected: Query) -> None:
    assert parse(source) == expected


BAD = [
    ("from:bob", "unknown search term from:"),
    ("http://example.com", "unknown search term http:"),
    ("status:lost", "unknown status 'lost'"),
    ("status:", "status: needs a value"),
    ("to:", "to: needs a value"),
    ("id:abc", "id:abc: expected a job number"),
    ("id:-1", "id:-1: expected a job number"),
    ("id:\u00b2", "id:\u00b2: expected a job number"),  # a digit to str.isdigit, not to int()
    ("id:0", "id:0: expected a job number from 1 to 9223372036854775807"),
    ("id:9223372036854775808", "id:9223372036854775808: expected a job number from 1 to"),
    ("id:#9223372036854775808", "id:#9223372036854775808: expected a job number from 1 to"),
    ("id:" + "9" * 5000, "expected a job number from 1 to 9223372036854775807"),
    ("older:2x", "older:2x: expected a duration"),
    ("newer:h", "newer:h: expected a duration"),
    ('subject:"half open', "unterminated quote"),
    ('"a"b', "expected a space after the closing quote"),
    ('ab"c', "a quote inside a word"),
]


@pytest.mark.parametrize(("source", "message"), BAD, ids=[s for s, _ in BAD])
def test_bad_terms_are_one_clear_line(source: str, message: str) -> None:
    with pytest.raises(SearchError) as caught:
        parse(source)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text
    assert isinstance(caught.value, UsageError)  # the CLI turns it into exit 2


def test_empty_query() -> None:
    assert parse("  ").empty
    assert not parse("older:1h").empty


ROW = ["17", "failed", "Backup finished", "550 mailbox unavailable"]


@pytest.mark.parametrize(
    ("source", "matches"),
    [
        ("mailbox", True),
        ("MAILBOX", True),
        ('"mailbox unavailable"', True),
        ('"unavailable mailbox"', False),
        ("backup mailbox", True),
        ("backup nothing", False),
        ("status:failed", True),
        ("status:sent", False),
        ("id:17", True),
        ("id:18", False),
        ("newer:1h", True),
        ("older:1h", False),
    ],
)
def test_in_memory_match(source: str, matches: bool) -> None:
    assert parse(source).matches(ROW, status="failed", row_id=17, age=600.0) is matches


def test_terms_a_table_cannot_answer_are_refused() -> None:
    query = parse("to:bob status:ok", statuses=("ok", "failed"))
    with pytest.raises(SearchError, match="to: does not apply to the backups table"):
        query.check_applies(("status",), "the backups table")
    parse("status:ok x", statuses=None).check_applies(("status",), "the backups table")


# ---- the Log screen's and the Jobs screen's terms ---------------------------------------------

SERVICES = ("email", "backup", "lifecycle", "video", "engine")
LOG_GOOD = [
    ("rotated", Query(text=("rotated",))),
    ("service:email", Query(services=frozenset({"email"}))),
    ("service:Email,BACKUP", Query(services=frozenset({"email", "backup"}))),
    ("service:email,backup service:backup", Query(services=frozenset({"backup"}))),
    ("level:warning", Query(level=30)),
    ("level:ERROR", Query(level=40)),
    ("level:debug level:warning", Query(level=30)),  # both hold: the stricter
    ("older:2h newer:1d", Query(older=7200.0, newer=86_400.0)),
    ('service:backup level:error "disk full"',
     Query(text=("disk full",), services=frozenset({"backup"}), level=40)),
]


@pytest.mark.parametrize(("source", "expected"), LOG_GOOD, ids=[s for s, _ in LOG_GOOD])
def test_parse_log_terms(source: str, expected: Query) -> None:
    query = parse(source, keys=LOG_KEYS, services=SERVICES)
    assert query == expected
    assert not query.empty


JOB_GOOD = [
    ("backup", Query(text=("backup",))),
    ("paused:yes", Query(paused=True)),
    ("paused:NO", Query(paused=False)),
    ("paused:yes paused:yes service:video", Query(paused=True,
                                                   services=frozenset({"video"}))),
    ("service:anything", Query(services=frozenset({"anything"}))),  # services=None: any name
]


@pytest.mark.parametrize(("source", "expected"), JOB_GOOD, ids=[s for s, _ in JOB_GOOD])
def test_parse_job_terms(source: str, expected: Query) -> None:
    assert parse(source, statuses=None, keys=JOB_KEYS) == expected


TABLE_BAD = [
    (LOG_KEYS, "service:mail", "service:mail: unknown service 'mail' (one of email, backup,"),
    (LOG_KEYS, "service:", "service: needs a value, e.g. service:email"),
    (LOG_KEYS, "level:loud", "level:loud: unknown level 'loud' (one of debug, info, warning, "
                             "error)"),
    (LOG_KEYS, "level:info,error", "level:info,error: one level, e.g. level:warning"),
    (LOG_KEYS, "status:failed", "unknown search term status: (use service:, level:, older:, "
                                "newer:;"),
    (LOG_KEYS, "paused:yes", "unknown search term paused:"),
    (LOG_KEYS, "newer:soon", "newer:soon: expected a duration"),
    (JOB_KEYS, "paused:maybe", "paused:maybe: expected yes or no"),
    (JOB_KEYS, "paused:yes paused:no", "paused:yes and paused:no together match nothing"),
    (JOB_KEYS, "level:error", "unknown search term level: (use service:, paused:;"),
    (KEYS, "service:email", "unknown search term service: (use status:, to:,"),  # email: no
]


@pytest.mark.parametrize(("keys", "source", "message"), TABLE_BAD,
                         ids=[f"{k[0]}-{s}" for k, s, _ in TABLE_BAD])
def test_bad_table_terms_are_one_clear_line(keys: tuple[str, ...], source: str,
                                            message: str) -> None:
    with pytest.raises(SearchError) as caught:
        parse(source, statuses=None, keys=keys, services=SERVICES)
    assert str(caught.value).startswith(message) or message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("source", "matches"),
    [
        ("check", True),
        ("service:video", True),
        ("service:email,video", True),
        ("service:email", False),
        ("paused:yes", True),
        ("paused:no", False),
        ("service:video paused:no", False),
        ("email", False),
    ],
)
def test_in_memory_match_of_a_job(source: str, matches: bool) -> None:
    query = parse(source, statuses=None, keys=JOB_KEYS)
    named = {"service": "video", "paused": "yes"}
    assert query.matches(["video.check", "video"], named=named) is matches
