"""The envelope's fast path (all ASCII: no header parsed) decides exactly what the full parse
of the address headers decides, and leaves the message byte for byte as the parse would."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import parseaddr

import pytest
from aiosmtplib.email import flatten_message

from vertex_tui.engine.email.envelope import parsed_envelope, prepare_envelope
from vertex_tui.engine.email.message import build_message

# (sender, recipients, To header, extra headers)
CASES = [
    ("Bench <bench@example.com>", ("a@example.com",), "a@example.com", {}),
    ("noreply@vertex.test", ("a@example.com", "b@example.org"),
     "Alice <a@example.com>, \"Doe, B.\" <b@example.org>", {}),
    ("Vertex <noreply@vertex.test>", ("a@example.com",), "a@example.com",
     {"Reply-To": "Support <help@vertex.test>", "Sender": "ops@vertex.test"}),
    ("Vértex AR <noreply@vertex.test>", ("a@example.com",), "Ærøskøbing <a@example.com>", {}),
    ("noreply@vertex.test", ("ivan@пример.рф",), "Иван <ivan@пример.рф>", {}),
    ("noreply@vertex.test", ("a@example.com",), "a@example.com",
     {"Reply-To": "Jöran <jöran@example.com>"}),
    ("noreply@vertex.test", ("jöran@exämple.com",), "jöran@exämple.com", {}),
    ("rückmeldung@vertex.test", ("a@example.com",), "a@example.com", {}),
    # ASCII on the wire, but an encoded-word the parser may decode inside an address
    ("noreply@vertex.test", ("a@example.com",), "a@example.com",
     {"Reply-To": "=?utf-8?q?j=C3=B6ran?=@example.com"}),
    ("noreply@vertex.test", ("a@example.com",), "a@example.com",
     {"Reply-To": "=?utf-8?q?J=C3=B6ran?= <help@xn--e1afmkfd.xn--p1ai>"}),
    ("noreply@vertex.test", ("a@example.com",), "undisclosed-recipients:;", {}),
]


def _message(sender: str, to_header: str, headers: dict[str, str]) -> EmailMessage:
    return build_message(sender=sender, to_header=to_header, subject="s", body="b\n",
                         html=None, headers=headers, message_id="<1.2@vertex.test>",
                         created_at=1_800_000_000.0)


@pytest.mark.parametrize(("sender", "recipients", "to_header", "headers"), CASES)
def test_prepare_envelope_agrees_with_the_full_parse(
    sender: str, recipients: tuple[str, ...], to_header: str, headers: dict[str, str]
) -> None:
    fast_msg = _message(sender, to_header, headers)
    slow_msg = _message(sender, to_header, headers)
    fast = prepare_envelope(sender, recipients, fast_msg)
    slow = parsed_envelope(parseaddr(sender)[1] or sender, recipients, slow_msg)
    assert fast == slow
    utf8 = fast.needs_utf8 is not None
    assert flatten_message(fast_msg, utf8=utf8) == flatten_message(slow_msg, utf8=utf8)


def test_the_cases_cover_both_paths() -> None:
    """Some cases need SMTPUTF8, some rewrite a domain, some change nothing."""
    outcomes = set()
    for sender, recipients, to_header, headers in CASES:
        msg = _message(sender, to_header, headers)
        before = flatten_message(msg)
        env = prepare_envelope(sender, recipients, msg)
        rewritten = env.needs_utf8 is None and flatten_message(msg) != before
        outcomes.add("utf8" if env.needs_utf8 else "rewritten" if rewritten else "as is")
    assert outcomes == {"utf8", "rewritten", "as is"}
