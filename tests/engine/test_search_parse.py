"""The search language: a pure parser, table tests (good searches and bad terms)."""

from __future__ import annotations

import pytest

from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.search import Query, SearchError, parse

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
