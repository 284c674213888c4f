"""A loopback SMTP sink (aiosmtpd) that records what it receives and misbehaves on request.

Used by the demo (mail goes nowhere but is counted), by the tests (a real SMTP server on
127.0.0.1) and by the benchmarks (a sink in a separate process):

    python -m vertex_tui.sink --port 2525 --record received.jsonl [--fail-451 0.1]
        [--reject 'bounce@*'] [--drop-every 7] [--hang]

Behaviours: accept and record; answer 451 to a fraction of messages (seeded, repeatable);
550 for recipients matching glob patterns; drop the connection in the middle of DATA for
every n-th message; never answer DATA (hang) so clients time out.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import json
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Received:
    """One message the sink accepted."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str | None
    subject: str | None
    data: bytes
    at: float


@dataclass
class Behaviour:
    fail_451: float = 0.0
    reject: tuple[str, ...] = ()
    drop_every: int = 0
    hang: bool = False
    seed: int = 1


@dataclass
class SinkHandler:
    """aiosmtpd handler: the hooks below implement `Behaviour` and record accepted mail."""

    behaviour: Behaviour = field(default_factory=Behaviour)
    record_path: Path | None = None
    received: list[Received] = field(default_factory=list)
    attempts: int = 0

    def __post_init__(self) -> None:
        self._rand = random.Random(self.behaviour.seed)
        self._lock = threading.Lock()
        self._file = self.record_path.open("a", buffering=1) if self.record_path else None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if any(fnmatch.fnmatch(address.lower(), p.lower()) for p in self.behaviour.reject):
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.attempts += 1
            n = self.attempts
        b = self.behaviour
        if b.hang:
            await asyncio.sleep(3600)
        if b.drop_every and n % b.drop_every == 0:
            if isinstance(server.transport, asyncio.WriteTransport):
                server.transport.abort()
            return "421 closing"
        if b.fail_451 and self._rand.random() < b.fail_451:
            return "451 4.3.0 try again later"
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        msg = message_from_bytes(data, policy=default_policy)
        item = Received(
            sender=str(envelope.mail_from),
            recipients=tuple(envelope.rcpt_tos),
            message_id=msg.get("Message-ID"),
            subject=msg.get("Subject"),
            data=data,
            at=time.time(),
        )
        with self._lock:
            self.received.append(item)
            if self._file is not None:
                self._file.write(
                    json.dumps(
                        {
                            "sender": item.sender,
                            "recipients": list(item.recipients),
                            "message_id": item.message_id,
                            "subject": item.subject,
                            "at": item.at,
                        }
                    )
                    + "\n"
                )
        return "250 2.0.0 OK queued"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class Sink:
    """A running sink on 127.0.0.1 (its own thread and loop). Use as a context manager."""

    def __init__(
        self, port: int = 0, behaviour: Behaviour | None = None, record_path: Path | None = None
    ) -> None:
        self.handler = SinkHandler(behaviour or Behaviour(), record_path)
        self._controller = Controller(
            self.handler, hostname="127.0.0.1", port=port or _free_port(), ready_timeout=10
        )

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def start(self) -> Sink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()
        self.handler.close()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m vertex_tui.sink", description=__doc__)
    p.add_argument("--port", type=int, default=2525)
    p.add_argument("--record", type=Path, help="append one JSON line per accepted message")
    p.add_argument("--fail-451", type=float, default=0.0, help="fraction answered 451")
    p.add_argument("--reject", action="append", default=[], help="550 for recipients like this")
    p.add_argument("--drop-every", type=int, default=0, help="drop every n-th DATA")
    p.add_argument("--hang", action="store_true", help="never answer DATA")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    behaviour = Behaviour(
        fail_451=args.fail_451,
        reject=tuple(args.reject),
        drop_every=args.drop_every,
        hang=args.hang,
        seed=args.seed,
    )
    sink = Sink(args.port, behaviour, args.record).start()
    print(f"listening on 127.0.0.1:{sink.port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sink.stop()


if __name__ == "__main__":
    main()
