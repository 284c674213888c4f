"""Named leases: a row with an owner and an expiry, so one process at a time does a job.

A lease is acquired when free, expired, or already ours; renewing extends it only while we
still own it; releasing deletes it only if it is ours. All three are single statements, so
two processes racing for one lease cannot both win.
"""

from __future__ import annotations

import logging
import os
import socket

from vertex_tui.engine.store import engines as engines_store
from vertex_tui.engine.store import leases as store
from vertex_tui.engine.store.db import Database
from vertex_tui.engine.store.leases import ALIVE_ENGINES

__all__ = ["ALIVE_ENGINES", "Leases", "dead_here", "live_holders", "process_alive"]

log = logging.getLogger(__name__)


def process_alive(pid: int) -> bool:
    """True if a process with `pid` exists on this host (whoever owns it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_here(owner: str) -> bool:
    """True if `owner` (host:pid:nonce, see engine.new_owner) is a process of this host
    that no longer exists (killed, crashed): what it holds can be freed at once."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid))


async def live_holders(db: Database, names: list[str], now: float) -> dict[str, str]:
    """Lease name -> owner, for those of `names` held, unexpired, by a process that still
    runs: not one of this host whose process is gone (SIGKILLed, crashed), nor an engine
    whose heartbeat has expired (killed elsewhere, frozen, cut off). Their leases run on
    until they expire, but name nobody who will act on them: status and jobs say "-", not
    "held by" a dead engine."""
    held = await engines_store.holders(db, names, now)
    if not held:
        return held
    stale = await engines_store.stale_heartbeats(db, now)
    return {name: owner for name, owner in held.items()
            if owner not in stale and not dead_here(owner)}


class Leases:
    """Lease operations for one owner (one engine process)."""

    def __init__(self, db: Database, owner: str) -> None:
        self._db = db
        self.owner = owner

    async def acquire(self, name: str, now: float, ttl: float) -> bool:
        """Take or extend `name` until `now + ttl`; True if we hold it afterwards."""
        return await store.acquire(self._db, name, self.owner, now, now + ttl)

    async def release(self, name: str) -> None:
        await store.release(self._db, name, self.owner)

    async def take_over(self, name: str, dead_owner: str, now: float, ttl: float) -> bool:
        """Take `name` from `dead_owner`, a process known to be gone; True if we hold it.

        Only `dead_owner`'s row is removed, so of several processes doing this at once
        exactly one acquires the lease afterwards."""
        await store.release(self._db, name, dead_owner)
        return await self.acquire(name, now, ttl)

    async def live_holder(self, name: str, now: float) -> str | None:
        """The owner of `name` if it is held by a live process. A holder of this host whose
        process is gone frees it here and now, instead of blocking everyone until its
        expiry (a SIGKILLed restore, a crashed CLI run)."""
        holder = await self.holder(name, now)
        if holder is not None and dead_here(holder):
            await store.release(self._db, name, holder)
            log.warning("lease %s was held by %s, which no longer runs; freed it", name, holder)
            return None
        return holder

    async def release_all(self) -> None:
        if self._db.corrupt:
            return  # a damaged file is left as found; its leases expire or `doctor` frees them
        await store.release_all(self._db, self.owner)

    async def holder(self, name: str, now: float) -> str | None:
        """The owner of `name` if it is held and unexpired."""
        return await store.holder(self._db, name, now)

    async def live_owners(self, now: float) -> list[str]:
        """Owners of any unexpired lease (engines, and CLI runs holding a job's lease)."""
        return await store.live_owners(self._db, now)

    async def alive_engines(self, now: float) -> list[str]:
        """Owners of unexpired engine heartbeat leases (`engine:<owner>`), less those of this
        host whose process is gone: a SIGKILLed engine's heartbeat outlives it by up to its
        TTL."""
        return [o for o in await store.alive_engines(self._db, now) if not dead_here(o)]
