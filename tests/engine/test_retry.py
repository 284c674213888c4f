"""The pure retry policy: delay per attempt, jitter bounds, and the job's next state."""

from __future__ import annotations

import random

import pytest

from vertex_tui.engine.email.retry import Decision, Outcome, decide, retry_delay

DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 16.0), (7, 16.0), (100, 16.0)],
)
def test_delay_per_attempt_without_jitter_last_one_repeating(attempt: int, expected: float) -> None:
    assert retry_delay(attempt, DELAYS, jitter=0) == expected


@pytest.mark.parametrize(
    ("delays", "attempt", "expected"),
    [
        ((0.5, 3.0), 1, 0.5),
        ((0.5, 3.0), 2, 3.0),
        ((0.5, 3.0), 9, 3.0),
        ((30.0,), 1, 30.0),
        ((30.0,), 4, 30.0),
        ((0.0,), 3, 0.0),
    ],
)
def test_delay_for_other_schedules(
    delays: tuple[float, ...], attempt: int, expected: float
) -> None:
    assert retry_delay(attempt, delays, jitter=0) == expected


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        retry_delay(attempt, DELAYS)


@pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5, 6, 10])
@pytest.mark.parametrize("jitter", [0.1, 0.5])
def test_jitter_stays_within_bounds(attempt: int, jitter: float) -> None:
    base = DELAYS[min(attempt, len(DELAYS)) - 1]
    rand = random.Random(1234)
    values = [retry_delay(attempt, DELAYS, jitter=jitter, rand=rand) for _ in range(500)]
    assert all(base <= v <= base * (1 + jitter) for v in values)
    # Jitter actually spreads the retries: not all equal, and it uses most of its range.
    assert len(set(values)) > 400
    assert max(values) - min(values) > 0.8 * jitter * base


def test_jitter_is_reproducible_with_a_seeded_random() -> None:
    first = [retry_delay(3, DELAYS, rand=random.Random(7)) for _ in range(3)]
    second = [retry_delay(3, DELAYS, rand=random.Random(7)) for _ in range(3)]
    assert first == second
    assert retry_delay(3, DELAYS, rand=random.Random(7)) != retry_delay(
        3, DELAYS, rand=random.Random(8)
    )


def test_default_jitter_is_at_most_ten_percent() -> None:
    rand = random.Random(99)
    values = [retry_delay(2, DELAYS, rand=rand) for _ in range(200)]
    assert all(2.0 <= v <= 2.2 for v in values)
    assert any(v > 2.0 for v in values)


def test_zero_delay_has_no_jitter() -> None:
    assert retry_delay(1, (0.0, 5.0), jitter=0.5, rand=random.Random(1)) == 0.0


# --- decide ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "attempt", "max_attempts", "expected"),
    [
        (Outcome.SENT, 1, 5, Decision(status="sent", retry_at=None)),
        (Outcome.SENT, 5, 5, Decision(status="sent", retry_at=None)),
        (Outcome.SENT, 9, 5, Decision(status="sent", retry_at=None)),
        (Outcome.PERMANENT, 1, 5, Decision(status="failed", retry_at=None)),
        (Outcome.PERMANENT, 4, 5, Decision(status="failed", retry_at=None)),
        (Outcome.TRANSIENT, 1, 5, Decision(status="pending", retry_at=NOW + 1.0)),
        (Outcome.TRANSIENT, 2, 5, Decision(status="pending", retry_at=NOW + 2.0)),
        (Outcome.TRANSIENT, 4, 5, Decision(status="pending", retry_at=NOW + 8.0)),
        (Outcome.TRANSIENT, 5, 5, Decision(status="failed", retry_at=None)),
        (Outcome.TRANSIENT, 6, 5, Decision(status="failed", retry_at=None)),
        (Outcome.TRANSIENT, 1, 1, Decision(status="failed", retry_at=None)),
        (Outcome.TRANSIENT, 7, 10, Decision(status="pending", retry_at=NOW + 16.0)),
    ],
)
def test_decide_table(
    outcome: Outcome, attempt: int, max_attempts: int, expected: Decision
) -> None:
    got = decide(
        outcome, attempt=attempt, max_attempts=max_attempts, now=NOW, delays=DELAYS, jitter=0
    )
    assert got == expected


def test_transient_retry_time_includes_bounded_jitter() -> None:
    rand = random.Random(42)
    for _ in range(200):
        got = decide(
            Outcome.TRANSIENT, attempt=3, max_attempts=5, now=NOW, delays=DELAYS, rand=rand
        )
        assert got.status == "pending"
        assert got.retry_at is not None
        assert NOW + 4.0 <= got.retry_at <= NOW + 4.0 * 1.1


def test_full_schedule_of_a_job_that_never_gets_through() -> None:
    """Attempts 1..4 are retried after 1, 2, 4, 8 s; attempt 5 fails the job for good."""
    now, waits, status, attempt = NOW, [], "pending", 0
    while status == "pending":
        attempt += 1
        decision = decide(
            Outcome.TRANSIENT, attempt=attempt, max_attempts=5, now=now, delays=DELAYS, jitter=0
        )
        status = decision.status
        if decision.retry_at is not None:
            waits.append(decision.retry_at - now)
            now = decision.retry_at
    assert status == "failed"
    assert attempt == 5
    assert waits == [1.0, 2.0, 4.0, 8.0]


def test_outcome_values_are_the_attempt_outcomes_stored() -> None:
    assert {str(o) for o in Outcome} == {"sent", "transient", "permanent"}
