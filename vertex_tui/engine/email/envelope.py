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

import functools
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


@functools.lru_cache(maxsize=64)
def _mailbox(sender: str) -> str:
    """The address of a From value (`"Name" <addr>` -> `addr`); the same few senders recur."""
    return parseaddr(sender)[1] or sender


_ADDRESS_NAMES = frozenset(name.lower() for name in ADDRESS_HEADERS)


def _all_ascii(sender: str, recipients: tuple[str, ...], message: EmailMessage) -> bool:
    """Whether no address of the envelope or of the address headers can hold a non-ASCII
    character: all ASCII, and no encoded-word (`=?`), which the header parser would decode.
    Read from the headers as stored (`raw_items`: the value as set, or a parsed header
    whose text is the decoded value), without parsing them."""
    if not sender.isascii() or not all(r.isascii() for r in recipients):
        return False
    return all(
        value.isascii() and "=?" not in value
        for name, value in message.raw_items()
        if name.lower() in _ADDRESS_NAMES
    )


def _first_utf8_local(addresses: Iterable[str]) -> str | None:
    return next((a for a in addresses if not _split(a)[0].isascii()), None)


def prepare_envelope(
    sender: str, recipients: Iterable[str], message: EmailMessage
) -> Envelope:
    """The envelope for `message`; when it needs no SMTPUTF8, its address headers are
    rewritten in place with A-label domains (the message is built afresh for each attempt).

    `sender` may be a whole From value (`EMAIL_FROM`, `"Name" <addr>`): only its address goes
    into MAIL FROM, so a non-ASCII display name never asks the relay for SMTPUTF8."""
    sender = _mailbox(sender)
    recipients = tuple(recipients)
    if _all_ascii(sender, recipients, message):
        # Nothing to ask SMTPUTF8 for and no domain to rewrite: what the parse below would
        # conclude, without parsing the headers again (~220 us a message, as much as
        # building it).
        return Envelope(sender=sender, recipients=recipients, needs_utf8=None)
    return parsed_envelope(sender, recipients, message)


def parsed_envelope(
    sender: str, recipients: tuple[str, ...], message: EmailMessage
) -> Envelope:
    """`prepare_envelope` from the parsed address headers (`sender`: an address)."""
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
