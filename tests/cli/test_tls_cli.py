"""TLS as an operator sees it from the command line: `config` shows the TLS settings, a bad
`SMTP_CA_FILE` stops the program, and `email show` tells per attempt whether the session
was encrypted. The relay is a real aiosmtpd server (STARTTLS with a trustme certificate) in
this process; `vertex-tui email drain` runs as a subprocess, as an operator runs it."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

# Each test runs twice: on SQLite and on PostgreSQL (the `cli` fixture sees `backend`).
pytestmark = pytest.mark.usefixtures("backend")


class Recorder:
    def __init__(self) -> None:
        self.tls: list[bool] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        transport = server.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        self.tls.append(ssl_object is not None)
        return "250 OK"


@pytest.fixture
def starttls_relay() -> Iterator[tuple[int, Recorder]]:
    """A relay offering STARTTLS with a certificate from a CA nobody trusts (a snakeoil)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, tls_context=context,
                            ready_timeout=10)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def test_config_shows_the_tls_settings(cli: Any, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    shown = dict(line.split("=", 1) for line in cli.ok("config").splitlines())
    assert shown["SMTP_STARTTLS"] == "auto"
    assert shown["SMTP_CA_FILE"].startswith("(not set")
    assert shown["SMTP_HELO_NAME"].startswith("(not set: this host's name, ")
    shown = dict(
        line.split("=", 1)
        for line in cli.ok("config", SMTP_CA_FILE=str(ca), SMTP_HELO_NAME="mx1.example.org")
        .splitlines()
    )
    assert (shown["SMTP_CA_FILE"], shown["SMTP_HELO_NAME"]) == (str(ca), "mx1.example.org")


@pytest.mark.parametrize("problem", ["missing", "not-pem"])
def test_a_bad_ca_file_exits_2_naming_the_variable(
    cli: Any, tmp_path: Path, problem: str
) -> None:
    path = tmp_path / "ca.pem"
    if problem == "not-pem":
        path.write_text("this is not a certificate\n")
    # Refused before the database is opened: on SQLite no file appears; on PostgreSQL a
    # server that is not there is never waited for (that would be exit 1 after 2 s).
    early = cli.refused_early()
    for command in (["config"], ["email", "stats"]):
        line = cli.error(*command, code=2, SMTP_CA_FILE=str(path), **early)
        assert line.startswith(f"vertex-tui: SMTP_CA_FILE={str(path)!r} is invalid")
        assert "PEM" in line
    assert not cli.db_path.exists()


@pytest.mark.parametrize(("starttls", "encrypted", "label"),
                         [("auto", True, "TLS"), ("false", False, "plaintext")])
def test_email_show_says_whether_each_attempt_was_encrypted(
    cli: Any, starttls_relay: tuple[int, Recorder], starttls: str, encrypted: bool, label: str
) -> None:
    port, recorder = starttls_relay
    relay = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_STARTTLS": starttls}
    job_id = cli.enqueue(to="alice@example.com", **relay)
    drained = cli.json("email", "drain", logs=True, **relay)
    assert drained["sent"] == 1, drained
    assert recorder.tls == [encrypted]
    doc = cli.json("email", "show", str(job_id))
    assert [(a["outcome"], a["encrypted"]) for a in doc["history"]] == [("sent", encrypted)]
    text = cli.ok("email", "show", str(job_id))
    [line] = [ln for ln in text.splitlines() if "attempt 1" in ln]
    assert f"sent      {label}" in line

