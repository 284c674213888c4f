"""Headers arrive as they were enqueued: long mixed-script subjects, display names and custom
text headers go through the real queue to two real SMTP servers (aiosmtpd, and Postfix's
`smtp-sink` dumping each message to a file), and the receiver's parse of the raw message
decodes to exactly the enqueued text.

CPython 3.11's header folder (gh-144156) drops the space between two encoded-words it folds
(`Привет 日本語` arrives as `Привет日本語`) and inserts spaces into long words; the queue folds
these headers itself (vertex_tui.engine.email.message), which these tests hold.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtplib.email import flatten_message

from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.email.message import build_message, fold_unstructured, prepare
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import Settings

if TYPE_CHECKING:
    from conftest import TestSink, WaitFor

EMAIL = ["email"]

# Subjects the email package alone gets wrong, and ordinary ones that must stay right.
SUBJECTS = [
    # the reported case: the email package alone sends this as `... Привет日本語 ...`
    "портрет портрет Привет 日本語 — продлите подписку",
    # ... and this (double space) as `... Привет日本語 ...` too
    "Ваш заказ номер  Привет 日本語 — продлите подписку",
    # ... and this one, under SMTPUTF8, with a space added at the front
    "Подписка на портрет Привет 日本語 истекает через 7 дней — продлите её сейчас",
    "Ваш портрет готов: Привет 日本語 — проверка темы письма, которая длиннее одной строки",
    "Ваш заказ: Привет 日本語 Привет 日本語 Привет 日本語 Привет 日本語 Привет 日本語 Привет",
    "Привет 日本語 " * 12,  # trailing space, 200+ characters
    "Подписка истекает через 7 дней: продлите её, чтобы анимация портрета продолжала играть",
    "日本語のテキストはスペースなしで長く続くことがあります。" * 5,
    "اشتراكك ينتهي قريبا: جدد الآن للحفاظ على الرسوم المتحركة لصورتك الشخصية مرئية للجميع",
    "🙂 Emoji 👨‍👩‍👧 family 🎉 party 🇺🇦 flag — и кириллица 🙂 " * 3,
    "Mixed  double  spaces  Привет  日本語  and   triple   spaces   in   a   long   subject line",
    " leading space, Привет 日本語, and a tab\tinside, long enough to be folded twice over here",
    "x" * 100 + " Привет 日本語 " + "y" * 90,  # ASCII words longer than a line
    "A plain ASCII subject " + "that goes on and on " * 8,
    "An ASCII word longer than a line: " + "Supercalifragilistic" * 6 + " end",
    "Looks encoded: =?utf-8?q?hi?= but is not, with Привет 日本語 after it for the fold",
    "e\u0301 combining marks ё́ Ӝ over a fold boundary " * 4,
    "Short ünïcödé",
    "Plain short subject",
    "Ж" * 300,
    "日" * 250 + " " + "本" * 250,
]

# Display names and a custom text header, each paired with the subject at the same index.
NAMES = [
    "Иван Петров",
    "Привет 日本語 Привет 日本語 Привет 日本語 Привет 日本語 Привет 日本語",
    "O'Brien, Seán",
    "Doe, J. (ops)",
    "Renée Müller-Lüdenscheidt von und zu Hohenzollern-Sigmaringen Привет 日本語",
    "",
]
NOTE = "Заметка: Привет 日本語 " * 6
SENDER_NAME = "Вертекс — уведомления подписки и портретов, Привет 日本語 Привет"
SENDER = f'"{SENDER_NAME}" <noreply@vertex.test>'


def _rfc2047_display_names(raw_to: str) -> list[str]:
    """The display names of a raw To header, decoded as RFC 2047 says (the whitespace between
    adjacent encoded-words ignored), independently of the email package's phrase parser."""
    names = []
    for mailbox in re.findall(r'(?:"(?:[^"\\]|\\.)*"|[^,"])+', re.sub(r"\r?\n", "", raw_to)):
        phrase = mailbox.rpartition("<")[0].strip() if "<" in mailbox else ""
        decoded = str(make_header(decode_header(phrase))) if phrase else ""
        names.append(decoded[1:-1] if decoded.startswith('"') else decoded)
    return names


def _raw_header(data: bytes, name: str) -> str:
    head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].decode("ascii")
    found = re.search(rf"^{re.escape(name)}: ?(.*?)\n(?=\S|$)", head + "\n", re.M | re.S)
    assert found is not None, f"no {name} header in {head!r}"
    return found.group(1)


def _check_received(data: bytes, subject: str, names: list[str], sender: str) -> None:
    msg = BytesParser(policy=default_policy).parsebytes(data)
    assert msg["Subject"] == subject
    assert msg["X-Note"] == NOTE
    assert [a.addr_spec for a in msg["To"].addresses] == [
        f"user{i}@example.com" for i in range(len(names))
    ]
    assert _rfc2047_display_names(_raw_header(data, "To")) == names
    assert _rfc2047_display_names(_raw_header(data, "From")) == [sender]
    assert [a.addr_spec for a in msg["From"].addresses] == ["noreply@vertex.test"]
    # Every header line within RFC 5322's 78 characters: nothing was left for a relay to refold.
    head = data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    assert max(len(line) for line in head.split(b"\n")) <= 78


def _to(names: list[str]) -> list[str]:
    return [
        f'"{n}" <user{i}@example.com>' if n else f"user{i}@example.com" for i, n in enumerate(names)
    ]


def _names_for(i: int) -> list[str]:
    return [NAMES[i % len(NAMES)], NAMES[(i + 1) % len(NAMES)]]


async def _deliver_all(settings: Settings, wait_for: WaitFor, count: Callable[[], int]) -> None:
    async with Engine(settings, clock=FakeClock(), run=EMAIL) as engine:
        for i, subject in enumerate(SUBJECTS):
            await engine.email.enqueue(
                to=_to(_names_for(i)), subject=subject, body="Body.\n", headers={"X-Note": NOTE}
            )
        await wait_for(lambda: count() == len(SUBJECTS), message="all messages received")


# --- through aiosmtpd -----------------------------------------------------------------------


async def test_headers_arrive_as_enqueued_through_aiosmtpd(
    settings_factory: Callable[..., Settings], sink: TestSink, wait_for: WaitFor
) -> None:
    await _deliver_all(
        settings_factory(sink=sink, email_from=SENDER), wait_for, lambda: len(sink.received)
    )
    by_subject = {}
    for received in sink.received:
        parsed = BytesParser(policy=default_policy).parsebytes(received.data)
        by_subject[parsed["Subject"]] = received.data
    assert set(by_subject) == set(SUBJECTS)
    for i, subject in enumerate(SUBJECTS):
        _check_received(by_subject[subject], subject, _names_for(i), SENDER_NAME)


# --- through Postfix's smtp-sink ------------------------------------------------------------


@pytest.fixture
def smtp_sink(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """Postfix's `smtp-sink` on a free loopback port, dumping each message into a folder."""
    binary = shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin:/usr/bin")
    if binary is None:
        if os.environ.get("VERTEX_REQUIRE_PEERS") or os.environ.get("CI"):
            pytest.fail("Postfix's smtp-sink is required (install the postfix package)")
        pytest.skip("Postfix's smtp-sink is not installed")
    dump = tmp_path / "dump"
    dump.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    # As root, smtp-sink insists on a user to run as: stay root, to write into tmp_path.
    user = ["-u", "root"] if os.geteuid() == 0 else []
    log = (tmp_path / "smtp-sink.log").open("wb")
    proc = subprocess.Popen(
        [binary, *user, "-d", f"{dump}/%M.", f"127.0.0.1:{port}", "64"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port, dump
    finally:
        proc.kill()
        proc.wait(timeout=5)
        log.close()


def _dumped(dump: Path) -> list[bytes]:
    """The messages smtp-sink dumped: its own X-*-Args and Received lines come first."""
    return [p.read_bytes() for p in sorted(dump.iterdir()) if p.is_file()]


async def test_headers_arrive_as_enqueued_through_smtp_sink(
    settings_factory: Callable[..., Settings],
    smtp_sink: tuple[int, Path],
    wait_for: WaitFor,
) -> None:
    port, dump = smtp_sink

    async def listening() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    await wait_for(listening, message="smtp-sink listening")
    # An ASCII sender name here: with a non-ASCII one, the transport passes the whole
    # EMAIL_FROM as the envelope sender, which makes aiosmtplib demand SMTPUTF8, and
    # smtp-sink does not offer it (aiosmtpd does, so the test above covers that name).
    settings = settings_factory(smtp_port=port)
    await _deliver_all(settings, wait_for, lambda: len(_dumped(dump)))
    by_subject: dict[str, bytes] = {}
    for data in _dumped(dump):
        parsed = BytesParser(policy=default_policy).parsebytes(data)
        assert parsed["X-Rcpt-Args"] is not None  # smtp-sink's own record of the transaction
        by_subject[parsed["Subject"]] = data
    assert set(by_subject) == set(SUBJECTS)
    for i, subject in enumerate(SUBJECTS):
        _check_received(by_subject[subject], subject, _names_for(i), "Vertex AR")


# --- the folding itself, without a server ---------------------------------------------------


def _flatten(msg: EmailMessage, *, utf8: bool = False) -> bytes:
    """The bytes aiosmtplib puts on the wire (policy SMTP, or SMTPUTF8 for an SMTPUTF8 send)."""
    return flatten_message(msg, utf8=utf8)


def _built(subject: str, *, headers: dict[str, Any] | None = None) -> EmailMessage:
    prepared = prepare(to=_to(NAMES[:4]), subject=subject, body="b", headers=headers)
    return build_message(
        sender="Vertex AR <noreply@vertex.test>",
        to_header=prepared.to_header,
        subject=prepared.subject,
        body=prepared.body,
        html=None,
        headers=prepared.headers,
        message_id="<1.2@vertex.test>",
        created_at=0.0,
    )


@pytest.mark.parametrize("utf8", [False, True], ids=["SMTP", "SMTPUTF8"])
@pytest.mark.parametrize("subject", SUBJECTS, ids=range(len(SUBJECTS)))
def test_subject_and_text_headers_round_trip_on_the_wire(subject: str, utf8: bool) -> None:
    headers = {"X-Note": subject, "Comments": NOTE, "X-Ascii": "plain ascii value"}
    data = _flatten(_built(subject, headers=headers), utf8=utf8)
    msg = BytesParser(policy=default_policy).parsebytes(data)
    assert msg["Subject"] == subject
    assert msg["X-Note"] == subject
    assert msg["Comments"] == NOTE
    assert msg["X-Ascii"] == "plain ascii value"


@pytest.mark.parametrize("utf8", [False, True], ids=["SMTP", "SMTPUTF8"])
def test_display_names_round_trip_on_the_wire(utf8: bool) -> None:
    data = _flatten(_built("s"), utf8=utf8)
    assert _rfc2047_display_names(_raw_header(data, "To")) == NAMES[:4]
    parsed = BytesParser(policy=default_policy).parsebytes(data)
    assert [a.addr_spec for a in parsed["To"].addresses] == [
        f"user{i}@example.com" for i in range(4)
    ]


def test_short_display_names_also_round_trip_through_the_email_package() -> None:
    # A name that fits one encoded-word: even the email package's phrase parser (which keeps
    # the space between two encoded-words, against RFC 2047) reads it back exactly.
    names = ["Иван Петров", "O'Brien, Seán", "日本語 太郎", "Plain Name"]
    prepared = prepare(
        to=_to(names),
        subject="s",
        body="b",
        headers={"Reply-To": '"Служба поддержки" <help@vertex.test>'},
    )
    msg = build_message(
        sender="a@vertex.test",
        to_header=prepared.to_header,
        subject="s",
        body="b",
        html=None,
        headers=prepared.headers,
        message_id="<1@x>",
        created_at=0.0,
    )
    parsed = BytesParser(policy=default_policy).parsebytes(_flatten(msg))
    assert [a.display_name for a in parsed["To"].addresses] == names
    assert [(a.display_name, a.addr_spec) for a in parsed["Reply-To"].addresses] == [
        ("Служба поддержки", "help@vertex.test")
    ]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("Subject", "Привет 日本語 " * 20),
        ("Subject", "🙂" * 80),
        ("X-Note", "ü" * 200),
        ("X-A-Long-Header-Name-Leaving-Little-Room", "Привет 日本語 " * 10),
    ],
)
def test_encoded_words_are_within_rfc_2047_limits(name: str, text: str) -> None:
    folded = fold_unstructured(name, text)
    assert folded is not None
    lines = folded.split("\n")
    assert len(f"{name}: {lines[0]}") <= 78
    words = re.findall(r"=\?UTF-8\?[BQ]\?[^?]*\?=", folded)
    assert words and all(len(w) <= 75 for w in words)
    assert " ".join(words) == folded.replace("\n", "")  # nothing outside encoded-words
    # each word decodes alone: no character is split between two words
    for word in words:
        str(make_header(decode_header(word)))
    assert str(make_header(decode_header(folded.replace("\n", "")))) == text


def test_plain_ascii_subject_stays_readable() -> None:
    subject = "Your subscription ends in 7 days " * 4
    folded = fold_unstructured("Subject", subject.strip())
    assert folded is not None and "=?" not in folded
    assert all(len(line) <= 78 for line in f"Subject: {folded}".split("\n"))
