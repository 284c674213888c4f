"""Email queue throughput against side-by-side baselines, all in one run.

    python bench/email_throughput.py [--n 15000] [--smtp-n 1000] [--rounds 5]
        [--server aiosmtpd|smtp-sink] [--json]

Measured against one SMTP server in a separate process: `--server aiosmtpd` (default) is our
sink, `python -m vertex_tui.sink`, which parses every message in Python; `--server smtp-sink`
is Postfix's `smtp-sink` (C, discards the data), so the client's own cost decides the rate.

- raw_smtp_msgs_per_s: aiosmtplib over 3 reused connections, no database; every message is
  built (`EmailMessage`) inside the timed loop, as the queue builds it at send time.
- queue_msgs_per_s: `--smtp-n` jobs enqueued (enqueue_many, untimed), then a real Engine
  (email service only, 3 workers, SmtpTransport to the sink) delivers them all: time from
  opening the engine until the last `EmailSent`. ratio_vs_raw_smtp = queue / raw (goal >= 0.9).
- null_transport_jobs_per_s: `--n` jobs, the same with NullTransport: claim -> complete.
- huey_noop_jobs_per_s: SqliteHuey (temp file, results off), consumer with 3 worker threads
  in-process, N no-op tasks enqueued beforehand; time from consumer start until the N-th has
  run. Its connections use synchronous=NORMAL, as the engine's do (same durability: WAL, no
  fsync per commit); ratio_vs_huey = null_transport / huey (goal >= 2.5). Huey's default
  (synchronous=FULL, an fsync per dequeue) is reported once as huey_default_sync_noop_jobs_per_s.
  *_switches_per_1000_*: context switches of the process (getrusage, every thread) over the
  same window, per 1,000 jobs: huey's 3 threads hand its storage lock and the GIL back and
  forth when they can run at once (a quiet machine), which is most of its quiet CPU a task.
- bulk_enqueue_per_s: one enqueue_many of N (goal >= 50,000);
  single_enqueue_per_s: engine.email.enqueue one at a time, a transaction each (goal >= 2,000).

The SMTP pair and the null/huey pair run alternately `--rounds` times; the medians are reported
(each ratio is the median of the per-round ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiosmtplib
from _common import (
    SENDER,
    SERVERS,
    context_switches,
    cpu_seconds,
    emit,
    load_1m,
    message,
    per_second,
    round_floats,
    settings,
)

from vertex_tui.engine import Engine
from vertex_tui.engine import events as ev
from vertex_tui.engine.email.transport import NullTransport

CONNECTIONS = 3
GOALS = {
    "ratio_vs_raw_smtp": (">=", 0.9),  # issue 8 (was 0.8)
    "null_transport_jobs_per_s": (">=", 5_000),
    "ratio_vs_huey": (">=", 2.5),  # issue 8 (was 2)
    "bulk_enqueue_per_s": (">=", 50_000),
    "single_enqueue_per_s": (">=", 2_000),
}


# ---- baselines ----------------------------------------------------------------------------


async def raw_smtp(port: int, n: int) -> tuple[float, float]:
    """aiosmtplib alone: 3 reused connections share N messages, each built in the loop.
    Returns (messages per second, process CPU microseconds per message)."""
    counter = itertools.count()

    async def sender() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=30)
        await smtp.connect()
        try:
            while (i := next(counter)) < n:
                m = message(i)
                msg = EmailMessage()
                msg["From"] = SENDER
                msg["To"] = m["to"]
                msg["Subject"] = m["subject"]
                msg["Date"] = format_datetime(datetime.fromtimestamp(time.time(), UTC))
                msg["Message-ID"] = f"<raw.{i}@example.com>"
                msg.set_content(m["body"])
                await smtp.send_message(msg, sender="bench@example.com", recipients=[m["to"]])
        finally:
            await smtp.quit()

    t0, cpu0 = time.perf_counter(), cpu_seconds()
    await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    return per_second(n, elapsed), cpu / n * 1e6


def huey_noop(
    folder: Path, n: int, *, sync_normal: bool = True
) -> tuple[float, float, float]:
    """SqliteHuey, 3 in-process worker threads, N no-op tasks enqueued before the clock.
    Returns (tasks per second, process CPU microseconds per task, context switches per
    1,000 tasks)."""
    from huey import SqliteHuey
    from huey.storage import SqliteStorage

    class NormalSyncStorage(SqliteStorage):  # type: ignore[misc]
        def _create_connection(self) -> Any:
            conn = super()._create_connection()
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn

    huey = SqliteHuey(
        "bench",
        filename=str(folder / "huey.db"),
        results=False,
        storage_class=NormalSyncStorage if sync_normal else SqliteStorage,
    )
    done = threading.Event()
    ran = itertools.count(1)

    @huey.task()
    def noop() -> None:
        if next(ran) == n:
            done.set()

    # Enqueue in one transaction (setup, untimed): huey's own enqueue commits each task.
    rows = [("bench", huey.serialize_task(noop.s()), 0) for _ in range(n)]
    with huey.storage.db(commit=True) as cursor:
        cursor.executemany("INSERT INTO task (queue, data, priority) VALUES (?, ?, ?)", rows)
    consumer = huey.create_consumer(workers=CONNECTIONS, worker_type="thread", periodic=False)
    t0, cpu0, cs0 = time.perf_counter(), cpu_seconds(), context_switches()
    consumer.start()
    if not done.wait(600):
        raise RuntimeError("huey did not finish")
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
    switches = context_switches() - cs0
    consumer.stop(graceful=True)
    huey.storage.close()
    return per_second(n, elapsed), cpu / n * 1e6, switches / n * 1000


# ---- the engine ---------------------------------------------------------------------------


async def enqueue_jobs(db_path: Path, n: int) -> float:
    """enqueue_many of N in one call on an engine running no services; returns jobs/s."""
    messages = [message(i) for i in range(n)]
    async with Engine(settings(db_path), run=[]) as engine:
        t0 = time.perf_counter()
        ids = await engine.email.enqueue_many(messages)
        elapsed = time.perf_counter() - t0
    assert len(ids) == n
    return per_second(n, elapsed)


async def single_enqueue(db_path: Path, n: int) -> float:
    async with Engine(settings(db_path), run=[]) as engine:
        t0 = time.perf_counter()
        for i in range(n):
            await engine.email.enqueue(**message(i))
        return per_second(n, time.perf_counter() - t0)


async def deliver_all(
    db_path: Path, n: int, *, smtp_port: int | None
) -> tuple[float, float, float]:
    """Open an engine over N pending jobs; time from the start of its workers until they
    have sent all of them. Returns (jobs per second, process CPU microseconds per job,
    context switches per 1,000 jobs)."""
    factory = NullTransport if smtp_port is None else None
    engine = Engine(
        settings(db_path, smtp_port=smtp_port or 25), run=["email"], transport_factory=factory
    )
    sent = 0
    finished = asyncio.Event()
    t0 = cpu0 = 0.0
    cs0 = 0

    def count(event: ev.Event) -> None:
        nonlocal sent, t0, cpu0, cs0
        if isinstance(event, ev.ServiceStarted) and event.service == "email":
            # the workers exist from here on
            t0, cpu0, cs0 = time.perf_counter(), cpu_seconds(), context_switches()
        elif isinstance(event, ev.EmailSent):
            sent += 1
            if sent >= n:
                finished.set()

    engine.events.subscribe(count)
    async with engine:
        await asyncio.wait_for(finished.wait(), 600)
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        switches = context_switches() - cs0
        stats = await engine.email.stats()
    if stats.sent != n or stats.pending or stats.failed:
        raise RuntimeError(f"unexpected end state: {stats}")
    return per_second(n, elapsed), cpu / n * 1e6, switches / n * 1000


# ---- the run ------------------------------------------------------------------------------


async def smtp_round(
    folder: Path, port: int, n: int, raw_first: bool
) -> tuple[tuple[float, float], tuple[float, float, float]]:
    """Raw SMTP and the queue back to back (alternate the order between rounds: the load
    of a shared machine drifts)."""
    db = folder / "smtp.db"
    await enqueue_jobs(db, n)
    if raw_first:
        raw = await raw_smtp(port, n)
    queue = await deliver_all(db, n, smtp_port=port)
    if not raw_first:
        raw = await raw_smtp(port, n)
    return raw, queue


async def null_round(folder: Path, n: int) -> tuple[float, float, float, float]:
    db = folder / "null.db"
    bulk = await enqueue_jobs(db, n)
    null, cpu, switches = await deliver_all(db, n, smtp_port=None)
    return null, cpu, switches, bulk


def run(n: int, smtp_n: int, rounds: int, server: str = "aiosmtpd") -> dict[str, Any]:
    raws, queues, nulls, hueys, bulks, null_cpus, huey_cpus = [], [], [], [], [], [], []
    raw_cpus, queue_cpus, null_switches, huey_switches = [], [], [], []
    with SERVERS[server]() as (port, _):
        for r in range(rounds):
            with tempfile.TemporaryDirectory(prefix="vertex-bench-") as tmp:
                (raw, raw_cpu), (queue, queue_cpu, _) = asyncio.run(
                    smtp_round(Path(tmp), port, smtp_n, r % 2 == 0)
                )
                raws.append(raw)
                queues.append(queue)
                raw_cpus.append(raw_cpu)
                queue_cpus.append(queue_cpu)
            with tempfile.TemporaryDirectory(prefix="vertex-bench-") as tmp:
                huey, huey_cpu, huey_cs = huey_noop(Path(tmp), n)
                hueys.append(huey)
                huey_cpus.append(huey_cpu)
                huey_switches.append(huey_cs)
            with tempfile.TemporaryDirectory(prefix="vertex-bench-") as tmp:
                null, null_cpu, null_cs, bulk = asyncio.run(null_round(Path(tmp), n))
                nulls.append(null)
                null_cpus.append(null_cpu)
                null_switches.append(null_cs)
                bulks.append(bulk)
            print(
                f"round {r + 1}: raw {raw:,.0f}/s queue {queue:,.0f}/s "
                f"null {nulls[-1]:,.0f}/s huey {hueys[-1]:,.0f}/s bulk {bulk:,.0f}/s",
                file=sys.stderr,
                flush=True,
            )
    with tempfile.TemporaryDirectory(prefix="vertex-bench-") as tmp:
        single = asyncio.run(single_enqueue(Path(tmp) / "single.db", min(n, 3_000)))
    with tempfile.TemporaryDirectory(prefix="vertex-bench-") as tmp:
        huey_default, _, _ = huey_noop(Path(tmp), min(n, 5_000), sync_normal=False)
    med = statistics.median
    return round_floats(
        {
            "n": n,
            "smtp_n": smtp_n,
            "rounds": rounds,
            "server": server,
            "raw_smtp_msgs_per_s": med(raws),
            "queue_msgs_per_s": med(queues),
            "ratio_vs_raw_smtp": med(q / r for q, r in zip(queues, raws, strict=True)),
            "raw_smtp_cpu_us_per_msg": med(raw_cpus),
            "queue_cpu_us_per_msg": med(queue_cpus),
            "cpu_ratio_vs_raw_smtp": med(
                r / q for q, r in zip(queue_cpus, raw_cpus, strict=True)
            ),
            "null_transport_jobs_per_s": med(nulls),
            "huey_noop_jobs_per_s": med(hueys),
            "ratio_vs_huey": med(x / h for x, h in zip(nulls, hueys, strict=True)),
            "null_transport_cpu_us_per_job": med(null_cpus),
            "huey_cpu_us_per_job": med(huey_cpus),
            "cpu_ratio_vs_huey": med(h / x for x, h in zip(null_cpus, huey_cpus, strict=True)),
            "null_transport_switches_per_1000_jobs": med(null_switches),
            "huey_switches_per_1000_tasks": med(huey_switches),
            "huey_default_sync_noop_jobs_per_s": huey_default,
            "ratio_vs_huey_default_sync": med(nulls) / huey_default,
            "bulk_enqueue_per_s": med(bulks),
            "single_enqueue_per_s": single,
            "load_1m": load_1m(),
        },
        3,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=15_000, help="jobs per queue/huey measurement")
    p.add_argument("--smtp-n", type=int, default=1_000, help="messages per SMTP measurement")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (median)")
    p.add_argument(
        "--server",
        choices=sorted(SERVERS),
        default="aiosmtpd",
        help="SMTP server of the raw/queue pair: our aiosmtpd sink or Postfix's smtp-sink",
    )
    p.add_argument("--json", action="store_true", help="one JSON line")
    args = p.parse_args()
    emit(run(args.n, args.smtp_n, args.rounds, args.server), args.json, GOALS)


if __name__ == "__main__":
    main()
