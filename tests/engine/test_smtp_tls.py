"""TLS, EHLO and SMTPUTF8 against real servers: aiosmtpd with STARTTLS or implicit TLS (test
certificates from a trustme CA) and Postfix's `smtp-sink` (plaintext, no SMTPUTF8; it dumps
each transaction with the EHLO and MAIL arguments it saw).

Cases follow issue 8 section 2 and the SMTPUTF8 bullet of section 3: opportunistic STARTTLS
by default (not verified), required TLS verified against the system store or SMTP_CA_FILE,
the EHLO name, the per-attempt `encrypted` flag, and non-ASCII addresses.

Most tests drive `SmtpTransport` alone and open no database; the ones that run an engine (the
attempt record) run on both backends (`backend`), since the flag is stored with each attempt.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email import message_from_bytes, message_from_string
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.email.message import build_message
from vertex_tui.engine.email.retry import Outcome
from vertex_tui.engine.email.tls import choose_helo_name, default_helo_name
from vertex_tui.engine.email.transport import SmtpTransport
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import ConfigError
from vertex_tui.engine.settings import Settings

if TYPE_CHECKING:
    from conftest import JobWhen

EMAIL = ["email"]
Factory = Callable[..., Settings]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- certificates -------------------------------------------------------------------------


@dataclass
class Pki:
    """A test CA, a server certificate for 127.0.0.1/localhost, one for another name, and a
    certificate for 127.0.0.1 from a CA nobody trusts."""

    ca: trustme.CA
    ca_file: Path
    good: trustme.LeafCert
    wrong_name: trustme.LeafCert
    untrusted: trustme.LeafCert

    @staticmethod
    def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca = trustme.CA()
    ca_file = tmp_path_factory.mktemp("pki") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(
        ca=ca,
        ca_file=ca_file,
        good=ca.issue_cert("127.0.0.1", "localhost"),
        wrong_name=ca.issue_cert("relay.other.test"),
        untrusted=trustme.CA().issue_cert("127.0.0.1", "localhost"),
    )


# ---- aiosmtpd servers ---------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One transaction as the server saw it."""

    helo: str | None
    tls: bool
    mail_from: str
    rcpt_tos: tuple[str, ...]
    mail_options: tuple[str, ...]
    data: bytes

    def message(self) -> EmailMessage:
        # Headers may be UTF-8 (RFC 6532): parse the text, not the bytes.
        msg = message_from_string(self.data.decode("utf-8"), policy=default_policy)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class Recorder:
    seen: list[Seen] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        transport = server.transport
        raw = envelope.original_content or envelope.content or b""
        self.seen.append(
            Seen(
                helo=session.host_name,
                tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                mail_options=tuple(envelope.mail_options),
                data=raw if isinstance(raw, bytes) else raw.encode(),
            )
        )
        return "250 2.0.0 OK"


@dataclass
class Server:
    recorder: Recorder
    port: int

    @property
    def seen(self) -> list[Seen]:
        return self.recorder.seen


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """`serve(starttls=cert)` STARTTLS offered; `serve(implicit=cert)` TLS from the first
    byte; `serve()` plaintext; `smtputf8=True` offers SMTPUTF8."""
    controllers: list[Controller] = []

    def start(
        *,
        starttls: trustme.LeafCert | None = None,
        implicit: trustme.LeafCert | None = None,
        smtputf8: bool = False,
    ) -> Server:
        recorder = Recorder()
        port = _free_port()
        kwargs: dict[str, Any] = {"enable_SMTPUTF8": smtputf8}
        if starttls is not None:
            kwargs["tls_context"] = Pki.server_context(starttls)
        if implicit is not None:
            kwargs["ssl_context"] = Pki.server_context(implicit)
        controller = Controller(
            recorder, hostname="127.0.0.1", port=port, ready_timeout=10, **kwargs
        )
        controller.start()
        controllers.append(controller)
        return Server(recorder, port)

    yield start
    for controller in controllers:
        controller.stop()


# ---- Postfix smtp-sink ----------------------------------------------------------------------


def _smtp_sink_path() -> str | None:
    found = shutil.which("smtp-sink")
    if found is None and os.access("/usr/sbin/smtp-sink", os.X_OK):
        found = "/usr/sbin/smtp-sink"
    return found


@dataclass
class PostfixSink:
    """`smtp-sink -d DIR/%M.` on a free loopback port: every transaction dumped to a file that
    starts with `X-Helo-Args:` / `X-Mail-Args:` / `X-Rcpt-Args:` lines."""

    proc: subprocess.Popen[bytes]
    port: int
    folder: Path

    def dumps(self) -> list[bytes]:
        return [p.read_bytes() for p in sorted(self.folder.iterdir()) if p.is_file()]

    def wait_dumps(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The dumps once `count` complete ones exist (a deadline, not a timing check)."""
        deadline = time.monotonic() + timeout
        while True:
            dumps = self.dumps()
            complete = [d for d in dumps if b"\n\n" in d.replace(b"\r\n", b"\n")]
            if len(complete) >= count:
                return complete
            if time.monotonic() > deadline:
                pytest.fail(f"smtp-sink dumped {len(complete)} of {count} messages")
            time.sleep(0.02)

    @staticmethod
    def field(dump: bytes, name: str) -> list[str]:
        prefix = f"{name}: ".encode()
        return [
            line[len(prefix):].decode("utf-8", "replace").strip()
            for line in dump.splitlines()
            if line.startswith(prefix)
        ]


@pytest.fixture
def postfix_sink() -> Iterator[PostfixSink]:
    binary = _smtp_sink_path()
    if binary is None:
        if os.environ.get("VERTEX_REQUIRE_PEERS"):
            pytest.fail("Postfix smtp-sink is required (VERTEX_REQUIRE_PEERS) but not installed")
        pytest.skip("Postfix smtp-sink is not installed")
    # smtp-sink drops root privileges to -u USER, who must be able to write the dumps.
    folder = Path(tempfile.mkdtemp(prefix="vertex-smtp-sink-"))
    folder.chmod(0o777)
    port = _free_port()
    command = [binary, "-d", f"{folder}/%M.", "-t", "30"]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]
    command += [f"127.0.0.1:{port}", "16"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                err = proc.communicate()[1].decode(errors="replace")
                shutil.rmtree(folder, ignore_errors=True)
                pytest.fail(f"smtp-sink did not start: {err}")
            time.sleep(0.02)
    try:
        yield PostfixSink(proc, port, folder)
    finally:
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(folder, ignore_errors=True)


# ---- what the transport sends --------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    """A `Deliverable` built as the queue builds a stored job."""

    recipients: tuple[str, ...] = ("alice@example.com",)
    sender: str = "noreply@vertex.test"
    from_header: str = "Vertex AR <noreply@vertex.test>"
    headers: tuple[tuple[str, str], ...] = ()
    subject: str = "Your portrait is ready"
    to_header: str | None = None  # default: the recipients

    def message(self) -> EmailMessage:
        return build_message(
            sender=self.from_header,
            to_header=self.to_header or ", ".join(self.recipients),
            subject=self.subject,
            body="Hello.",
            html=None,
            headers=dict(self.headers),
            message_id="<tls-test.1@vertex.test>",
            created_at=1_800_000_000.0,
        )


async def send(settings: Settings, mail: Mail | None = None) -> Any:
    transport = SmtpTransport(settings)
    try:
        return await transport.send(mail or Mail())
    finally:
        await transport.close()


# ---- SMTP_STARTTLS=auto: opportunistic -----------------------------------------------------


async def test_auto_encrypts_with_a_certificate_nobody_trusts(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    """Debian's snakeoil case: STARTTLS offered with a self-signed chain, reached as
    127.0.0.1. Opportunistic TLS encrypts and does not verify (before: every message failed
    with CERTIFICATE_VERIFY_FAILED)."""
    server = serve(starttls=pki.untrusted)
    settings = settings_factory(smtp_port=server.port, smtp_starttls="auto")
    result = await send(settings)
    assert (result.outcome, result.error) == (Outcome.SENT, None)
    assert result.encrypted is True
    assert [s.tls for s in server.seen] == [True]


async def test_auto_with_a_name_mismatch_still_encrypts(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    server = serve(starttls=pki.wrong_name)
    settings = settings_factory(smtp_port=server.port, smtp_starttls="auto",
                                smtp_ca_file=pki.ca_file)
    result = await send(settings)
    assert (result.outcome, result.encrypted) == (Outcome.SENT, True)
    assert [s.tls for s in server.seen] == [True]


async def test_auto_without_starttls_offered_sends_plaintext_and_says_so(
    settings_factory: Factory, serve: Callable[..., Server], postfix_sink: PostfixSink
) -> None:
    for port in (serve().port, postfix_sink.port):  # aiosmtpd, then Postfix's smtp-sink
        settings = settings_factory(smtp_port=port, smtp_starttls="auto")
        result = await send(settings)
        assert (result.outcome, result.error, result.encrypted) == (Outcome.SENT, None, False)
    assert len(postfix_sink.wait_dumps(1)) == 1


async def test_false_never_starts_tls_even_when_offered(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    server = serve(starttls=pki.good)
    settings = settings_factory(smtp_port=server.port, smtp_starttls="false")
    result = await send(settings)
    assert (result.outcome, result.encrypted) == (Outcome.SENT, False)
    assert [s.tls for s in server.seen] == [False]


# ---- SMTP_STARTTLS=true / SMTP_TLS=true: required and verified ----------------------------


async def test_required_with_an_untrusted_certificate_is_a_tls_failure_not_permanent(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    server = serve(starttls=pki.untrusted)
    settings = settings_factory(smtp_port=server.port, smtp_starttls="true")
    result = await send(settings)
    assert result.outcome is Outcome.TRANSIENT  # the relay's state, never the message's
    assert result.error is not None and "CERTIFICATE_VERIFY_FAILED" in result.error
    assert "certificate verify failed" in result.error
    assert result.encrypted is None  # no session was established
    assert server.seen == []
    # The failure reaches the classifier as the TLS error itself (a relay failure).
    transport = SmtpTransport(settings)
    with pytest.raises(ssl.SSLCertVerificationError):
        await transport._connection()
    await transport.close()


async def test_required_with_the_ca_file_delivers_verified(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    server = serve(starttls=pki.good)
    settings = settings_factory(
        smtp_port=server.port, smtp_starttls="true", smtp_ca_file=pki.ca_file
    )
    result = await send(settings)
    assert (result.outcome, result.error, result.encrypted) == (Outcome.SENT, None, True)
    assert [s.tls for s in server.seen] == [True]


async def test_required_refuses_a_trusted_certificate_for_another_name(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    server = serve(starttls=pki.wrong_name)
    settings = settings_factory(
        smtp_port=server.port, smtp_starttls="true", smtp_ca_file=pki.ca_file
    )
    result = await send(settings)
    assert result.outcome is Outcome.TRANSIENT
    assert result.error is not None
    assert "mismatch, certificate is not valid for '127.0.0.1'" in result.error
    assert server.seen == []
    # By name, as most relays are reached.
    by_name = replace(settings, smtp_host="localhost")
    result = await send(by_name)
    assert result.error is not None
    assert "Hostname mismatch, certificate is not valid for 'localhost'" in result.error
    assert server.seen == []


async def test_required_without_starttls_offered_never_sends_in_the_clear(
    settings_factory: Factory, serve: Callable[..., Server]
) -> None:
    server = serve()
    settings = settings_factory(smtp_port=server.port, smtp_starttls="true")
    result = await send(settings)
    assert result.outcome is Outcome.TRANSIENT
    assert result.error is not None and "does not offer STARTTLS" in result.error
    assert server.seen == []
    transport = SmtpTransport(settings)
    with pytest.raises(ssl.SSLError):
        await transport._connection()
    await transport.close()


async def test_implicit_tls_is_verified_against_the_ca_file(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    server = serve(implicit=pki.good)
    settings = settings_factory(
        smtp_port=server.port, smtp_tls=True, smtp_starttls="auto", smtp_ca_file=pki.ca_file
    )
    result = await send(settings)
    assert (result.outcome, result.error, result.encrypted) == (Outcome.SENT, None, True)
    assert [s.tls for s in server.seen] == [True]


async def test_implicit_tls_refuses_an_untrusted_certificate(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    server = serve(implicit=pki.untrusted)
    settings = settings_factory(smtp_port=server.port, smtp_tls=True, smtp_starttls="auto")
    result = await send(settings)
    assert result.outcome is Outcome.TRANSIENT
    assert result.error is not None and "CERTIFICATE_VERIFY_FAILED" in result.error
    assert server.seen == []
    # aiosmtplib wraps it in SMTPConnectError; the transport hands on the TLS error itself.
    transport = SmtpTransport(settings)
    with pytest.raises(ssl.SSLCertVerificationError):
        await transport._connection()
    await transport.close()


async def test_implicit_tls_refuses_a_certificate_for_another_name(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki
) -> None:
    server = serve(implicit=pki.wrong_name)
    settings = settings_factory(
        smtp_port=server.port, smtp_tls=True, smtp_starttls="false", smtp_ca_file=pki.ca_file
    )
    result = await send(settings)
    assert result.outcome is Outcome.TRANSIENT
    assert result.error is not None and "mismatch" in result.error
    assert server.seen == []


# ---- SMTP_CA_FILE -----------------------------------------------------------------------------


def test_ca_file_setting_takes_a_pem_file_and_refuses_anything_else(
    pki: Pki, tmp_path: Path
) -> None:
    assert Settings.from_env({"SMTP_CA_FILE": str(pki.ca_file)}).smtp_ca_file == pki.ca_file
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n"
                    "-----END CERTIFICATE-----\n")
    key_only = tmp_path / "key.pem"
    pki.good.private_key_pem.write_to_path(str(key_only))
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    for path, why in [
        (tmp_path / "missing.pem", "no such file"),
        (tmp_path, "directory"),
        (empty, "no PEM certificate"),
        (key_only, "no PEM certificate"),
        (junk, "unusable"),
    ]:
        with pytest.raises(ConfigError) as info:
            Settings.from_env({"SMTP_CA_FILE": str(path)})
        message = str(info.value)
        assert message.startswith(f"SMTP_CA_FILE={str(path)!r} is invalid: expected a PEM file")
        assert why in message and "\n" not in message


# ---- EHLO name ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fqdn", "hostname", "expected"),
    [
        ("mail.example.com", "mail", "mail.example.com"),
        ("localhost", "vm", "vm"),
        ("localhost.localdomain", "web-01", "web-01"),
        ("LOCALHOST", "web-01.example.org", "web-01.example.org"),
        ("ip6-localhost", "db1", "db1"),
        ("host.example.org.", "host", "host.example.org"),
        ("", "box", "box"),
        ("localhost", "localhost", "localhost"),
        ("localhost", "bad_name", "localhost"),
        ("under_score.example", "good.example", "good.example"),
    ],
)
def test_default_helo_name_is_the_fqdn_unless_it_is_localhost(
    fqdn: str, hostname: str, expected: str
) -> None:
    assert choose_helo_name(fqdn, hostname) == expected


async def test_helo_name_is_sent_to_aiosmtpd_and_smtp_sink(
    settings_factory: Factory, serve: Callable[..., Server], pki: Pki,
    postfix_sink: PostfixSink,
) -> None:
    server = serve(starttls=pki.untrusted)
    for port in (server.port, postfix_sink.port):
        settings = settings_factory(smtp_port=port, smtp_starttls="auto",
                                    smtp_helo_name="relay-client.vertex.test")
        assert (await send(settings)).outcome is Outcome.SENT
    assert [(s.helo, s.tls) for s in server.seen] == [("relay-client.vertex.test", True)]
    dump = postfix_sink.wait_dumps(1)[0]
    assert PostfixSink.field(dump, "X-Helo-Args") == ["relay-client.vertex.test"]


async def test_default_helo_name_is_this_hosts_name_never_localhost_when_it_has_one(
    settings_factory: Factory, postfix_sink: PostfixSink
) -> None:
    expected = choose_helo_name(socket.getfqdn(), socket.gethostname())
    assert default_helo_name() == expected
    settings = settings_factory(smtp_port=postfix_sink.port, smtp_starttls="auto")
    assert settings.smtp_helo_name is None
    assert (await send(settings)).outcome is Outcome.SENT
    dump = postfix_sink.wait_dumps(1)[0]
    assert PostfixSink.field(dump, "X-Helo-Args") == [expected]
    if expected != "localhost":  # the host has a name of its own: it is what relays see
        assert PostfixSink.field(dump, "X-Helo-Args") != ["localhost"]


# ---- SMTPUTF8 -------------------------------------------------------------------------------


async def test_non_ascii_local_part_goes_out_with_smtputf8_when_offered(
    settings_factory: Factory, serve: Callable[..., Server]
) -> None:
    server = serve(smtputf8=True)
    settings = settings_factory(smtp_port=server.port)
    mail = Mail(recipients=("jöran@exämple.com", "bob@example.com"),
                headers=(("Reply-To", "Jöran Support <hilfe@exämple.com>"),))
    result = await send(settings, mail)
    assert (result.outcome, result.error) == (Outcome.SENT, None)
    [seen] = server.seen
    assert "SMTPUTF8" in [o.upper() for o in seen.mail_options]
    assert seen.rcpt_tos == ("jöran@exämple.com", "bob@example.com")
    assert "jöran@exämple.com".encode() in seen.data  # UTF-8 headers (RFC 6532)
    assert b"=?utf-8?" not in seen.data.split(b"\r\n\r\n")[0].split(b"Subject")[0]
    msg = seen.message()
    assert [a.addr_spec for a in msg["To"].addresses] == ["jöran@exämple.com", "bob@example.com"]
    assert msg["Reply-To"].addresses[0].addr_spec == "hilfe@exämple.com"


async def test_a_non_ascii_reply_to_alone_also_needs_smtputf8(
    settings_factory: Factory, serve: Callable[..., Server]
) -> None:
    """The envelope is ASCII but a header address is not: before, that address went out as
    an encoded word inside the local part (a broken address) without SMTPUTF8."""
    server = serve(smtputf8=True)
    settings = settings_factory(smtp_port=server.port)
    mail = Mail(headers=(("Reply-To", "Jöran <jöran@example.com>"),))
    assert (await send(settings, mail)).outcome is Outcome.SENT
    [seen] = server.seen
    assert "SMTPUTF8" in [o.upper() for o in seen.mail_options]
    reply_to = seen.message()["Reply-To"].addresses[0]
    assert (reply_to.display_name, reply_to.addr_spec) == ("Jöran", "jöran@example.com")


async def test_non_ascii_local_part_fails_permanently_when_smtputf8_is_not_offered(
    settings_factory: Factory, serve: Callable[..., Server], postfix_sink: PostfixSink
) -> None:
    for port in (serve(smtputf8=False).port, postfix_sink.port):
        settings = settings_factory(smtp_port=port)
        transport = SmtpTransport(settings)
        try:
            result = await transport.send(Mail(recipients=("jöran@example.com",)))
            assert result.outcome is Outcome.PERMANENT
            assert result.error is not None
            assert "jöran@example.com" in result.error and "SMTPUTF8" in result.error
            assert result.encrypted is False
            # The session stays good for the next message.
            assert (await transport.send(Mail())).outcome is Outcome.SENT
        finally:
            await transport.close()
    dumps = postfix_sink.wait_dumps(1)
    assert [PostfixSink.field(d, "X-Rcpt-Args") for d in dumps] == [["<alice@example.com>"]]


async def test_a_non_ascii_sender_needs_smtputf8_too(
    settings_factory: Factory, postfix_sink: PostfixSink
) -> None:
    settings = settings_factory(smtp_port=postfix_sink.port)
    mail = Mail(sender="rückmeldung@vertex.test", from_header="Vertex <rückmeldung@vertex.test>")
    result = await send(settings, mail)
    assert result.outcome is Outcome.PERMANENT
    assert result.error is not None and "rückmeldung@vertex.test" in result.error


async def test_a_non_ascii_sender_name_needs_no_smtputf8(
    settings_factory: Factory, postfix_sink: PostfixSink
) -> None:
    """The queue stores EMAIL_FROM whole as the job's sender: only its address goes into
    MAIL FROM (before: a non-ASCII display name asked smtp-sink for SMTPUTF8, and every
    message failed)."""
    settings = settings_factory(smtp_port=postfix_sink.port)
    sender = "Vértex AR <noreply@vertex.test>"
    result = await send(settings, Mail(sender=sender, from_header=sender))
    assert (result.outcome, result.error) == (Outcome.SENT, None)
    [dump] = postfix_sink.wait_dumps(1)
    [mail_from] = PostfixSink.field(dump, "X-Mail-Args")
    assert mail_from.split()[0] == "<noreply@vertex.test>"
    assert "SMTPUTF8" not in mail_from.upper()


async def test_an_international_domain_goes_out_as_a_labels_without_smtputf8(
    settings_factory: Factory, postfix_sink: PostfixSink
) -> None:
    """An IDN domain has an ASCII form, so it needs no SMTPUTF8 (before: refused by a relay
    without SMTPUTF8, after five attempts)."""
    settings = settings_factory(smtp_port=postfix_sink.port)
    mail = Mail(recipients=("ivan@пример.рф",), to_header="Иван <ivan@пример.рф>")
    result = await send(settings, mail)
    assert (result.outcome, result.error) == (Outcome.SENT, None)
    [dump] = postfix_sink.wait_dumps(1)
    assert PostfixSink.field(dump, "X-Rcpt-Args") == ["<ivan@xn--e1afmkfd.xn--p1ai>"]
    assert "SMTPUTF8" not in " ".join(PostfixSink.field(dump, "X-Mail-Args")).upper()
    assert dump.isascii()
    msg = message_from_bytes(dump, policy=default_policy)
    [to] = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Иван", "ivan@xn--e1afmkfd.xn--p1ai")


# ---- the attempt record ------------------------------------------------------------------------


async def test_each_attempt_records_whether_its_session_was_encrypted(
    backend_settings_factory: Factory, serve: Callable[..., Server], pki: Pki, clock: FakeClock,
    job_when: JobWhen, postfix_sink: PostfixSink,
) -> None:
    tls_server = serve(starttls=pki.untrusted)
    cases = [(tls_server.port, True), (postfix_sink.port, False)]
    for port, encrypted in cases:
        settings = backend_settings_factory(smtp_port=port, smtp_starttls="auto")
        async with Engine(settings, clock=clock, run=EMAIL) as engine:
            job_id = await engine.email.enqueue(to="alice@example.com", subject="s", body="b")
            detail = await job_when(engine, job_id, lambda d: d.job.status == "sent", "sent")
        [attempt] = detail.history
        assert (attempt.outcome, attempt.encrypted) == ("sent", encrypted)
        assert attempt.to_json()["encrypted"] is encrypted
        assert attempt.session == ("TLS" if encrypted else "plaintext")


async def test_an_attempt_without_a_session_records_encrypted_null(
    backend_settings_factory: Factory, serve: Callable[..., Server], pki: Pki, clock: FakeClock,
    job_when: JobWhen,
) -> None:
    server = serve(starttls=pki.untrusted)
    settings = backend_settings_factory(smtp_port=server.port, smtp_starttls="true")
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        job_id = await engine.email.enqueue(to="alice@example.com", subject="s", body="b")
        detail = await job_when(engine, job_id, lambda d: len(d.history) >= 1, "tried")
    assert detail.job.status != "failed"
    attempt = detail.history[0]
    assert attempt.outcome == "transient" and attempt.encrypted is None
    assert attempt.to_json()["encrypted"] is None
    assert attempt.error is not None and "CERTIFICATE_VERIFY_FAILED" in attempt.error
    assert detail.job.last_error is not None and "certificate" in detail.job.last_error
    assert server.seen == []
