"""The dashboard's email card says when the SMTP relay is unreachable, as seen by the engine
that delivers: an attached console reads it from the database, not from its own memory."""

from __future__ import annotations

import dataclasses
import socket
from typing import TYPE_CHECKING

from textual.widgets import Static

from vertex_tui.engine.engine import Engine
from vertex_tui.screens.dashboard import DashboardScreen

if TYPE_CHECKING:
    from conftest import Console

SIZE = (100, 30)


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_email_card_shows_the_relay_outage_of_the_delivering_engine(
        console: Console) -> None:
    down = dataclasses.replace(console.settings, smtp_port=refused_port())
    async with Engine(down, run=["email"], clock=console.clock) as delivering:
        await delivering.email.enqueue(to="card@example.org", subject="s", body="b")

        async def published() -> bool:
            doc = await delivering.email.status()
            return bool(delivering.email.relay.is_open and doc["smtp"]["error"])

        await console.wait_for(published, message="the relay circuit to open")
        since = (await delivering.email.status())["smtp"]["since"]

        engine = await console.engine()  # runs nothing: it knows only the database
        app = console.app(engine, attached=True)
        async with app.run_test(size=SIZE) as pilot:
            assert isinstance(app.screen, DashboardScreen)

            def card() -> str:
                return str(app.screen.query_one("#card-email .card-body", Static).render())

            await console.wait_for(lambda: "SMTP relay unreachable" in card(),
                                   message="the card to show the outage")
            await console.settle(pilot)
            text = card()
    assert since is not None
    assert f"SMTP relay unreachable since {since[:10]} {since[11:16]} (" in text
    assert "connection failed" in text
