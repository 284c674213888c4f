"""Injectable clocks: the system clock, and a fake one that tests move by hand.

Services never call `time.time()` or `asyncio.sleep()` directly; they ask their clock, so a
test can jump a retry schedule or a lease expiry forward instead of waiting for it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from datetime import UTC, datetime
from typing import Any, Protocol


class Clock(Protocol):
    """What services need from time."""

    def time(self) -> float:
        """Seconds since the epoch (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """Wait for `event` or `timeout` seconds of this clock's time; True if the event fired."""
        ...


def to_datetime(ts: float | None) -> datetime | None:
    """Epoch seconds to an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def isoformat(ts: float | None) -> str | None:
    """Epoch seconds to ISO 8601 with offset, second precision (None stays None)."""
    dt = to_datetime(ts)
    return None if dt is None else dt.isoformat(timespec="seconds")


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that lands as the event fires, and a loop cancelled at shutdown would run on.
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                await event.wait()
        except TimeoutError:
            return False
        return True


class ServerClock(SystemClock):
    """A system clock read on the database server's timeline: `base`'s time plus `offset`
    (server minus local, measured by `store.server_time.clock_offset` and kept current by the
    engine's heartbeat). Engines on several hosts over one PostgreSQL use it so that leases and
    retry times mean the same instant on every host, whatever their clocks say."""

    def __init__(self, base: SystemClock, offset: float = 0.0) -> None:
        self.base = base
        self.offset = offset

    def time(self) -> float:
        return self.base.time() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.base.sleep(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        return await self.base.wait(event, timeout)


class FakeClock:
    """A clock that only moves when a test calls `advance()` or `set()`.

    Sleepers wake in deadline order once the clock passes their deadline.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self._now

    def _sleeper(self, seconds: float) -> asyncio.Future[None]:
        """A future that `advance`/`set` resolves once the clock reaches now + `seconds`."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        return fut

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        await self._sleeper(seconds)

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        if event.is_set():
            return True
        if timeout <= 0:
            await asyncio.sleep(0)
            return event.is_set()
        # The deadline is taken now, not when a task for it first runs: a clock moved in
        # between would otherwise push the deadline a whole timeout past the move.
        sleeper = self._sleeper(timeout)
        waiter = asyncio.ensure_future(event.wait())
        either: set[asyncio.Future[Any]] = {waiter, sleeper}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            sleeper.cancel()
        return event.is_set()

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self.set(self._now + seconds)

    def set(self, now: float) -> None:
        """Jump to `now` (never backwards) and wake the sleepers that are due."""
        self._now = max(self._now, now)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
