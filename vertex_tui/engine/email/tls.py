"""TLS and EHLO policy of the SMTP client, the way real relays do it.

- `SMTP_STARTTLS=auto` (the default) is *opportunistic* TLS (RFC 7435; Postfix's
  `smtp_tls_security_level = may`): STARTTLS when the relay offers it, the certificate not
  verified (an unauthenticated encrypted session beats plaintext, and a self-signed "snakeoil"
  certificate is what a stock relay has), plaintext only when STARTTLS is not offered.
- `SMTP_STARTTLS=true` and `SMTP_TLS=true` *require* TLS and verify the chain and the host name,
  against the system store or, when set, only against the CAs of `SMTP_CA_FILE`.
- `SMTP_STARTTLS=false` never starts TLS.

The EHLO name is `SMTP_HELO_NAME`, or else the host's FQDN; a FQDN that is `localhost` (the
usual result on a host whose name maps to 127.0.0.1 only) gives way to the host name, since
strict relays reject `EHLO localhost`.
"""

from __future__ import annotations

import re
import socket
import ssl
from enum import Enum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from vertex_tui.engine.email.message import valid_address_literal

if TYPE_CHECKING:
    from vertex_tui.engine.settings import Settings

_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class TlsMode(Enum):
    """How a session uses TLS."""

    OFF = "off"  # SMTP_STARTTLS=false
    OPPORTUNISTIC = "opportunistic"  # auto: STARTTLS when offered, not verified
    REQUIRED = "required"  # STARTTLS=true: STARTTLS or no session, verified
    IMPLICIT = "implicit"  # SMTP_TLS=true: TLS from the first byte, verified

    @property
    def verified(self) -> bool:
        return self in (TlsMode.REQUIRED, TlsMode.IMPLICIT)


def tls_mode(*, starttls: str, implicit: bool) -> TlsMode:
    """The mode for `SMTP_STARTTLS` (auto/true/false) and `SMTP_TLS`."""
    if implicit:
        return TlsMode.IMPLICIT
    return {"auto": TlsMode.OPPORTUNISTIC, "true": TlsMode.REQUIRED}.get(starttls, TlsMode.OFF)


def client_context(mode: TlsMode, ca_file: Path | None = None) -> ssl.SSLContext | None:
    """The client `SSLContext` for `mode` (None when TLS is off).

    Verified modes check the chain and the host name against `ca_file` when given (only
    those CAs: a private CA), else the system store. Opportunistic mode encrypts without
    checking who answers, as RFC 7435 describes.
    """
    if mode is TlsMode.OFF:
        return None
    if mode.verified:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def load_ca_file(path: Path) -> None:
    """Raise `ValueError` saying why `path` is not a readable PEM file of CA certificates."""
    expected = "a PEM file of CA certificates"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{expected} (no such file)") from None
    except IsADirectoryError:
        raise ValueError(f"{expected} (it is a directory)") from None
    except PermissionError:
        raise ValueError(f"{expected} (not readable: permission denied)") from None
    except OSError as exc:
        raise ValueError(f"{expected} (cannot read it: {exc.strerror})") from None
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError(f"{expected} (no PEM certificate in it)")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(path))
    except (ssl.SSLError, ValueError) as exc:
        raise ValueError(f"{expected} (unusable: {exc})") from None


def valid_host_name(name: str) -> bool:
    """An ASCII host name (letters, digits, inner hyphens; dot-separated labels) or an
    address literal such as [192.0.2.1]: what RFC 5321 allows after EHLO."""
    if name.startswith("[") and name.endswith("]"):
        return valid_address_literal(name)
    name = name[:-1] if name.endswith(".") else name
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


def _is_localhost(name: str) -> bool:
    first = name.lower().rstrip(".").split(".")[0]
    return first in ("localhost", "localhost4", "localhost6", "ip6-localhost", "ip6-loopback")


def choose_helo_name(fqdn: str, hostname: str) -> str:
    """The default EHLO name: the FQDN, else the host name when the FQDN is a localhost
    name (or not a valid host name), else `localhost` as the last resort."""
    for candidate in (fqdn.strip(), hostname.strip()):
        if candidate and not _is_localhost(candidate) and valid_host_name(candidate):
            return candidate.rstrip(".")
    return "localhost"


@cache
def default_helo_name() -> str:
    """`choose_helo_name` for this host (looked up once: `getfqdn` may ask DNS)."""
    return choose_helo_name(socket.getfqdn(), socket.gethostname())


def helo_name(settings: Settings) -> str:
    """The name sent in EHLO: `SMTP_HELO_NAME`, or the host's default."""
    return settings.smtp_helo_name or default_helo_name()
