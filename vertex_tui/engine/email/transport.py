"""SMTP delivery with aiosmtplib: one reused connection per worker, and error classification.

`classify()` is the pure part: it turns an aiosmtplib exception (or a partial refusal) into
an `Outcome`. 4xx replies and reply timeouts are transient; 5xx replies are permanent. A
failure of the relay itself (refused or reset connection, connect timeout, TLS handshake or
certificate failure, 421 at the greeting or after any command, a dropped session, a refused
EHLO, and a session that cannot log in: credentials refused, or `SMTP_USERNAME` set and the
relay offers no AUTH) is transient and marked `relay=True`: the queue pauses delivery for it
(`relay.py`) instead of charging the message. A login failure is the relay's configuration
or ours, never the message's: every message would meet it, so it is held, as Postfix defers
mail on a SASL failure (`smtp_sasl_auth_soft_bounce`), until an operator fixes it. A session
that answers 4xx twice in a row is dropped and the next message opens a fresh one.

aiosmtplib raises `SMTPRecipientsRefused` (no `.code`; the codes are on each item of
`.recipients`) when every recipient is refused, and *returns* a dict of refusals when
only some are: both are handled.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
from aiosmtplib.email import flatten_message

from vertex_tui.engine.email.envelope import prepare_envelope
from vertex_tui.engine.email.retry import Outcome
from vertex_tui.engine.email.tls import TlsMode, client_context, helo_name, tls_mode
from vertex_tui.engine.settings import Settings

log = logging.getLogger(__name__)

# A connection idle longer than this is checked with NOOP before it carries a message, so a
# server-side idle timeout does not cost a delivery attempt.
IDLE_CHECK_SECONDS = 10.0
# Consecutive 4xx replies after which a session is not trusted with another message.
SOFT_FAILURES_PER_SESSION = 2


@dataclass(frozen=True, kw_only=True)
class SendResult:
    """How one delivery attempt ended."""

    outcome: Outcome
    code: int | None = None
    error: str | None = None
    # Whether the SMTP session was encrypted; None: no session was established.
    encrypted: bool | None = None
    # The relay failed, not the message: see the module docstring and relay.py.
    relay: bool = False


SENT = SendResult(outcome=Outcome.SENT)


def _code_outcome(code: int) -> Outcome:
    return Outcome.PERMANENT if 500 <= code < 600 else Outcome.TRANSIENT


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind `exc` (itself, or one aiosmtplib wrapped), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class SessionSetupError(aiosmtplib.SMTPException):
    """The session could not be set up for any message, with no reply code to tell: what
    aiosmtplib raises as a bare `SMTPException` while connecting (the relay offers no AUTH
    though `SMTP_USERNAME` is set, or no mechanism it knows)."""


def classify(exc: BaseException) -> SendResult:
    """The outcome of a delivery attempt that raised `exc`."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        detail = "; ".join(
            f"{r.recipient}: {r.code} {_one_line(r.message)}" for r in exc.recipients
        )
        # Any 4xx refusal means trying again may succeed for everyone.
        transient = not codes or any(not (500 <= c < 600) for c in codes)
        code = min(codes) if transient and codes else (max(codes) if codes else None)
        return SendResult(
            outcome=Outcome.TRANSIENT if transient else Outcome.PERMANENT,
            code=code,
            error=f"recipients refused: {detail}",
            # 421: the server is closing the session, whatever the recipient.
            relay=421 in codes,
        )
    tls = _tls_error(exc)
    if tls is not None:
        return _relay(f"TLS failed: {_one_line(str(tls))}")
    if isinstance(exc, (aiosmtplib.SMTPHeloError, aiosmtplib.SMTPConnectResponseError)):
        # A server refusing the session is the server's state, not this message's fault.
        return _relay(
            f"server refused the session: {exc.code} {_one_line(exc.message)}", exc.code
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        # Bad credentials are the server's configuration or ours, not this message's fault.
        return _relay(f"authentication failed: {exc.code} {_one_line(exc.message)}", exc.code)
    if isinstance(exc, SessionSetupError):
        return _relay(f"session setup failed: {_one_line(str(exc))}")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if exc.code == 421:
            return _relay(f"server closing the session: 421 {_one_line(exc.message)}", 421)
        return SendResult(
            outcome=_code_outcome(exc.code),
            code=exc.code,
            error=f"{exc.code} {_one_line(exc.message)}",
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return _relay(f"connection dropped: {_one_line(str(exc))}")
    if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
        return _relay(f"connect timeout: {_one_line(str(exc)) or 'no answer'}")
    if isinstance(exc, (TimeoutError, aiosmtplib.SMTPTimeoutError)):
        return _transient(f"timeout: {_one_line(str(exc)) or 'no reply'}")
    if isinstance(exc, (aiosmtplib.SMTPConnectError, OSError)):
        return _relay(f"connection failed: {_one_line(str(exc))}")
    if isinstance(exc, aiosmtplib.SMTPException):
        return _transient(f"SMTP error: {_one_line(str(exc))}")
    return _transient(f"{type(exc).__name__}: {_one_line(str(exc))}")


def _relay(error: str, code: int | None = None) -> SendResult:
    return SendResult(outcome=Outcome.TRANSIENT, code=code, error=error, relay=True)


def _transient(error: str) -> SendResult:
    return SendResult(outcome=Outcome.TRANSIENT, error=error)


def partial_refusal(errors: Mapping[str, aiosmtplib.SMTPResponse]) -> SendResult:
    """A message accepted for some recipients: it is sent (retrying would duplicate it for
    the others); the refusals are recorded as the attempt's error."""
    detail = "; ".join(f"{rcpt}: {r.code} {_one_line(r.message)}" for rcpt, r in errors.items())
    return SendResult(
        outcome=Outcome.SENT, code=None, error=f"accepted, but some recipients refused: {detail}"
    )


class Deliverable(Protocol):
    """What a transport needs of a job; `message()` builds the `EmailMessage` (costly)."""

    @property
    def sender(self) -> str: ...

    @property
    def recipients(self) -> tuple[str, ...]: ...

    def message(self) -> EmailMessage: ...


class Transport(Protocol):
    """Delivers one message; one instance per worker."""

    async def send(self, job: Deliverable) -> SendResult: ...

    async def close(self) -> None: ...


class NullTransport:
    """Accepts every message without sending it (benchmarks and dry runs)."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, job: Deliverable) -> SendResult:
        self.sent += 1
        return SENT

    async def close(self) -> None:
        return None


class SmtpTransport:
    """A reused aiosmtplib connection, opened lazily and reopened after any failure.

    TLS follows `email/tls.py` (opportunistic by default, verified when required); every
    result says whether its session was encrypted."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._smtp: aiosmtplib.SMTP | None = None
        self._last_used = 0.0
        self._encrypted: bool | None = None
        self._mode = tls_mode(starttls=settings.smtp_starttls, implicit=settings.smtp_tls)
        self._context: ssl.SSLContext | None = None  # built on first use (loads CAs)
        self._helo: str | None = settings.smtp_helo_name
        self._soft_failures = 0  # consecutive 4xx replies on the current session

    def _client(self) -> aiosmtplib.SMTP:
        s = self._settings
        mode = self._mode
        start_tls = {TlsMode.OPPORTUNISTIC: None, TlsMode.REQUIRED: True}.get(mode, False)
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            timeout=s.smtp_timeout,
            use_tls=mode is TlsMode.IMPLICIT,
            start_tls=start_tls,
            tls_context=self._context,
            local_hostname=self._helo,
            username=s.smtp_username or None,
            password=s.smtp_password.reveal() or None,
        )

    async def _connection(self) -> aiosmtplib.SMTP:
        smtp = self._smtp
        if smtp is not None and smtp.is_connected:
            if time.monotonic() - self._last_used < IDLE_CHECK_SECONDS:
                return smtp
            try:
                await smtp.noop()
                return smtp
            except (aiosmtplib.SMTPException, OSError):
                await self.close()
        if self._helo is None:
            # The host's FQDN may take a DNS lookup: off the event loop, once per process.
            self._helo = await asyncio.to_thread(helo_name, self._settings)
        if self._context is None and self._mode is not TlsMode.OFF:
            # Loading the system store reads many files: off the loop too, once per transport.
            self._context = await asyncio.to_thread(
                client_context, self._mode, self._settings.smtp_ca_file
            )
        smtp = self._client()
        self._encrypted = None
        try:
            await smtp.connect()
        except aiosmtplib.SMTPConnectError as exc:
            # Implicit TLS: aiosmtplib wraps the handshake's SSLError in SMTPConnectError;
            # surface the TLS error itself, so it is classified (and shown) as one.
            if isinstance(exc.__cause__, ssl.SSLError):
                raise exc.__cause__ from None
            raise
        except aiosmtplib.SMTPException as exc:
            # aiosmtplib's own "STARTTLS extension not supported" (not a server reply).
            if (
                self._mode is TlsMode.REQUIRED
                and type(exc) is aiosmtplib.SMTPException
                and "STARTTLS" in str(exc)
            ):
                raise ssl.SSLError(
                    "TLS required (SMTP_STARTTLS=true) but the relay does not offer STARTTLS"
                ) from None
            if type(exc) is aiosmtplib.SMTPException:
                # No reply code: aiosmtplib's own refusal to go on (AUTH not offered...).
                raise SessionSetupError(str(exc)) from None
            raise
        self._smtp = smtp
        self._encrypted = smtp.get_transport_info("sslcontext") is not None
        self._soft_failures = 0
        return smtp

    async def send(self, job: Deliverable) -> SendResult:
        try:
            message = job.message()
            envelope = prepare_envelope(job.sender, job.recipients, message)
        except Exception as exc:  # stored content the email package cannot serialize
            return SendResult(outcome=Outcome.PERMANENT, error=f"message cannot be built: {exc}")
        try:
            smtp = await self._connection()
            if envelope.needs_utf8 is None:
                errors, _ = await smtp.send_message(
                    message, sender=envelope.sender, recipients=list(envelope.recipients)
                )
            else:
                if smtp.is_ehlo_or_helo_needed:
                    await smtp.ehlo()
                if not smtp.supports_extension("smtputf8"):
                    self._last_used = time.monotonic()
                    return SendResult(
                        outcome=Outcome.PERMANENT,
                        encrypted=self._encrypted,
                        error=f"address {envelope.needs_utf8!r} has a non-ASCII local part,"
                        " which needs SMTPUTF8 (RFC 6531); the relay does not offer it",
                    )
                errors, _ = await self._send_utf8(smtp, message, envelope.sender,
                                                  envelope.recipients)
        except asyncio.CancelledError:
            # Stopped mid-send (e.g. past the stop grace): the server may never answer, so
            # drop the connection at once instead of waiting for a polite QUIT.
            self.abort()
            raise
        except Exception as exc:
            result = replace(classify(exc), encrypted=self._encrypted)
            soft = result.code is not None and 400 <= result.code < 500 and not result.relay
            self._soft_failures = self._soft_failures + 1 if soft else 0
            await self._after_failure(exc)
            return result
        self._last_used = time.monotonic()
        self._soft_failures = 0
        result = partial_refusal(errors) if errors else SENT
        return replace(result, encrypted=self._encrypted)

    @staticmethod
    async def _send_utf8(
        smtp: aiosmtplib.SMTP, message: EmailMessage, sender: str, recipients: tuple[str, ...]
    ) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
        """Send with SMTPUTF8 and the headers in UTF-8 (RFC 6532), whichever address needs
        it (`send_message` looks at the envelope only)."""
        options = ["SMTPUTF8"]
        eight_bit = smtp.supports_extension("8bitmime")
        if eight_bit:
            options.append("BODY=8BITMIME")
        data = flatten_message(message, utf8=True, cte_type="8bit" if eight_bit else "7bit")
        return await smtp.sendmail(sender, list(recipients), data, mail_options=options)

    async def _after_failure(self, exc: BaseException) -> None:
        """Keep the connection after a plain refusal (RSET); drop it after anything else, and
        after a second 4xx in a row (a session stuck answering 4xx fails every message it
        is given; a fresh one often does not)."""
        smtp = self._smtp
        if (
            self._soft_failures < SOFT_FAILURES_PER_SESSION
            and smtp is not None
            and smtp.is_connected
            and isinstance(
                exc, (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused)
            )
        ):
            try:
                await smtp.rset()
                self._last_used = time.monotonic()
                return
            except (aiosmtplib.SMTPException, OSError):
                pass
        await self.close()

    def abort(self) -> None:
        """Drop the connection without QUIT."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            if smtp.is_connected:
                await asyncio.wait_for(smtp.quit(), 2.0)
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            smtp.close()
