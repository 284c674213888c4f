"""Engines on hosts whose clocks disagree share one timeline on PostgreSQL: the server's.

Skewed hosts are engines with a system clock an hour off (a real clock, shifted); the server
is real. Every time an engine passes to the store (`now`, lease and retry expiries) is then
the server's: a console's request is not stale to an engine an hour ahead, a live lease is not
expired to it. On its own clock (the control) the request looks an hour old and is dropped."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from vertex_tui.engine.clock import ServerClock, SystemClock
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import requests
from vertex_tui.engine.store.backend import open_database
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.server_time import clock_offset, offset_of

HOUR = 3600.0


class SkewedClock(SystemClock):
    """This host's clock, `skew` seconds off the true time."""

    def __init__(self, skew: float) -> None:
        self.skew = skew

    def time(self) -> float:
        return time.time() + self.skew


@pytest.mark.parametrize(("samples", "offset"), [
    ([(10.0, 20.0, 12.0)], 9.0),                      # server 20 at local 11
    ([(10.0, 20.0, 16.0), (20.0, 25.5, 21.0)], 5.0),  # the shortest trip wins
    ([(100.0, 40.0, 100.0)], -60.0),                  # the server is behind
])
def test_the_offset_comes_from_the_shortest_round_trip(
        samples: list[tuple[float, float, float]], offset: float) -> None:
    assert offset_of(samples) == offset


async def test_the_offset_measures_a_skewed_local_clock(backend_db: Database) -> None:
    offset = await clock_offset(backend_db, SkewedClock(-HOUR).time)
    assert HOUR - 60 < offset < HOUR + 60  # the server is an hour ahead of that clock


async def test_a_skewed_engine_works_on_the_servers_time(
        backend_settings_factory: Callable[..., Settings], backend: str) -> None:
    settings = backend_settings_factory()
    console_db = await open_database(settings)  # a console on a host with a true clock
    try:
        assert await Leases(console_db, "holder").acquire("video", time.time(), 60)
        ahead = SkewedClock(+HOUR)
        first = await requests.submit(console_db, action="video.check", args={}, actor="op",
                                      at=time.time())
        # The control: on its own clock the engine finds the fresh request an hour old.
        assert await requests.pick(console_db, owner="skewed", at=ahead.time()) == []
        async with Engine(settings, clock=ahead, run=[]) as engine:
            if backend == "sqlite":  # one host: its own clock, as before
                assert engine.clock is ahead
                return
            assert isinstance(engine.clock, ServerClock) and engine.clock.base is ahead
            assert abs(engine.clock.time() - time.time()) < 60
            picked = await requests.pick(engine.db, owner=engine.owner, at=engine.clock.time())
            assert [r.id for r in picked] == [first]
            assert not await engine.leases.acquire("video", engine.clock.time(), 60)
            assert await engine.leases.live_holder("video", engine.clock.time()) == "holder"
    finally:
        await console_db.close()
