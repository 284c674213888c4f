"""Pure retry policy: how a delivery outcome changes a job, and when it is tried again."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, kw_only=True)
class Decision:
    """What to do with a job after an attempt: its new status and, if pending, when to retry."""

    status: str
    retry_at: float | None


_SENT = Decision(status="sent", retry_at=None)  # frozen: one instance serves every send


def retry_delay(
    attempt: int, delays: Sequence[float], jitter: float = 0.1, rand: random.Random | None = None
) -> float:
    """Seconds before the next try after failed attempt `attempt` (1-based).

    `delays[attempt - 1]`, the last delay repeating, plus up to `jitter` of it at random so
    that a burst of failures does not retry in lockstep.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    base = delays[min(attempt, len(delays)) - 1]
    spread = (rand or random).uniform(0, jitter * base) if jitter and base else 0.0
    return base + spread


def decide(
    outcome: Outcome,
    *,
    attempt: int,
    max_attempts: int,
    now: float,
    delays: Sequence[float],
    jitter: float = 0.1,
    rand: random.Random | None = None,
    relay: bool = False,
) -> Decision:
    """The job's next state after attempt number `attempt` ended with `outcome`.

    `relay`: the relay itself failed (see relay.py). Never the message's fault, so never
    `failed`, whatever attempt it was: pending, due at once (the relay circuit holds it back
    until the relay answers again).
    """
    if outcome is Outcome.SENT:
        return _SENT
    if relay:
        return Decision(status="pending", retry_at=now)
    if outcome is Outcome.PERMANENT or attempt >= max_attempts:
        return Decision(status="failed", retry_at=None)
    return Decision(status="pending", retry_at=now + retry_delay(attempt, delays, jitter, rand))
