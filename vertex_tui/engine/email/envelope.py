"""International addresses on the wire: when a message needs SMTPUTF8, and what it sends
without it.

The queue accepts international domain names and non-ASCII local parts (email/message.py).
They differ on the wire:

- A non-ASCII *domain* has an ASCII form (IDNA A-labels, `xn--...`) that every relay
  understands, so without a non-ASCII local part the envelope and the address headers go out
  with A-labels and no SMTPUTF8 is asked for: the message reaches relays (and next hops) that
  do not speak SMTPUTF8.
- A non-ASCII *local part* has no ASCII form: it needs SMTPUTF8 (RFC 6531). Such a message is
  sent with SMTPUTF8 and UTF-8 headers when the relay offers it; when it does not, the attempt
  fails permanently (asking again will not change the relay), instead of sending raw 8-bit
  headers or encoded words inside an address, which corrupt it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import parseaddr

# Headers whose addresses a reader replies to or the relay checks.
ADDRESS_HEADERS = ("From", "Sender", "Reply-To", "To", "Cc")


@dataclass(frozen=True, kw_only=True)
class Envelope:
    """What MAIL FROM / RCPT TO carry, and whether the transaction needs SMTPUTF8."""

    sender: str
    recipients: tuple[str, ...]
    needs_utf8: str | None  # the first address that has a non-ASCII local part


def _split(addr: str) -> tuple[str, str]:
    local, at, domain = addr.rpartition("@")
    return (local, domain) if at else (addr, "")


def ascii_domain(domain: str) -> str:
    """`domain` in IDNA A-labels (`пример.рф` → `xn--e1afmkfd.xn--p1ai`); ASCII unchanged."""
    if domain.isascii():
        return domain
    return domain.encode("idna").decode("ascii")


def ascii_address(addr: str) -> str:
    """`addr` with its domain in A-labels (its local part must already be ASCII)."""
    local, domain = _split(addr)
    return f"{local}@{ascii_domain(domain)}" if domain else addr


def _header_addresses(message: EmailMessage) -> list[Address]:
    found: list[Address] = []
    for name in ADDRESS_HEADERS:
        for header in message.get_all(name, []):
            found.extend(getattr(header, "addresses", ()))
    return found


def _first_utf8_local(addresses: Iterable[str]) -> str | None:
    return next((a for a in addresses if not _split(a)[0].isascii()), None)


def prepare_envelope(
    sender: str, recipients: Iterable[str], message: EmailMessage
) -> Envelope:
    """The envelope for `message`; when it needs no SMTPUTF8, its address headers are
    rewritten in place with A-label domains (the message is built afresh for each attempt).

    `sender` may be a whole From value (`EMAIL_FROM`, `"Name" <addr>`): only its address goes
    into MAIL FROM, so a non-ASCII display name never asks the relay for SMTPUTF8."""
    sender = parseaddr(sender)[1] or sender
    recipients = tuple(recipients)
    headers = _header_addresses(message)
    culprit = _first_utf8_local([sender, *recipients, *(a.addr_spec for a in headers)])
    if culprit is not None:
        return Envelope(sender=sender, recipients=recipients, needs_utf8=culprit)
    for name in ADDRESS_HEADERS:
        values = message.get_all(name, [])
        if not any(not a.domain.isascii() for h in values for a in getattr(h, "addresses", ())):
            continue
        del message[name]
        for header in values:
            message[name] = ", ".join(
                str(Address(display_name=a.display_name, username=a.username,
                            domain=ascii_domain(a.domain)))
                for a in getattr(header, "addresses", ())
            )
    return Envelope(
        sender=ascii_address(sender),
        recipients=tuple(ascii_address(r) for r in recipients),
        needs_utf8=None,
    )
