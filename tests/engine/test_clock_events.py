"""The injectable clock (FakeClock, SystemClock) and the event bus. No database here, so
nothing to run per backend (the server's clock on PostgreSQL, `ServerClock`:
test_pg_server_time.py)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import pytest

from vertex_tui.engine.clock import FakeClock, SystemClock, isoformat, to_datetime
from vertex_tui.engine.events import Event, EventBus, ServiceErrored, ServiceStarted

START = 1_800_000_000.0


async def settle(rounds: int = 5) -> None:
    """Let woken tasks run (a woken sleeper resumes on a later loop iteration)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


# --- FakeClock ----------------------------------------------------------------------------------


def test_fake_clock_starts_where_told_and_only_moves_by_hand() -> None:
    clock = FakeClock(START)
    assert clock.time() == START
    assert clock.time() == START
    clock.advance(2.5)
    assert clock.time() == START + 2.5
    clock.set(START + 10)
    assert clock.time() == START + 10


def test_fake_clock_never_goes_backwards() -> None:
    clock = FakeClock(START)
    clock.set(START - 100)
    assert clock.time() == START
    clock.advance(-5)
    assert clock.time() == START


async def test_sleep_wakes_only_once_time_passes_its_deadline() -> None:
    clock = FakeClock(START)
    task = asyncio.create_task(clock.sleep(10))
    await settle()
    assert not task.done()
    clock.advance(9.999)
    await settle()
    assert not task.done()
    clock.advance(0.001)
    await settle()
    assert task.done() and task.exception() is None


async def test_sleepers_wake_in_deadline_order() -> None:
    clock = FakeClock(START)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [
        asyncio.create_task(sleeper("c", 30)),
        asyncio.create_task(sleeper("a", 10)),
        asyncio.create_task(sleeper("b", 20)),
        asyncio.create_task(sleeper("a2", 10)),
    ]
    await settle()
    clock.advance(15)
    await settle()
    assert woke == ["a", "a2"]
    clock.advance(100)
    await settle()
    assert woke == ["a", "a2", "b", "c"]
    await asyncio.gather(*tasks)


async def test_sleep_of_zero_or_less_returns_without_advancing() -> None:
    clock = FakeClock(START)
    await asyncio.wait_for(clock.sleep(0), 1)
    await asyncio.wait_for(clock.sleep(-3), 1)
    assert clock.time() == START


async def test_sleep_is_relative_to_the_time_it_started() -> None:
    clock = FakeClock(START)
    clock.advance(100)
    task = asyncio.create_task(clock.sleep(5))
    await settle()
    clock.set(START + 104)
    await settle()
    assert not task.done()
    clock.set(START + 105)
    await settle()
    assert task.done()


async def test_cancelled_sleeper_does_not_break_advance() -> None:
    clock = FakeClock(START)
    cancelled = asyncio.create_task(clock.sleep(5))
    kept = asyncio.create_task(clock.sleep(6))
    await settle()
    cancelled.cancel()
    await settle()
    clock.advance(10)  # must skip the cancelled future without raising
    await settle()
    assert cancelled.cancelled()
    assert kept.done() and kept.exception() is None


async def test_wait_returns_true_at_once_if_the_event_is_set() -> None:
    clock = FakeClock(START)
    event = asyncio.Event()
    event.set()
    assert await asyncio.wait_for(clock.wait(event, 60), 1) is True


async def test_wait_returns_true_when_the_event_fires_before_the_timeout() -> None:
    clock = FakeClock(START)
    event = asyncio.Event()
    task = asyncio.create_task(clock.wait(event, 60))
    await settle()
    assert not task.done()
    clock.advance(30)
    await settle()
    assert not task.done()
    event.set()
    await settle()
    assert task.done() and task.result() is True
    # The abandoned timeout sleeper is harmless when its deadline passes later.
    clock.advance(100)
    await settle()
    assert task.result() is True


async def test_wait_returns_false_once_clock_time_passes_the_timeout() -> None:
    clock = FakeClock(START)
    event = asyncio.Event()
    task = asyncio.create_task(clock.wait(event, 60))
    await settle()
    clock.advance(59)
    await settle()
    assert not task.done()
    clock.advance(1)
    await settle()
    assert task.done() and task.result() is False
    assert not event.is_set()


async def test_wait_times_out_relative_to_the_time_it_was_called() -> None:
    """A clock moved in the loop iteration right after `wait()` was called (the caller has
    gone to sleep, as far as the mover can tell) still ends the wait at call time + timeout,
    not a full timeout after the move (a worker slept a whole poll past a due retry)."""
    clock = FakeClock(START)
    event = asyncio.Event()
    task = asyncio.create_task(clock.wait(event, 1.0))
    await asyncio.sleep(0)  # the task ran to its first suspension: wait() was called
    clock.advance(1.0)
    await settle()
    assert task.done() and task.result() is False


async def test_wait_does_not_time_out_on_real_time() -> None:
    clock = FakeClock(START)
    event = asyncio.Event()
    task = asyncio.create_task(clock.wait(event, 0.01))
    await asyncio.sleep(0.05)  # real time passes; the fake clock does not
    assert not task.done()
    clock.advance(0.01)
    await settle()
    assert task.result() is False


# --- SystemClock --------------------------------------------------------------------------------


async def test_system_clock_wait_and_sleep() -> None:
    clock = SystemClock()
    event = asyncio.Event()
    assert await clock.wait(event, 0.01) is False
    event.set()
    assert await clock.wait(event, 10) is True
    before = clock.time()
    await clock.sleep(-1)  # negative sleeps are clamped, not errors
    await clock.sleep(0.01)
    assert clock.time() >= before


def test_time_conversions() -> None:
    assert to_datetime(None) is None
    assert isoformat(None) is None
    assert to_datetime(0) == datetime(1970, 1, 1, tzinfo=UTC)
    assert isoformat(START) == "2027-01-15T08:00:00+00:00"


# --- EventBus -----------------------------------------------------------------------------------


def _started(n: int) -> ServiceStarted:
    return ServiceStarted(at=START + n, service=f"s{n}")


def test_subscribers_get_every_event_in_order() -> None:
    bus = EventBus()
    first: list[Event] = []
    second: list[Event] = []
    bus.subscribe(first.append)
    bus.subscribe(second.append)
    events = [_started(i) for i in range(3)]
    for event in events:
        bus.publish(event)
    assert first == events
    assert second == events


def test_unsubscribe_stops_delivery_and_is_idempotent() -> None:
    bus = EventBus()
    got: list[Event] = []
    other: list[Event] = []
    unsubscribe = bus.subscribe(got.append)
    bus.subscribe(other.append)
    bus.publish(_started(1))
    unsubscribe()
    unsubscribe()
    bus.publish(_started(2))
    assert got == [_started(1)]
    assert other == [_started(1), _started(2)]


def test_publish_without_subscribers_is_fine() -> None:
    EventBus().publish(_started(1))


def test_subscriber_may_unsubscribe_while_being_called() -> None:
    bus = EventBus()
    got: list[Event] = []
    after: list[Event] = []

    def once(event: Event) -> None:
        got.append(event)
        unsubscribe()

    unsubscribe = bus.subscribe(once)
    bus.subscribe(after.append)
    bus.publish(_started(1))
    bus.publish(_started(2))
    assert got == [_started(1)]
    assert after == [_started(1), _started(2)]


def test_raising_subscriber_is_logged_and_does_not_break_publish(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    before: list[Event] = []
    after: list[Event] = []

    def broken(event: Event) -> None:
        raise ValueError("subscriber bug")

    bus.subscribe(before.append)
    bus.subscribe(broken)
    bus.subscribe(after.append)
    event = ServiceErrored(at=START, service="email", error="x")
    with caplog.at_level(logging.ERROR, logger="vertex_tui.engine.events"):
        bus.publish(event)
        bus.publish(event)
    assert before == [event, event]
    assert after == [event, event]
    records = [r for r in caplog.records if r.name == "vertex_tui.engine.events"]
    assert len(records) == 2
    assert all(r.levelno == logging.ERROR for r in records)
    assert "ServiceErrored" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)
    # The broken subscriber stays subscribed (it is the subscriber's bug, not the bus's).
    assert "subscriber bug" in caplog.text


async def test_queue_receives_events() -> None:
    bus = EventBus()
    q, unsubscribe = bus.queue(maxsize=10)
    bus.publish(_started(1))
    bus.publish(_started(2))
    assert await asyncio.wait_for(q.get(), 1) == _started(1)
    assert q.get_nowait() == _started(2)
    unsubscribe()
    bus.publish(_started(3))
    assert q.empty()


async def test_queue_drops_oldest_when_full() -> None:
    bus = EventBus()
    q, _ = bus.queue(maxsize=3)
    for i in range(7):
        bus.publish(_started(i))  # never blocks nor raises
    assert q.qsize() == 3
    assert [q.get_nowait() for _ in range(3)] == [_started(4), _started(5), _started(6)]


async def test_a_full_queue_does_not_starve_other_subscribers() -> None:
    bus = EventBus()
    q, _ = bus.queue(maxsize=1)
    got: list[Event] = []
    bus.subscribe(got.append)
    for i in range(5):
        bus.publish(_started(i))
    assert got == [_started(i) for i in range(5)]
    assert q.get_nowait() == _started(4)


async def test_system_clock_wait_never_swallows_a_cancellation() -> None:
    """The event fires and the waiter is cancelled in the same loop step (a service loop
    stopped at shutdown just as work arrived): the cancellation wins, or the loop runs on."""
    clock = SystemClock()
    event = asyncio.Event()
    task = asyncio.create_task(clock.wait(event, 10.0))
    await asyncio.sleep(0)  # the task now waits on the event
    event.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_system_clock_wait_reports_event_or_timeout() -> None:
    clock = SystemClock()
    event = asyncio.Event()
    assert await clock.wait(event, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, event.set)
    assert await clock.wait(event, 5.0) is True
    assert await clock.wait(event, 0.0) is True  # already set
