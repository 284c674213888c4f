"""Delivery outcomes from real aiosmtplib exceptions: 4xx and network transient, 5xx permanent."""

from __future__ import annotations

import socket
import ssl

import aiosmtplib
import pytest
from aiosmtplib import SMTPResponse

from vertex_tui.engine.email.retry import Outcome
from vertex_tui.engine.email.transport import (
    SENT,
    SendResult,
    SessionSetupError,
    classify,
    partial_refusal,
)

T, P = Outcome.TRANSIENT, Outcome.PERMANENT


def _refused(*items: tuple[int, str, str]) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, msg, rcpt) for code, msg, rcpt in items]
    )


def test_recipients_refused_has_no_code_attribute() -> None:
    # The reason classify() reads `.recipients`: the exception itself carries no code.
    assert not hasattr(_refused((550, "no", "a@b.com")), "code")


def test_all_recipients_refused_with_550_is_permanent() -> None:
    exc = _refused(
        (550, "5.1.1 User unknown", "a@b.com"),
        (553, "5.1.3 Bad address", "c@d.com"),
    )
    result = classify(exc)
    assert result.outcome is P
    assert result.code == 553
    assert result.error is not None
    assert "a@b.com: 550 5.1.1 User unknown" in result.error
    assert "c@d.com: 553 5.1.3 Bad address" in result.error


def test_one_450_among_refused_recipients_makes_it_transient() -> None:
    exc = _refused(
        (550, "5.1.1 User unknown", "a@b.com"),
        (450, "4.2.1 Mailbox busy, try later", "c@d.com"),
        (551, "5.1.6 Moved", "e@f.com"),
    )
    result = classify(exc)
    assert result.outcome is T
    assert result.code == 450
    assert result.error is not None
    assert "c@d.com: 450" in result.error and "a@b.com: 550" in result.error


def test_single_recipient_refused_with_451_is_transient() -> None:
    result = classify(_refused((451, "4.7.1 Greylisted", "a@b.com")))
    assert result.outcome is T
    assert result.code == 451
    assert result.error == "recipients refused: a@b.com: 451 4.7.1 Greylisted"


def test_recipients_refused_without_items_is_transient() -> None:
    result = classify(aiosmtplib.SMTPRecipientsRefused([]))
    assert result.outcome is T
    assert result.code is None


@pytest.mark.parametrize(
    ("exc", "outcome", "code"),
    [
        (aiosmtplib.SMTPResponseException(451, "4.3.0 Local error"), T, 451),
        (aiosmtplib.SMTPResponseException(554, "5.7.1 Rejected as spam"), P, 554),
        (aiosmtplib.SMTPResponseException(550, "5.7.0 Policy"), P, 550),
        (aiosmtplib.SMTPDataError(452, "4.3.1 Insufficient storage"), T, 452),
        (aiosmtplib.SMTPDataError(552, "5.3.4 Message too big"), P, 552),
        (aiosmtplib.SMTPDataError(554, "5.6.0 Bad content"), P, 554),
        (aiosmtplib.SMTPRecipientRefused(550, "5.1.1 Unknown", "a@b.com"), P, 550),
        (aiosmtplib.SMTPRecipientRefused(450, "4.2.0 Busy", "a@b.com"), T, 450),
        (aiosmtplib.SMTPSenderRefused(451, "4.1.8 Try later", "me@x.com"), T, 451),
    ],
)
def test_reply_codes(exc: aiosmtplib.SMTPResponseException, outcome: Outcome, code: int) -> None:
    result = classify(exc)
    assert result.outcome is outcome
    assert result.code == code
    assert result.error is not None and result.error.startswith(f"{code} ")
    assert exc.message in result.error
    assert not result.relay  # the message's reply, not the relay's failure


@pytest.mark.parametrize("code", [535, 454, 530])
def test_authentication_error_is_the_relays_whatever_its_code(code: int) -> None:
    # Bad credentials are the server's configuration or ours, not this message's fault:
    # the relay circuit holds every message until a login succeeds.
    result = classify(aiosmtplib.SMTPAuthenticationError(code, "5.7.8 Bad credentials"))
    assert result.outcome is T and result.relay
    assert result.code == code
    assert result.error is not None and result.error.startswith("authentication failed")


def test_a_session_that_cannot_be_set_up_is_the_relays() -> None:
    result = classify(SessionSetupError("The SMTP AUTH extension is not supported by this "
                                        "server."))
    assert result.outcome is T and result.relay
    assert result.error == ("session setup failed: The SMTP AUTH extension is not supported"
                            " by this server.")


@pytest.mark.parametrize(
    ("exc", "prefix", "relay"),
    [
        (aiosmtplib.SMTPServerDisconnected("Connection lost"), "connection dropped", True),
        (
            aiosmtplib.SMTPConnectError("Error connecting to 127.0.0.1 on port 1"),
            "connection failed",
            True,
        ),
        (aiosmtplib.SMTPTimeoutError("Timed out waiting for server"), "timeout", False),
        (aiosmtplib.SMTPReadTimeoutError("Timed out reading"), "timeout", False),
        (aiosmtplib.SMTPConnectTimeoutError("Timed out connecting"), "connect timeout", True),
        (TimeoutError(), "timeout", False),
        (ConnectionRefusedError(111, "Connection refused"), "connection failed", True),
        (ConnectionResetError(104, "Connection reset by peer"), "connection failed", True),
        (socket.gaierror(-2, "Name or service not known"), "connection failed", True),
        (ssl.SSLError(1, "certificate verify failed"), "TLS failed", True),
        (aiosmtplib.SMTPNotSupported("STARTTLS extension not supported"), "SMTP error", False),
        (RuntimeError("something odd"), "RuntimeError", False),
    ],
)
def test_network_and_other_errors_are_transient(
    exc: BaseException, prefix: str, relay: bool
) -> None:
    result = classify(exc)
    assert result.outcome is T
    assert result.code is None
    assert result.error is not None and result.error.startswith(prefix)
    assert result.relay is relay


def test_bare_timeout_error_says_no_reply() -> None:
    assert classify(TimeoutError()).error == "timeout: no reply"


async def test_real_connection_refused_is_transient() -> None:
    """A real aiosmtplib connect to a port that does not listen."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        with pytest.raises(aiosmtplib.SMTPException) as info:
            await aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=5).connect()
    exc = info.value
    result = classify(exc)
    assert isinstance(exc, aiosmtplib.SMTPConnectError)
    assert result.outcome is T
    assert result.relay
    assert result.error is not None and result.error.startswith("connection failed")


def test_multi_line_server_messages_become_one_bounded_line() -> None:
    message = "4.3.0 first line\n4.3.0 second line\r\n" + "x" * 1000
    result = classify(aiosmtplib.SMTPResponseException(451, message))
    assert result.error is not None
    assert "\n" not in result.error and "\r" not in result.error
    assert "first line 4.3.0 second line" in result.error
    assert len(result.error) <= 310

    refused = classify(_refused((550, "no\nsuch\nuser", "a@b.com")))
    assert refused.error is not None and "\n" not in refused.error


# --- partial refusal ----------------------------------------------------------------------------


def test_partial_refusal_is_sent_with_the_refusals_recorded() -> None:
    result = partial_refusal(
        {
            "bad@b.com": SMTPResponse(550, "5.1.1 User unknown"),
            "busy@b.com": SMTPResponse(450, "4.2.1 Busy"),
        }
    )
    assert result.outcome is Outcome.SENT
    assert result.code is None
    assert result.error is not None
    assert result.error.startswith("accepted, but some recipients refused")
    assert "bad@b.com: 550 5.1.1 User unknown" in result.error
    assert "busy@b.com: 450 4.2.1 Busy" in result.error


def test_sent_constant() -> None:
    assert SENT == SendResult(outcome=Outcome.SENT)
    assert SENT.error is None and SENT.code is None
