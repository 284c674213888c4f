"""Validation of outgoing mail at enqueue time, and building the `EmailMessage` at send time.

Addresses are parsed with the stdlib `email` package; a strict addr-spec pattern is a fast
path for the common case (it accepts only strings the stdlib parser also reads as exactly that
address). CR or LF in any header value is refused: header injection is not a delivery problem
to discover at 3 a.m., it is bad input.
"""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, parseaddr
from typing import Any

from vertex_tui.engine.clock import to_datetime
from vertex_tui.engine.errors import InvalidMessage

_LABEL_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # one host-name label
_LABEL = re.compile(f"^{_LABEL_PATTERN}$")
_SIMPLE_ADDR = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    rf"@{_LABEL_PATTERN}(?:\.{_LABEL_PATTERN})+$"
)
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")  # printable ASCII without ':' or space
# Headers the queue sets itself; callers may not override them.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "message-id",
        "date",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)
MAX_SUBJECT = 998


@dataclass(frozen=True, kw_only=True)
class PreparedEmail:
    """A validated message, ready to store."""

    recipients: tuple[str, ...]
    to_header: str
    subject: str
    body: str
    html: str | None
    headers: Mapping[str, str]

    def headers_json(self) -> str:
        return json.dumps(dict(self.headers), ensure_ascii=False) if self.headers else "{}"


def _no_crlf(what: str, value: str) -> None:
    # splitlines() also breaks on \v \f \x1c-\x1e \x85 \u2028 \u2029, which the email
    # package refuses in a header at send time: refuse them here, at enqueue.
    if "\r" in value or "\n" in value or len(value.splitlines()) > 1:
        raise InvalidMessage(f"{what} contains a line break (CR/LF): {value[:60]!r}")
    _utf8(what, value)


def _utf8(what: str, value: str) -> None:
    """Refuse text that cannot be stored or sent as UTF-8 (an unpaired surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidMessage(f"{what} is not valid Unicode text (unpaired surrogate)") from None


def valid_domain(domain: str) -> bool:
    """A host name of letters, digits and inner hyphens (international names through
    IDNA), at least two labels unless `localhost`; or an address literal like [192.0.2.1]."""
    if domain.startswith("[") and domain.endswith("]"):
        literal = domain[1:-1]
        literal = literal[5:] if literal[:5].lower() == "ipv6:" else literal
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            return False
        return True
    try:
        ascii_name = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        return False
    labels = ascii_name.split(".")
    if len(ascii_name) > 253 or (len(labels) < 2 and ascii_name.lower() != "localhost"):
        return False
    return all(_LABEL.match(label) for label in labels)


def _addr_spec(addr: str, shown: str) -> str:
    local, at, domain = addr.rpartition("@")
    if not at or not local or " " in addr or "@" in local.strip('"') or not valid_domain(domain):
        raise InvalidMessage(f"invalid email address: {shown!r}")
    return addr


def _header_addresses(value: str) -> list[str]:
    """The addr-specs of a To-style header as the default policy parses it; a header it finds
    defects in (an unclosed '<', text after the address, an unquoted comma in a name, ...)
    is refused, since it would go out malformed."""
    header = policy.default.header_factory("To", value)
    if header.defects or not header.addresses:
        raise InvalidMessage(f"invalid recipient list: {value!r}")
    return [_addr_spec(a.addr_spec, a.addr_spec) for a in header.addresses]


def parse_address(value: str) -> str:
    """The addr-spec of one address ('Name <a@b>' or 'a@b'), or `InvalidMessage`."""
    _no_crlf("address", value)
    value = value.strip()
    if _SIMPLE_ADDR.match(value):
        return value
    if "<" not in value and ">" not in value:
        return _addr_spec(parseaddr(value)[1] if '"' in value else value, value)
    try:
        addresses = _header_addresses(value)
    except InvalidMessage:
        raise InvalidMessage(f"invalid email address: {value!r}") from None
    if len(addresses) != 1:
        raise InvalidMessage(f"invalid email address: {value!r} (one address expected)")
    return addresses[0]


def parse_recipients(to: str | Iterable[str]) -> tuple[tuple[str, ...], str]:
    """Recipients' addr-specs and the To header, from a string (comma-separated) or a list."""
    if isinstance(to, str):
        items = [to]
    elif isinstance(to, Iterable) and not isinstance(to, (bytes, Mapping)):
        items = list(to)
    else:
        raise InvalidMessage(f"recipients must be a string or a list, not {type(to).__name__}")
    if not items:
        raise InvalidMessage("no recipient given")
    for item in items:
        if not isinstance(item, str):
            raise InvalidMessage(f"recipient must be a string, not {type(item).__name__}")
        _no_crlf("To", item)
    if len(items) == 1 and _SIMPLE_ADDR.match(items[0].strip()):
        addr = items[0].strip()
        return (addr,), addr
    pairs = getaddresses(items)
    if not pairs or any(not addr for _, addr in pairs):
        raise InvalidMessage(f"invalid recipient list: {', '.join(items)!r}")
    # Each address by itself first, to name the culprit; then the To header as a whole, as
    # the message will carry it.
    for _, addr in pairs:
        _addr_spec(addr, addr)
    to_header = ", ".join(i.strip() for i in items)
    return tuple(_header_addresses(to_header)), to_header


def prepare(
    *,
    to: str | Iterable[str],
    subject: str,
    body: str,
    html: str | None = None,
    headers: Mapping[str, Any] | None = None,
) -> PreparedEmail:
    """Validate one message; raises `InvalidMessage` naming the problem."""
    recipients, to_header = parse_recipients(to)
    if not isinstance(subject, str):
        raise InvalidMessage("subject must be a string")
    _no_crlf("Subject", subject)
    if len(subject) > MAX_SUBJECT:
        raise InvalidMessage(f"subject is longer than {MAX_SUBJECT} characters")
    if not isinstance(body, str):
        raise InvalidMessage("body must be a string")
    _utf8("body", body)
    if html is not None and not isinstance(html, str):
        raise InvalidMessage("html must be a string")
    if html is not None:
        _utf8("html", html)
    extra: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if not isinstance(name, str) or not _HEADER_NAME.match(name):
            raise InvalidMessage(f"invalid header name: {name!r}")
        if name.lower() in RESERVED_HEADERS:
            raise InvalidMessage(f"header {name} is set by the queue and cannot be given")
        if not isinstance(value, str):
            raise InvalidMessage(f"header {name} must be a string")
        _no_crlf(f"header {name}", value)
        extra[name] = value
    return PreparedEmail(
        recipients=recipients,
        to_header=to_header,
        subject=subject,
        body=body,
        html=html,
        headers=extra,
    )


class MessageIds:
    """Message-IDs unique across processes: a random prefix per generator and a counter."""

    def __init__(self, sender: str) -> None:
        _, at, domain = parseaddr(sender)[1].rpartition("@")
        domain = domain if at and domain else "localhost"
        self._suffix = f"@{domain}>"
        self._prefix = f"<{uuid.uuid4().hex}."
        self._n = 0

    def next(self) -> str:
        self._n += 1
        return f"{self._prefix}{self._n}{self._suffix}"


def build_message(
    *,
    sender: str,
    to_header: str,
    subject: str,
    body: str,
    html: str | None,
    headers: Mapping[str, str],
    message_id: str,
    created_at: float,
) -> EmailMessage:
    """The `EmailMessage` (default policy) for a stored job; same Message-ID on every attempt."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to_header
    msg["Subject"] = subject
    msg["Date"] = format_datetime(to_datetime(created_at))  # type: ignore[arg-type]
    msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name] = value
    msg.set_content(body)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg
