"""`vertex-tui demo`: a sample database, an embedded mail sink, short intervals, the console.

Everything lives in a temp folder (unless VERTEX_DB_PATH is set) so a newcomer can press
every key without touching real data. The sink accepts most mail, answers 451 now and then
and 550 for bounce addresses, so retries and failures show up within seconds.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import tempfile
from pathlib import Path

from vertex_tui.engine import Engine, Settings
from vertex_tui.sink import Behaviour, Sink

DAY = 86_400.0
BOUNCE = "bounce*@example.org"


def demo_settings(base: Settings, folder: Path, smtp_port: int) -> Settings:
    db_path = base.db_path if "VERTEX_DB_PATH" in os.environ else folder / "vertex-demo.db"
    # Always SQLite: the demo seeds made-up data and must never write it into a shared
    # PostgreSQL database that VERTEX_DATABASE_URL names.
    return dataclasses.replace(
        base, db_path=db_path, database_url=None, storage_dir=folder / "storage",
        backup_dir=folder / "backups",
        smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_starttls="false", smtp_tls=False,
        smtp_timeout=5.0, email_workers=2, email_retry_delays=(3.0, 6.0, 12.0),
        email_retry_max_attempts=3, email_poll_interval=1.0, email_lease_seconds=30,
        lifecycle_check_interval=15, video_check_interval=10, video_rotation_interval=40,
        video_archive_after_hours=1, notify_admin_email="ops@example.org",
        backup_database_schedule="*/2 * * * *", backup_storage_enabled=True,
        backup_storage_schedule="*/5 * * * *", backup_full_schedule="*/10 * * * *",
        backup_rotation_schedule="*/3 * * * *", backup_keep_last=3,
        backup_drill_enabled=True, backup_drill_schedule="*/4 * * * *",
    )


async def seed(engine: Engine, rand: random.Random) -> None:
    """Projects, portraits expiring at different times, videos, mail, past backups."""
    now = engine.clock.time()
    storage = engine.settings.storage_dir
    (storage / "portraits").mkdir(parents=True, exist_ok=True)
    for i in range(12):
        (storage / "portraits" / f"portrait-{i}.jpg").write_bytes(os.urandom(2048))
    lc, video = engine.lifecycle, engine.video
    offsets = [-20, -3, 0.3, 0.9, 2, 5, 6.5, 12, 30, 90, 200, 400]
    project_ids = [await lc.add_project(name=name, owner=f"{name.lower()}@example.org",
                                        subscription_end=now + off * DAY)
                   for name, off in (("Museum", 40), ("Gallery", 5), ("Festival", -2))]
    for n, off in enumerate(offsets):
        owner = f"owner{n}@example.org" if n % 5 else f"bounce{n}@example.org"
        portrait = await lc.add_portrait(
            title=f"Portrait {n + 1}", owner=owner, project_id=project_ids[n % 3],
            subscription_end=now + off * DAY)
        mode = ("cyclic", "sequential", "random", "none")[n % 4]
        for k in range(1 + n % 3):
            start = now + rand.choice((-3600.0, 0.0, 60.0, 300.0)) if k else None
            end = now + rand.choice((600.0, 3 * 3600.0, 5 * DAY)) if k == 2 else None
            await video.add_video(portrait_id=portrait, title=f"Clip {n + 1}.{k + 1}",
                                  start=start, end=end, rotation=mode)
    await engine.email.enqueue_many(_mail(rand, 40))
    await engine.backup.run("database", trigger="demo")
    await engine.backup.run("storage", trigger="demo")


def _mail(rand: random.Random, n: int) -> list[dict[str, str]]:
    out = []
    for i in range(n):
        bounce = rand.random() < 0.08
        to = f"bounce{i}@example.org" if bounce else f"user{rand.randint(1, 500)}@example.org"
        out.append({"to": to, "subject": rand.choice(
            ("Your portrait is ready", "Receipt for your order", "Welcome to Vertex AR",
             "Your animation was updated", "Password reset")) + f" #{i}",
                    "body": "Hello from the Vertex AR demo.\n"})
    return out


async def feeder(engine: Engine, rand: random.Random) -> None:
    """New mail every few seconds so the queue and the sparkline move."""
    while True:
        await asyncio.sleep(rand.uniform(2, 6))
        await engine.email.enqueue_many(_mail(rand, rand.randint(1, 8)))


async def run_demo(base: Settings) -> int:
    from vertex_tui.app import VertexApp
    from vertex_tui.console import console_logging

    rand = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="vertex-demo-") as tmp:
        folder = Path(tmp)
        sink = Sink(behaviour=Behaviour(fail_451=0.12, reject=(BOUNCE,), seed=7)).start()
        try:
            settings = demo_settings(base, folder, sink.port)
            handler = console_logging(settings)
            async with Engine(settings) as engine:
                await seed(engine, rand)
                # The passes at start saw an empty database: pass over the sample now, so
                # that no screen shows "not yet computed" until the next interval.
                for periodic in (engine.lifecycle, engine.video):
                    await periodic.check(trigger="demo")
                feed = asyncio.create_task(feeder(engine, rand))
                try:
                    await VertexApp(engine, log_handler=handler).run_async()
                finally:
                    feed.cancel()
        finally:
            sink.stop()
    return 0
