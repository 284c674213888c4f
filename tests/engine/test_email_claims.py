"""Claims and leases on one database shared by several claimers (objects and processes),
lease expiry of a dead worker, fencing of a late completion, waking and polling, and the
durability of enqueue. Each test on SQLite and on PostgreSQL; a FakeClock moves the leases on
both (on PostgreSQL it stands in for the server's clock: store.server_time)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.db import database_of, query
from support.fakeclock import database_on

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock
from vertex_tui.engine.email import workers
from vertex_tui.engine.email.models import ClaimedJob, EmailJobDetail
from vertex_tui.engine.email.transport import NullTransport
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import InvalidMessage
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store import email as store
from vertex_tui.engine.store.db import Database

# Only the email service: these tests are about it alone.
EMAIL = ["email"]

if TYPE_CHECKING:
    from conftest import Idle, JobWhen, Query, TestSink, WaitFor

ROOT = Path(__file__).resolve().parents[2]


def is_sent(d: EmailJobDetail) -> bool:
    return d.job.status == "sent"


def messages(n: int, prefix: str = "m") -> list[dict[str, str]]:
    return [
        {"to": f"{prefix}{i}@example.com", "subject": f"{prefix}{i}", "body": "b"} for i in range(n)
    ]


async def fill(settings: Settings, clock: FakeClock, n: int) -> list[int]:
    """Enqueue `n` messages through an engine that runs no workers."""
    async with Engine(settings, clock=clock, run=[]) as admin:
        return await admin.email.enqueue_many(messages(n))


async def claim_all(db: Database, owner: str, now: float) -> list[int]:
    got: list[int] = []
    while True:
        batch = await store.claim(db, owner=owner, now=now, lease_until=now + 60, limit=16)
        if not batch:
            return got
        assert all(j.owner == owner and j.attempt == 1 for j in batch)
        got += [j.id for j in batch]


# ---- atomic claims ----------------------------------------------------------------------------


async def test_two_databases_claiming_concurrently_never_share_a_job(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    ids = await fill(settings, clock, 2000)
    now = clock.time()
    async with database_on(settings, clock) as first, database_on(settings, clock) as second:
        got_a, got_b = await asyncio.gather(claim_all(first, "A", now), claim_all(second, "B", now))
    assert not set(got_a) & set(got_b)
    assert sorted(got_a + got_b) == sorted(ids)
    assert len(got_a) + len(got_b) == 2000
    assert got_a and got_b, "both claimers should have taken part"
    owners = dict(query(settings, "SELECT id, lease_owner FROM email_jobs"))
    assert all(owners[i] == "A" for i in got_a)
    assert all(owners[i] == "B" for i in got_b)
    assert query(settings, "SELECT DISTINCT status, attempts FROM email_jobs") == [
        ("sending", 1)
    ]


CLAIMER = textwrap.dedent(
    """
    import asyncio, json, sys
    from vertex_tui.engine.store import email as store
    from vertex_tui.engine.store.db import Database

    async def main(target, owner, now, out):
        if target.startswith("postgresql://"):
            from vertex_tui.engine.store.pg import PgDatabase
            db = await PgDatabase.open(target, migrate=False)
            db.use_test_clock(lambda: now)  # the test's fake clock, stopped at `now`
        else:
            db = await Database.open(target)
        print("ready", flush=True)
        sys.stdin.readline()  # start together
        got = []
        try:
            while True:
                batch = await store.claim(
                    db, owner=owner, now=now, lease_until=now + 60, limit=16
                )
                if not batch:
                    break
                got += [j.id for j in batch]
        finally:
            await db.close()
        with open(out, "w") as fh:
            json.dump(got, fh)

    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]))
    """
)


@pytest.mark.slow
def test_two_processes_claiming_concurrently_never_share_a_job(
    backend_settings: Settings, clock: FakeClock, tmp_path: Path
) -> None:
    settings = backend_settings
    ids = asyncio.run(fill(settings, clock, 2000))
    procs = []
    outs = [tmp_path / "p1.json", tmp_path / "p2.json"]
    try:
        for owner, out in zip(("P1", "P2"), outs, strict=True):
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        CLAIMER,
                        str(database_of(settings)),
                        owner,
                        repr(clock.time()),
                        str(out),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=ROOT,
                )
            )
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.wait(60) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
    got = [json.loads(out.read_text()) for out in outs]
    assert got[0] and got[1], "both processes should have claimed some"
    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == sorted(ids)
    owners = dict(query(settings, "SELECT id, lease_owner FROM email_jobs"))
    assert all(owners[i] == "P1" for i in got[0])
    assert all(owners[i] == "P2" for i in got[1])


async def test_two_engines_on_one_database_deliver_each_message_once(
    backend_settings_factory: Callable[..., Settings], sink: TestSink, wait_for: WaitFor,
    query: Query,
) -> None:
    n = 150
    settings = backend_settings_factory(sink=sink, email_workers=3, email_poll_interval=0.1)
    async with Engine(settings, run=EMAIL) as one, Engine(settings, run=EMAIL) as two:
        await one.email.enqueue_many(messages(n, "x"))
        await two.email.enqueue_many(messages(n, "y"))

        async def all_sent() -> bool:
            return (await one.email.stats()).sent == 2 * n

        await wait_for(all_sent, timeout=30, message="every message sent")
        owners = {
            row[0].split("/")[0]
            for row in query(settings, "SELECT owner FROM email_attempts")
        }
    ids = [r.message_id for r in sink.received]
    assert len(ids) == 2 * n
    assert len(set(ids)) == 2 * n
    assert owners == {one.owner, two.owner}


# ---- leases and fencing ----------------------------------------------------------------------


async def test_job_of_a_dead_worker_is_due_again_after_its_lease_and_delivered(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    settings = backend_settings_factory(sink=sink, email_lease_seconds=60,
                                        email_poll_interval=1.0)
    [job_id] = await fill(settings, clock, 1)
    # A worker of a process that then dies: it claims and is never heard of again.
    async with database_on(settings, clock) as db:
        [claimed] = await store.claim(
            db, owner="dead:1:x/w0", now=clock.time(), lease_until=clock.time() + 60, limit=16
        )
    assert claimed.id == job_id

    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        clock.advance(30)  # the lease still holds: nobody may touch the job
        await idle(engine, clock)  # the housekeeper and the worker looked at +30 s
        held = await engine.email.get_job(job_id)
        assert held.job.status == "sending"
        assert sink.handler.attempts == 0

        def tick(d: EmailJobDetail) -> bool:
            clock.advance(1.0)  # time moves on: the lease expires, the housekeeper reaps
            return is_sent(d)

        done = await job_when(engine, job_id, tick, "reaped and sent")

    assert [(a.attempt, a.outcome, a.owner) for a in done.history] == [
        (1, "lost", "dead:1:x/w0"),
        (2, "sent", f"{engine.owner}/w0"),
    ]
    assert "lease" in (done.history[0].error or "")
    assert done.history[0].at > held.job.updated_at + 60 - 1e-6
    assert len(sink.received) == 1
    assert sink.received[0].message_id == done.job.message_id


async def test_lost_lease_on_the_last_attempt_fails_the_job(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    settings = backend_settings_factory(email_retry_max_attempts=1)
    [job_id] = await fill(settings, clock, 1)
    async with database_on(settings, clock) as db:
        now = clock.time()
        await store.claim(db, owner="dead", now=now, lease_until=now + 60, limit=1)
        clock.set(now + 59)
        assert await store.reap_expired(db, clock.time()) == 0
        clock.set(now + 60)
        assert await store.reap_expired(db, clock.time()) == 1
        detail = await store.get_job(db, job_id)
    assert detail.job.status == "failed"
    assert detail.job.finished_at == now + 60
    assert [a.outcome for a in detail.history] == ["lost"]


def completion(job_id: int, owner: str, attempt: int, at: float) -> store.Completion:
    return store.Completion(
        job_id=job_id,
        owner=owner,
        attempt=attempt,
        at=at,
        outcome="sent",
        status="sent",
        retry_at=None,
        code=None,
        error=None,
    )


async def test_completion_by_an_owner_that_lost_the_lease_is_refused(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    [job_id] = await fill(settings, clock, 1)
    t = clock.time()

    def at(offset: float) -> float:  # the clock moves on to t + offset
        clock.set(t + offset)
        return clock.time()

    async with database_on(settings, clock) as db:
        [a] = await store.claim(db, owner="A", now=t, lease_until=t + 60, limit=1)
        assert await store.reap_expired(db, at(61)) == 1
        # Reaped but not yet reclaimed: A's late write is refused.
        late = completion(job_id, "A", a.attempt, at(61.5))
        assert await store.complete(db, [late]) == [late]
        [b] = await store.claim(db, owner="B", now=at(62), lease_until=t + 122, limit=1)
        assert (b.id, b.attempt) == (job_id, 2)

        # A finishes its (stale) attempt after B took over: refused, B's state stands.
        stale = completion(job_id, "A", a.attempt, at(63))
        assert await store.complete(db, [stale]) == [stale]
        assert query(
            settings,
            "SELECT status, lease_owner, attempts FROM email_jobs WHERE id = ?",
            (job_id,),
        ) == [("sending", "B", 2)]
        # Same owner name but an older attempt number is refused too.
        assert await store.complete(db, [completion(job_id, "B", 1, t + 63)]) != []

        own = completion(job_id, "B", b.attempt, at(64))
        assert await store.complete(db, [own]) == []
        # Once sent, nobody's late write changes it.
        assert await store.complete(db, [completion(job_id, "A", 1, at(65))]) != []
        detail = await store.get_job(db, job_id)
    assert detail.job.status == "sent"
    assert detail.job.finished_at == t + 64
    assert [(h.attempt, h.outcome, h.owner) for h in detail.history] == [
        (1, "lost", "A"),
        (2, "sent", "B"),
    ]


async def test_engine_worker_that_lost_its_lease_mid_send_has_its_outcome_refused(
    backend_settings_factory: Callable[..., Settings],
    make_sink: Callable[..., TestSink],
    clock: FakeClock,
    job_when: JobWhen,
    wait_for: WaitFor,
) -> None:
    # Each DATA takes 4 s: long enough to open a second engine and lose the lease meanwhile.
    sink = make_sink(delay=4.0)
    settings = backend_settings_factory(sink=sink, email_lease_seconds=60,
                                        email_poll_interval=1.0, smtp_timeout=20.0)
    async with Engine(settings, clock=clock, run=EMAIL) as first:
        seen_first: list[ev.Event] = []
        first.events.subscribe(seen_first.append)
        job_id = await first.email.enqueue(to="late@example.com", subject="s", body="b")
        assert await asyncio.to_thread(sink.handler.data_started.wait, 10)
        # Opened while the first engine's send waits for its DATA reply.
        async with Engine(settings, clock=clock, run=EMAIL) as second:
            # The worker stalls past its lease; the other engine's housekeeper reaps the job
            # (a process never reaps the jobs its own live workers still hold).
            clock.advance(61)

            async def reaped() -> bool:
                detail = await first.email.get_job(job_id)
                if any(a.outcome == "lost" for a in detail.history):
                    return True
                clock.advance(1)  # the second engine's housekeeper may have gone to sleep
                return False

            await wait_for(reaped, message="the job reaped")
            done = await job_when(second, job_id, is_sent, "sent by a new claim", timeout=30)
            await wait_for(
                lambda: any(isinstance(e, ev.CompletionRefused) for e in seen_first),
                message="the stale completion to be refused",
            )
    refused = [e for e in seen_first if isinstance(e, ev.CompletionRefused)]
    assert [(e.job_id, e.attempt) for e in refused] == [(job_id, 1)]
    assert not any(isinstance(e, ev.EmailSent) and e.attempt == 1 for e in seen_first)
    assert [(a.attempt, a.outcome) for a in done.history] == [(1, "lost"), (2, "sent")]
    assert done.job.attempts == 2
    # At-least-once: the stalled send did reach the server; both copies share one Message-ID,
    # so the receiving side can drop the duplicate.
    assert [r.message_id for r in sink.received] == [done.job.message_id] * 2


# ---- waking and polling ----------------------------------------------------------------------


async def test_enqueue_in_the_same_process_wakes_the_workers_at_once(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    # The fake clock never moves and the poll interval is long: only the wake-up can deliver.
    settings = backend_settings_factory(sink=sink, email_poll_interval=30.0, email_workers=3)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await idle(engine, clock)  # every worker asleep on a clock that will not move
        job_id = await engine.email.enqueue(to="now@example.com", subject="s", body="b")
        done = await job_when(engine, job_id, is_sent, "sent without the clock moving", timeout=5)
    assert done.job.finished_at == clock.time()
    assert len(sink.received) == 1


async def test_mail_enqueued_by_another_process_is_seen_within_the_poll_interval(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    poll = 30.0
    settings = backend_settings_factory(sink=sink, email_poll_interval=poll, email_workers=2)
    env = {
        "VERTEX_DB_PATH": str(settings.db_path),
        "PATH": "/usr/bin:/bin",
        "HOME": str(settings.db_path.parent),
    }
    if settings.database_url is not None:
        env["VERTEX_DATABASE_URL"] = settings.database_url.reveal()
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await idle(engine, clock)
        result = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "vertex_tui",
                "email",
                "enqueue",
                "--to",
                "other@example.com",
                "--subject",
                "from elsewhere",
                "--body",
                "b",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        job_id = int(result.stdout.strip())
        # Nothing woke the workers: the job waits for their next poll, one interval away.
        assert (await engine.email.get_job(job_id)).job.status == "pending"
        clock.advance(poll)
        done = await job_when(engine, job_id, is_sent, "sent after one poll interval")
    assert sink.received[0].subject == "from elsewhere"
    assert done.history[0].owner.startswith(engine.owner)


async def test_mail_enqueued_through_another_database_object_is_polled(
    backend_settings_factory: Callable[..., Settings],
    sink: TestSink,
    clock: FakeClock,
    job_when: JobWhen,
    idle: Idle,
) -> None:
    poll = 5.0
    settings = backend_settings_factory(sink=sink, email_poll_interval=poll)
    async with Engine(settings, clock=clock, run=EMAIL) as engine:
        await idle(engine, clock)
        async with Engine(settings, clock=clock, run=[]) as other:
            job_id = await other.email.enqueue(to="o@example.com", subject="s", body="b")
        assert (await engine.email.get_job(job_id)).job.status == "pending"
        clock.advance(poll)
        done = await job_when(engine, job_id, is_sent, "sent after one poll interval")
    assert len(sink.received) == 1
    assert done.job.finished_at == clock.time()


# ---- enqueue -----------------------------------------------------------------------------------


async def test_enqueue_many_is_all_or_nothing(
    backend_settings: Settings, clock: FakeClock, query: Query
) -> None:
    settings = backend_settings
    batch: list[dict[str, Any]] = [
        *messages(3),
        {"to": "not-an-address", "subject": "s", "body": "b"},
        *messages(2, "z"),
    ]
    async with Engine(settings, clock=clock, run=[]) as engine:
        with pytest.raises(InvalidMessage, match=r"message 4\b.*not-an-address"):
            await engine.email.enqueue_many(batch)
        with pytest.raises(InvalidMessage, match=r"message 2\b.*line break"):
            await engine.email.enqueue_many(
                [
                    messages(1)[0],
                    {"to": "a@example.com", "subject": "x\r\nBcc: e@evil.test", "body": "b"},
                ]
            )
        with pytest.raises(InvalidMessage, match=r"message 1\b.*unknown field"):
            await engine.email.enqueue_many(
                [{"to": "a@example.com", "subject": "s", "body": "b", "cc": "c@example.com"}]
            )
        assert (await engine.email.stats()).pending == 0
    assert query(settings, "SELECT count(*) FROM email_jobs") == [(0,)]


async def test_enqueue_refuses_bad_input_with_a_clear_error(
    backend_settings: Settings, clock: FakeClock, query: Query
) -> None:
    settings = backend_settings
    async with Engine(settings, clock=clock, run=[]) as engine:
        with pytest.raises(InvalidMessage, match="invalid"):
            await engine.email.enqueue(to="no-at-sign", subject="s", body="b")
        with pytest.raises(InvalidMessage, match="line break"):
            await engine.email.enqueue(
                to="a@example.com", subject="s", body="b", headers={"X-Tag": "a\nBcc: x@y.z"}
            )
        with pytest.raises(InvalidMessage, match="Message-ID"):
            await engine.email.enqueue(
                to="a@example.com", subject="s", body="b", headers={"Message-ID": "<x@y>"}
            )
    assert query(settings, "SELECT count(*) FROM email_jobs") == [(0,)]


async def test_enqueue_commits_before_returning(
    backend_settings: Settings, clock: FakeClock
) -> None:
    settings = backend_settings
    async with Engine(settings, clock=clock, run=[]) as engine:
        job_id = await engine.email.enqueue(to="d@example.com", subject="durable", body="b")
        # Read at once through a separate connection, while the engine is still open.
        rows = query(
            settings,
            "SELECT status, subject, message_id, next_attempt_at FROM email_jobs WHERE id = ?",
            (job_id,),
        )
        assert len(rows) == 1
        status, subject, message_id, due = rows[0]
        assert (status, subject, due) == ("pending", "durable", clock.time())
        assert message_id.startswith("<")

        ids = await engine.email.enqueue_many(messages(50))
        count = query(
            settings,
            f"SELECT count(*) FROM email_jobs WHERE id IN ({','.join('?' * len(ids))})",
            tuple(ids),
        )
        assert count == [(50,)]
        assert len(set(ids)) == 50
        got = query(
            settings,
            "SELECT id, subject FROM email_jobs WHERE id != ? ORDER BY id",
            (job_id,),
        )
        # The returned ids name the rows in input order.
        assert [r[0] for r in got] == ids
        assert [r[1] for r in got] == [f"m{i}" for i in range(50)]


# ---- claim size --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "seconds", "size"),
    [
        (16, 0.0, workers.CLAIM_BATCH_MAX),  # no measurable time: as large as allowed
        (16, 0.001, workers.CLAIM_BATCH_MAX),  # 16,000/s: 800 in 50 ms, capped
        (16, 0.025, 32),  # 640/s: 32 in 50 ms
        (16, 0.05, 16),  # 320/s
        (16, 0.5, workers.CLAIM_BATCH),  # 32/s (an SMTP relay): never below the base
        (64, 0.05, 64),
        (1, 0.0001, workers.CLAIM_BATCH_MAX),  # a short batch still tells the pace
        (0, 0.0, workers.CLAIM_BATCH),  # cut short (paused, stopped, lease lost): start over
    ],
)
def test_claim_size_follows_the_pace_of_the_previous_batch(
    sent: int, seconds: float, size: int
) -> None:
    assert workers.claim_size(sent, seconds) == size


async def test_a_worker_claims_the_size_its_previous_batch_asked_for(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch, idle: Idle,
) -> None:
    """The worker starts at CLAIM_BATCH and then claims what `claim_size` said after each
    full batch (here always 40), and tells it how many sends the batch made."""
    settings = backend_settings_factory(email_workers=1)
    await fill(settings, clock, 100)
    limits: list[int] = []
    paces: list[tuple[int, float]] = []
    real_claim = store.claim

    async def claim(db: Database, **kw: Any) -> list[Any]:
        limits.append(kw["limit"])
        return await real_claim(db, **kw)

    def size(sent: int, seconds: float) -> int:
        paces.append((sent, seconds))
        return 40

    monkeypatch.setattr(store, "claim", claim)
    monkeypatch.setattr(workers, "claim_size", size)
    async with Engine(settings, clock=clock, run=EMAIL, transport_factory=NullTransport) as e:
        await idle(e, clock)
        assert (await e.email.stats()).sent == 100
    assert limits[:4] == [workers.CLAIM_BATCH, 40, 40, 40], limits
    assert [sent for sent, _ in paces] == [16, 40, 40, 4], paces
    assert all(seconds >= 0 for _, seconds in paces)


def test_a_claimed_row_reads_as_the_record_built_with_its_keywords() -> None:
    row = (7, "<m@x>", "s@x", '["a@b.example"]', "A <a@b.example>", "subj", "body", None,
           '{"X-K": "v"}', 2, 5, 123.5)
    job = ClaimedJob.from_row(row, "e/w0")
    assert job == ClaimedJob(
        id=7, message_id="<m@x>", sender="s@x", recipients=("a@b.example",),
        to_header="A <a@b.example>", subject="subj", body="body", html=None,
        headers='{"X-K": "v"}', attempt=2, max_attempts=5, created_at=123.5, owner="e/w0",
    )
    assert hash(job) == hash(ClaimedJob.from_row(row, "e/w0"))
    with pytest.raises(AttributeError):
        job.attempt = 3  # type: ignore[misc]
