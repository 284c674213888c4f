"""Validation at enqueue time (`prepare`) and the `EmailMessage` built at send time."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from vertex_tui.engine.email.message import (
    MAX_SUBJECT,
    RESERVED_HEADERS,
    MessageIds,
    build_message,
    parse_address,
    prepare,
)
from vertex_tui.engine.errors import InvalidMessage, UsageError


def _prepare(**overrides: Any) -> Any:
    fields: dict[str, Any] = {"to": "a@example.com", "subject": "Hello", "body": "Hi."}
    fields.update(overrides)
    return prepare(**fields)


# --- recipients that are accepted ---------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "recipients", "to_header"),
    [
        ("a@example.com", ("a@example.com",), "a@example.com"),
        ("  a@example.com  ", ("a@example.com",), "a@example.com"),
        ("Name <a@b.com>", ("a@b.com",), "Name <a@b.com>"),
        ("Jöhn Dœ <j@example.org>", ("j@example.org",), "Jöhn Dœ <j@example.org>"),
        ('"Doe, John" <j@d.com>', ("j@d.com",), '"Doe, John" <j@d.com>'),
        (
            ["a@b.com", "Bob <c@d.org>"],
            ("a@b.com", "c@d.org"),
            "a@b.com, Bob <c@d.org>",
        ),
        (("x@y.org",), ("x@y.org",), "x@y.org"),
        (
            "a@b.com, Bob <c@d.org>",
            ("a@b.com", "c@d.org"),
            "a@b.com, Bob <c@d.org>",
        ),
        (
            '"Smith, J." <j@d.com>, k@d.com',
            ("j@d.com", "k@d.com"),
            '"Smith, J." <j@d.com>, k@d.com',
        ),
        ("first.last+tag@sub.example.co.uk", ("first.last+tag@sub.example.co.uk",), None),
        ("root@localhost", ("root@localhost",), "root@localhost"),
        ("<a@b.com>", ("a@b.com",), "<a@b.com>"),
        ("ops@[192.0.2.1]", ("ops@[192.0.2.1]",), "ops@[192.0.2.1]"),
        ("ops@[IPv6:2001:db8::1]", ("ops@[IPv6:2001:db8::1]",), None),
        ("anna@bücher.example", ("anna@bücher.example",), None),
        ("x-1@a-b.example.com", ("x-1@a-b.example.com",), None),
    ],
)
def test_good_recipients(to: Any, recipients: tuple[str, ...], to_header: str | None) -> None:
    prepared = _prepare(to=to)
    assert prepared.recipients == recipients
    if to_header is not None:
        assert prepared.to_header == to_header


def test_recipients_generator_is_accepted() -> None:
    prepared = _prepare(to=(a for a in ["a@b.com", "c@d.com"]))
    assert prepared.recipients == ("a@b.com", "c@d.com")


# --- recipients that are refused ------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "pattern"),
    [
        ("bad", r"invalid .*'bad'"),
        ("a@", r"invalid .*'a@'"),
        ("@b.com", r"invalid .*'@b.com'"),
        ("a b@c.com", r"invalid .*'a b@c.com'"),
        ("Name <a b@c.com>", r"invalid .*a b@c.com"),
        ("a@b..com", r"invalid .*a@b..com"),
        ("a@.b.com", r"invalid .*a@.b.com"),
        ("a@b.com.", r"invalid .*a@b.com."),
        ("a@b@c.com", r"invalid .*a@b@c.com"),
        ("", r"invalid recipient"),
        ("<>", r"invalid recipient"),
        ("a@b.com,,", r"invalid recipient"),
        ("a@b.com;c@d.com", r"invalid recipient"),
        ("a@b.com, bad", r"invalid email address: 'bad'"),
        (["a@b.com", "bad"], r"invalid email address: 'bad'"),
        ([], r"no recipient"),
        # What the default policy would send malformed, or a host name cannot be.
        ("Name <a@b.com", r"invalid .*'Name <a@b.com'"),
        ("a@b.com>", r"invalid .*'a@b.com>'"),
        ("Name <a@b.com> junk", r"invalid .*junk"),
        ("Doe, John <j@d.com>", r"invalid email address: 'Doe'"),
        (["ok@b.com", "Name <a@b.com"], r"invalid recipient list"),
        ("a@-b.com", r"invalid .*a@-b.com"),
        ("a@b-.com", r"invalid .*a@b-.com"),
        ("a@b_c.com", r"invalid .*a@b_c.com"),
        ("a@b", r"invalid .*'a@b'"),
        ("a@[1.2.3]", r"invalid .*a@\[1.2.3\]"),
        ("a@" + "x" * 64 + ".com", r"invalid"),
    ],
)
def test_bad_recipients_are_refused_naming_the_culprit(to: Any, pattern: str) -> None:
    with pytest.raises(InvalidMessage, match=pattern):
        _prepare(to=to)


@pytest.mark.parametrize(
    ("to", "type_name"),
    [(5, "int"), (None, "NoneType"), (b"a@b.com", "bytes"), ({"a@b.com": 1}, "dict"), ([1], "int")],
)
def test_recipients_of_the_wrong_type_are_refused(to: Any, type_name: str) -> None:
    with pytest.raises(InvalidMessage, match=type_name):
        _prepare(to=to)


@pytest.mark.parametrize(
    "to",
    [
        "a@b.com\r\nBcc: victim@example.com",
        "a@b.com\nBcc: victim@example.com",
        "a@b.com\r",
        "Name\r\n <a@b.com>",
        ["ok@b.com", "a@b.com\nBcc: victim@example.com"],
    ],
)
def test_line_break_in_recipient_is_refused(to: Any) -> None:
    with pytest.raises(InvalidMessage, match=r"line break"):
        _prepare(to=to)


def test_parse_address_returns_the_addr_spec() -> None:
    assert parse_address("Name <a@b.com>") == "a@b.com"
    assert parse_address(" a@b.com ") == "a@b.com"
    with pytest.raises(InvalidMessage, match="line break"):
        parse_address("a@b.com\n")


# --- subject, body, html ----------------------------------------------------------------------


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: victim@example.com", "Hi\nthere", "Hi\r", "\n"])
def test_line_break_in_subject_is_refused(subject: str) -> None:
    with pytest.raises(InvalidMessage, match=r"Subject contains a line break"):
        _prepare(subject=subject)


def test_subject_length_limit() -> None:
    assert _prepare(subject="x" * MAX_SUBJECT).subject == "x" * MAX_SUBJECT
    with pytest.raises(InvalidMessage, match=str(MAX_SUBJECT)):
        _prepare(subject="x" * (MAX_SUBJECT + 1))


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("subject", None, "subject must be a string"),
        ("subject", 42, "subject must be a string"),
        ("body", None, "body must be a string"),
        ("body", b"bytes", "body must be a string"),
        ("html", 1, "html must be a string"),
    ],
)
def test_non_string_fields_are_refused(field: str, value: Any, pattern: str) -> None:
    with pytest.raises(InvalidMessage, match=pattern):
        _prepare(**{field: value})


def test_body_may_hold_line_breaks_and_html_is_kept() -> None:
    prepared = _prepare(body="line 1\r\nline 2\n", html="<p>hi</p>")
    assert prepared.body == "line 1\r\nline 2\n"
    assert prepared.html == "<p>hi</p>"


# --- extra headers ----------------------------------------------------------------------------


def test_extra_headers_are_kept_and_serialized() -> None:
    prepared = _prepare(headers={"X-Campaign": "spring", "Reply-To": "help@example.com"})
    assert dict(prepared.headers) == {"X-Campaign": "spring", "Reply-To": "help@example.com"}
    assert '"X-Campaign": "spring"' in prepared.headers_json()
    assert _prepare().headers_json() == "{}"


@pytest.mark.parametrize(
    "name",
    [
        "From",
        "from",
        "TO",
        "Cc",
        "Bcc",
        "Subject",
        "Message-ID",
        "message-id",
        "Date",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
    ],
)
def test_reserved_headers_are_refused(name: str) -> None:
    assert name.lower() in RESERVED_HEADERS
    with pytest.raises(InvalidMessage, match=rf"header {re.escape(name)} is set by the queue"):
        _prepare(headers={name: "x@example.com"})


@pytest.mark.parametrize("value", ["a\r\nBcc: victim@example.com", "a\nb", "a\r", "\r\n"])
def test_line_break_in_header_value_is_refused(value: str) -> None:
    with pytest.raises(InvalidMessage, match=r"header X-Tag contains a line break"):
        _prepare(headers={"X-Tag": value})


# C0 controls but tab (and CR/LF, refused as line breaks), and DEL.
CONTROLS = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F)]


@pytest.mark.parametrize("char", CONTROLS, ids=[f"U+{ord(c):04X}" for c in CONTROLS])
@pytest.mark.parametrize(
    ("where", "what"),
    [
        ("subject", "Subject"),
        ("display name", "To"),
        ("header", "header X-Tag"),
        ("address header", "header Reply-To"),
    ],
)
def test_control_characters_in_header_values_are_refused(char: str, where: str, what: str) -> None:
    value = f"Hello{char}there"
    fields: dict[str, Any] = {
        "subject": {"subject": value},
        "display name": {"to": f'"{value}" <a@example.com>'},
        "header": {"headers": {"X-Tag": value}},
        "address header": {"headers": {"Reply-To": f'"{value}" <help@example.com>'}},
    }[where]
    with pytest.raises(InvalidMessage) as info:
        _prepare(**fields)
    message = str(info.value)
    assert message.startswith(f"{what} contains a ")
    assert "line break" in message or f"control character (U+{ord(char):04X})" in message
    assert "\n" not in message and char not in message  # one printable line


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f"])
def test_control_characters_in_a_recipient_list_item_name_the_to_header(char: str) -> None:
    with pytest.raises(InvalidMessage, match=r"^To contains a control character"):
        _prepare(to=["ok@example.com", f"Bad{char}Name <b@example.com>"])


def test_tab_and_non_ascii_text_in_header_values_are_accepted() -> None:
    prepared = _prepare(
        to='"Tab\tName Ünï" <a@example.com>',
        subject="Tab\there, ünïcödé, 日本語, emoji 🙂, NBSP\u00a0and soft hyphen\u00ad",
        headers={"X-Tag": "a\tb"},
    )
    assert prepared.subject.startswith("Tab\there")
    assert prepared.headers["X-Tag"] == "a\tb"


@pytest.mark.parametrize("name", ["X Tag", "X-Tag:", "", "X-Tä", "X\nTag", 5])
def test_bad_header_names_are_refused(name: Any) -> None:
    with pytest.raises(InvalidMessage, match=r"invalid header name"):
        _prepare(headers={name: "v"})


@pytest.mark.parametrize("value", [5, None, b"v", ["v"]])
def test_non_string_header_values_are_refused(value: Any) -> None:
    with pytest.raises(InvalidMessage, match=r"header X-Tag must be a string"):
        _prepare(headers={"X-Tag": value})


def test_invalid_message_is_a_usage_error_with_one_line() -> None:
    with pytest.raises(InvalidMessage) as info:
        _prepare(to="a@b.com\r\nBcc: victim@example.com")
    assert isinstance(info.value, UsageError)
    assert "\n" not in str(info.value) and "\r" not in str(info.value)


# --- build_message ----------------------------------------------------------------------------

CREATED = 1_800_000_000.0


def _build(**overrides: Any) -> EmailMessage:
    fields: dict[str, Any] = {
        "sender": "Vertex AR <noreply@vertex.example>",
        "to_header": "Name <a@b.com>, c@d.org",
        "subject": "Your subscription",
        "body": "Plain body\n",
        "html": None,
        "headers": {},
        "message_id": "<abc.1@vertex.example>",
        "created_at": CREATED,
    }
    fields.update(overrides)
    return build_message(**fields)


def test_build_message_sets_the_standard_headers() -> None:
    msg = _build(headers={"X-Campaign": "spring", "Reply-To": "help@vertex.example"})
    assert isinstance(msg, EmailMessage)
    # The default policy but for its header registry (one that caches header classes).
    policy, default = msg.policy, email.policy.default
    for name in ("linesep", "max_line_length", "utf8", "cte_type", "refold_source",
                 "raise_on_defect", "mangle_from_", "message_factory"):
        assert getattr(policy, name) == getattr(default, name), name
    assert isinstance(policy.header_factory, HeaderRegistry)
    assert msg["From"] == "Vertex AR <noreply@vertex.example>"
    assert msg["To"] == "Name <a@b.com>, c@d.org"
    assert msg["Subject"] == "Your subscription"
    assert msg["Message-ID"] == "<abc.1@vertex.example>"
    assert parsedate_to_datetime(msg["Date"]) == datetime.fromtimestamp(CREATED, UTC)
    assert msg["X-Campaign"] == "spring"
    assert msg["Reply-To"] == "help@vertex.example"
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content() == "Plain body\n"


def test_build_message_with_html_is_multipart_alternative() -> None:
    msg = _build(html="<p>Hello <b>there</b></p>")
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content() == "Plain body\n"
    assert "<p>Hello <b>there</b></p>" in parts[1].get_content()
    assert msg.get_body(preferencelist=("html",)) is parts[1]


def test_build_message_round_trips_through_bytes_with_non_ascii() -> None:
    msg = _build(subject="Привет, мир", body="Grüße\n", to_header="Jöhn <j@example.org>")
    parsed = email.message_from_bytes(bytes(msg), policy=email.policy.default)
    assert parsed["Subject"] == "Привет, мир"
    assert parsed["Message-ID"] == "<abc.1@vertex.example>"
    assert parsed.get_content() == "Grüße\n"
    assert parsed["To"].addresses[0].addr_spec == "j@example.org"


def test_same_job_builds_the_same_message_id_and_date_every_time() -> None:
    first, second = _build(), _build()
    assert first["Message-ID"] == second["Message-ID"]
    assert first["Date"] == second["Date"]


def test_prepared_message_builds() -> None:
    prepared = _prepare(to=["Name <a@b.com>", "c@d.org"], headers={"X-Tag": "t"}, html="<i>x</i>")
    msg = _build(
        to_header=prepared.to_header,
        subject=prepared.subject,
        body=prepared.body,
        html=prepared.html,
        headers=prepared.headers,
    )
    assert [a.addr_spec for a in msg["To"].addresses] == list(prepared.recipients)
    assert msg["X-Tag"] == "t"


# --- MessageIds ------------------------------------------------------------------------------


def test_message_ids_are_unique_and_use_the_sender_domain() -> None:
    ids = MessageIds("Vertex AR <noreply@vertex.example>")
    other = MessageIds("Vertex AR <noreply@vertex.example>")
    made = [ids.next() for _ in range(1000)] + [other.next() for _ in range(1000)]
    assert len(set(made)) == len(made)
    for mid in made:
        assert re.fullmatch(r"<[^<>@\s]+@vertex\.example>", mid), mid


def test_message_id_of_a_bare_sender_and_of_one_without_domain() -> None:
    assert MessageIds("noreply@mail.example.org").next().endswith("@mail.example.org>")
    assert MessageIds("nobody").next().endswith("@localhost>")


def test_message_id_is_accepted_by_the_email_package() -> None:
    mid = MessageIds("noreply@vertex.example").next()
    msg = _build(message_id=mid)
    parsed = email.message_from_bytes(bytes(msg), policy=email.policy.default)
    assert parsed["Message-ID"] == mid
