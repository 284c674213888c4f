"""The service interface over a real database: LeasedRun (lease, record, events, release,
take-over of a dead holder), the job board (list, run now, pause/resume, history), two
engines (the standby shows the holder's real run), services plugged in through the
`vertex_tui.services` entry point group (a broken one is reported and stops nothing), and
the fixes that fell out (backup rotation/drill last run, video summary).

Every test runs on SQLite and on PostgreSQL (`backend`); on PostgreSQL a lease's expiry
follows the server's clock, so a stale heartbeat is made by aging its row."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.db import query

from vertex_tui.engine import events as ev
from vertex_tui.engine.clock import FakeClock, isoformat
from vertex_tui.engine.engine import HEARTBEAT_TTL, Engine
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.leases import Leases
from vertex_tui.engine.runs import LeasedRun, run_job
from vertex_tui.engine.service import Interval, Job
from vertex_tui.engine.settings import Settings

H = 3_600.0


def by_job(snapshot: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {j["job"]: j for j in snapshot}


# ---- LeasedRun -------------------------------------------------------------------------------


async def test_a_run_is_recorded_published_and_its_lease_released(
    backend_settings: Settings, clock: FakeClock
) -> None:
    seen: list[ev.Event] = []

    async def body(run: LeasedRun) -> dict[str, Any]:
        # While it runs, this process holds the lease and the run is recorded as running.
        assert await run.host.leases.holder("t:lease", clock.time()) == run.host.owner
        assert query(backend_settings, "SELECT outcome FROM service_runs") == [("running",)]
        clock.advance(2.5)
        run.counts = {"things": 3}
        return {"status": "ok", "things": 3}

    job = Job(name="t.work", trigger=Interval(seconds=60), run=body, lease="t:lease")
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        engine.events.subscribe(seen.append)
        started = clock.time()
        result = await run_job(engine, job, trigger="manual")
        assert result == {"status": "ok", "things": 3}
        assert await engine.leases.holder("t:lease", clock.time()) is None
        got = query(backend_settings, "SELECT service, job, owner, started_at, finished_at,"
                    " outcome, counts, error FROM service_runs")
        assert got == [("t", "work", engine.owner, started, started + 2.5, "ok",
                        json.dumps({"things": 3}), None)]
    done = [e for e in seen if isinstance(e, ev.PassCompleted)]
    assert [(e.service, e.job, e.ok, e.counts) for e in done] == [
        ("t", "t.work", True, {"things": 3})]


async def test_a_failing_run_is_an_error_recorded_published_and_stops_nothing(
    backend_settings: Settings, clock: FakeClock
) -> None:
    seen: list[ev.Event] = []
    calls: list[int] = []

    async def body(run: LeasedRun) -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return {"status": "ok"}

    job = Job(name="t.work", trigger=Interval(seconds=60), run=body, lease="t:lease")
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        engine.events.subscribe(seen.append)
        first = await run_job(engine, job)
        assert first == {"status": "error", "error": "RuntimeError: disk on fire"}
        # The lease was released: the next run takes it and succeeds.
        assert (await run_job(engine, job))["status"] == "ok"
    assert query(backend_settings, "SELECT outcome, error FROM service_runs ORDER BY id") == [
        ("error", "RuntimeError: disk on fire"), ("ok", None)]
    done = [(e.ok, e.error) for e in seen if isinstance(e, ev.PassCompleted)]
    assert done == [(False, "RuntimeError: disk on fire"), (True, None)]


async def test_a_job_that_records_changes_only_writes_the_runs_that_did_something(
    backend_settings: Settings, clock: FakeClock
) -> None:
    found = [0, 2, 0]

    async def body(run: LeasedRun) -> dict[str, Any]:
        run.counts = {"reaped": found.pop(0)}
        return {"status": "ok", **run.counts}

    job = Job(name="t.reap", trigger=Interval(seconds=1), run=body, record="changes")
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        results = [await run_job(engine, job) for _ in range(3)]
    assert [r["reaped"] for r in results] == [0, 2, 0]  # all three ran
    assert query(backend_settings, "SELECT job, outcome, counts FROM service_runs") == [
        ("reap", "ok", json.dumps({"reaped": 2}))]


async def test_a_live_holder_makes_a_run_a_skip_that_names_it(
    backend_settings: Settings, clock: FakeClock
) -> None:
    ran: list[int] = []

    async def body(run: LeasedRun) -> dict[str, Any]:
        ran.append(1)
        return {"status": "ok"}

    job = Job(name="t.work", trigger=Interval(seconds=60), run=body, lease="t:lease")
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        # Another host's engine, heartbeat alive, holds the lease: it is respected.
        other = Leases(engine.db, "far-host:77:live")
        assert await other.acquire("engine:far-host:77:live", clock.time(), HEARTBEAT_TTL)
        assert await other.acquire("t:lease", clock.time(), 600)
        result = await run_job(engine, job)
    assert ran == []
    assert result["status"] == "skipped" and result["holder"] == "far-host:77:live"
    assert query(backend_settings, "SELECT outcome, error FROM service_runs") == [
        ("skipped", "another run holds the lease (far-host:77:live)")]


async def test_a_holder_whose_heartbeat_is_stale_is_dead_whatever_its_host(
    backend_settings: Settings, clock: FakeClock
) -> None:
    """An engine on another machine that stopped beating (killed, frozen, cut off) still
    holds the lifecycle lease for 2 intervals + 60 s; its heartbeat says it is gone, so the
    next pass takes over at once and records the pass it left as interrupted."""
    dead = "far-host:4242:deadbeef"
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        now = clock.time()
        leases = Leases(engine.db, dead)
        assert await leases.acquire(f"engine:{dead}", now - 100, HEARTBEAT_TTL)  # stale
        assert await leases.acquire("lifecycle", now - 100, 7260)  # unexpired for hours
        if engine.db.dialect == "postgresql":  # expiries follow the server's clock: age them
            await engine.db.write("UPDATE leases SET acquired_at = acquired_at - 100,"
                                  " expires_at = expires_at - 100 WHERE owner = ?", (dead,))
        await engine.db.write(
            "INSERT INTO service_runs (service, job, owner, started_at)"
            " VALUES ('lifecycle', 'pass', ?, ?)", (dead, now - 90))
        result = await engine.lifecycle.check()
        assert result["status"] == "ok", result
        assert await engine.leases.holder("lifecycle", now) == engine.owner
    assert query(backend_settings, "SELECT owner, outcome, error FROM service_runs ORDER BY id"
                 ) == [(dead, "error", "interrupted: the process running it stopped"),
                       (engine.owner, "ok", None)]


# ---- two engines -----------------------------------------------------------------------------


async def test_the_standby_engine_shows_the_holders_real_last_run(
    backend_settings: Settings, clock: FakeClock
) -> None:
    """Measured before: with two engines, the standby's Lifecycle and Videos cards showed
    "last run ... (skipped)" although the holder had completed a pass 40 s earlier."""
    services = ["lifecycle", "video"]
    async with (
        Engine(backend_settings, run=services, clock=clock, owner="host-a:1:holder") as holder,
        Engine(backend_settings, run=services, clock=clock, owner="host-b:2:standby") as standby,
    ):
        assert (await holder.lifecycle.check(trigger="schedule"))["status"] == "ok"
        assert (await holder.video.check(trigger="schedule"))["status"] == "ok"
        passed = isoformat(clock.time())
        # Less than HEARTBEAT_TTL: one jump of the fake clock past it could let the standby
        # look before the holder's heartbeat task beats again, and take the lease over.
        clock.advance(20)
        for skipped in (await standby.lifecycle.check(trigger="schedule"),
                        await standby.video.check(trigger="schedule")):
            assert skipped["status"] == "skipped" and skipped["holder"] == holder.owner
        status = await standby.status()
        jobs = by_job(await standby.jobs.snapshot())
        for name in services:
            doc = status["services"][name]
            assert doc["state"] == "standby"
            assert (doc["last_run"], doc["last_outcome"]) == (passed, "ok"), name
            assert doc["holder"] == holder.owner
            job = jobs[f"{name}.check"]
            assert (job["last_run"], job["last_outcome"]) == (passed, "ok")
            assert job["holder"] == holder.owner
            # The skips are recorded, in the job's history.
            history = await standby.jobs.history(f"{name}.check")
            assert [r["outcome"] for r in history] == ["skipped", "ok"]
            assert history[0]["owner"] == standby.owner
        # The live engines, with what each holds.
        engines = {e["owner"]: e for e in status["engines"]}
        assert set(engines) == {holder.owner, standby.owner}
        assert engines[holder.owner]["leases"] == ["lifecycle", "video"]
        assert engines[standby.owner]["leases"] == []
        assert engines[holder.owner]["host"] == "host-a"
        assert engines[holder.owner]["pid"] == 1
        assert engines[holder.owner]["heartbeat_at"] is not None
        assert status["services"]["email"]["holder"] is None


# ---- the job board ---------------------------------------------------------------------------


async def test_every_periodic_job_has_a_dotted_name(backend_settings: Settings,
                                                    clock: FakeClock) -> None:
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        names = engine.jobs.names()
        snapshot = await engine.jobs.snapshot()
    assert set(names) == {"backup.database", "backup.storage", "backup.full",
                          "backup.rotation", "backup.drill", "lifecycle.check", "video.check",
                          "email.reap", "email.rollup",
                          "engine.log_prune"}
    assert all(set(j) == {"job", "service", "schedule", "enabled", "paused", "next_run",
                          "last_run", "last_outcome", "last_duration_s", "holder"}
               for j in snapshot)
    jobs = by_job(snapshot)
    assert jobs["backup.database"]["schedule"] == "cron 0 2 * * *"
    every = backend_settings.lifecycle_check_interval
    assert jobs["lifecycle.check"]["schedule"] == f"every {every} s"
    # No engine runs: nothing is coming.
    assert all(j["next_run"] is None for j in snapshot)


async def test_run_now_history_and_an_unknown_job(backend_settings: Settings,
                                                  clock: FakeClock) -> None:
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        result = await engine.jobs.run("backup.rotation")
        assert result["job"] == "backup.rotation" and result["status"] == "ok"
        history = await engine.jobs.history("backup.rotation")
        jobs = by_job(await engine.jobs.snapshot())
        with pytest.raises(UsageError, match=r"known jobs: .*backup\.database"):
            engine.jobs.get("backup.nope")
    assert [(r["outcome"], r["counts"]) for r in history] == [
        ("ok", {"database": 0, "storage": 0, "full": 0})]
    assert history[0]["duration_s"] is not None
    assert jobs["backup.rotation"]["last_outcome"] == "ok"
    assert jobs["backup.rotation"]["last_run"] == history[0]["finished_at"]
    assert query(backend_settings, "SELECT action FROM audit_log") == [("backup.run.rotation",)]


async def test_a_paused_job_does_not_run_on_schedule_and_every_engine_follows(
    backend_settings: Settings, clock: FakeClock, wait_for: Callable[..., Any]
) -> None:
    # A full engine: it polls every second.
    async with Engine(backend_settings, clock=clock) as running:
        assert running.scheduler.next_run("lifecycle.check") is not None
        async with Engine(backend_settings, run=[], clock=clock) as cli:
            assert await cli.jobs.set_paused("lifecycle.check", True) is True
            assert await cli.jobs.set_paused("lifecycle.check", True) is False
        clock.advance(1.0)  # the next poll of the running engine
        await wait_for(lambda: running.scheduler.next_run("lifecycle.check") is None,
                       message="the running engine to pause lifecycle.check")
        jobs = by_job(await running.jobs.snapshot())
        assert jobs["lifecycle.check"]["paused"] is True
        assert jobs["lifecycle.check"]["next_run"] is None
        assert jobs["video.check"]["paused"] is False
        # A scheduled run of the paused job looks at the flag and does nothing.
        before = query(backend_settings, "SELECT count(*) FROM service_runs")
        result = await running.lifecycle.check(trigger="schedule")
        assert result["status"] == "paused"
        assert query(backend_settings, "SELECT count(*) FROM service_runs") == before
        # An operator's run now still runs it.
        assert (await running.jobs.run("lifecycle.check"))["status"] == "ok"
        await running.jobs.set_paused("lifecycle.check", False)
        assert running.scheduler.next_run("lifecycle.check") is not None
    audit = query(backend_settings, "SELECT action, detail FROM audit_log WHERE action LIKE"
                  " 'job.%' ORDER BY id")
    assert [(a, json.loads(d)) for a, d in audit] == [
        ("job.pause", {"job": "lifecycle.check", "changed": True}),
        ("job.pause", {"job": "lifecycle.check", "changed": False}),
        ("job.resume", {"job": "lifecycle.check", "changed": True})]


# ---- services from other packages -------------------------------------------------------------

PLUGIN = '''
from vertex_tui.engine.service import Interval, Job, ServiceState


class Watch:
    name = "watch"

    def __init__(self, engine):
        self.engine = engine
        self.started = False
        self.ticks = 0

    def settings(self):
        return {"every": 30}

    def jobs(self):
        return [Job(name="watch.tick", trigger=Interval(seconds=30), run=self.tick,
                    lease="watch:tick")]

    async def tick(self, run):
        self.ticks += 1
        run.counts = {"ticks": self.ticks}
        return {"status": "ok", "ticks": self.ticks}

    async def start(self):
        self.started = True

    async def stop(self, grace):
        self.started = False

    def state(self):
        return ServiceState.IDLE if self.started else ServiceState.STOPPED

    async def status(self):
        return {"state": str(self.state()), "ticks": self.ticks}

    def actions(self):
        return {}


def make(engine):
    return Watch(engine)


class BadStart(Watch):
    name = "badstart"

    def jobs(self):
        return []

    async def start(self):
        raise OSError("cannot open /dev/watchdog")


def make_bad_start(engine):
    return BadStart(engine)
'''


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Path]:
    """An installed distribution (a dist-info folder on sys.path) declaring three services
    in the `vertex_tui.services` group: one that works, one whose module fails to import,
    one whose start fails."""
    site = tmp_path / "site"
    (site / "vt_watch_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "vt_watch_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    (site / "vt_broken_plugin.py").write_text("import no_such_module_here\n", encoding="utf-8")
    info = site / "vt_watch_plugin-1.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vt-watch-plugin\n"
                                   "Version: 1.0\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(
        "[vertex_tui.services]\nwatch = vt_watch_plugin:make\n"
        "broken = vt_broken_plugin:make\nbadstart = vt_watch_plugin:make_bad_start\n",
        encoding="utf-8")
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        for name in ("vt_watch_plugin", "vt_broken_plugin"):
            sys.modules.pop(name, None)


async def test_services_of_other_packages_plug_in_and_broken_ones_stop_nothing(
    plugins: Path, backend_settings: Settings, clock: FakeClock
) -> None:
    async with Engine(backend_settings, clock=clock) as engine:
        assert "watch" in engine.running() and "email" in engine.running()
        assert "lifecycle" in engine.running()
        jobs = by_job(await engine.jobs.snapshot())
        assert jobs["watch.tick"]["service"] == "watch"
        assert jobs["watch.tick"]["schedule"] == "every 30 s"
        assert jobs["watch.tick"]["next_run"] is not None  # on the engine's scheduler
        result = await engine.jobs.run("watch.tick")
        assert result == {"job": "watch.tick", "status": "ok", "ticks": 1}
        status = (await engine.status())["services"]
    assert status["watch"]["state"] == "idle" and status["watch"]["ticks"] == 1
    assert status["watch"]["last_run"] is not None  # from its job's runs
    assert status["broken"]["state"] == "error"
    assert "No module named 'no_such_module_here'" in status["broken"]["error"]
    assert status["badstart"]["state"] == "error"
    assert "cannot open /dev/watchdog" in status["badstart"]["error"]
    assert status["email"]["state"] != "error" and status["lifecycle"]["state"] != "error"
    assert query(backend_settings, "SELECT service, job, outcome FROM service_runs"
                 " WHERE service = 'watch'") == [("watch", "tick", "ok")]


# ---- fixes that fell out ---------------------------------------------------------------------


async def test_backup_schedule_shows_the_last_run_of_rotation_and_drill(
    backend_settings: Settings, clock: FakeClock
) -> None:
    """They write no backup row: the Backups screen showed "Last run -" for them forever."""
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        assert (await engine.backup.run("rotation"))["status"] == "ok"
        assert (await engine.backup.run("drill"))["status"] == "failed"  # nothing to drill
        jobs = {j["job"]: j for j in await engine.backup.schedule()}
    assert jobs["rotation"]["last_run"] == isoformat(clock.time())
    assert jobs["rotation"]["last_outcome"] == "ok"
    assert jobs["drill"]["last_outcome"] == "error"
    assert "no verified" in jobs["drill"]["last_error"]
    assert jobs["database"]["last_run"] is None


async def test_video_summary_uses_the_running_engines_rotation_interval(
    backend_settings_factory: Callable[..., Settings], clock: FakeClock
) -> None:
    engine_side = backend_settings_factory(video_rotation_interval=7200)
    shell_side = backend_settings_factory(video_rotation_interval=60)
    async with Engine(engine_side, run=["video"], clock=clock) as running:
        p = await running.lifecycle.add_portrait(title="P", owner="o@example.com")
        a = await running.video.add_video(portrait_id=p, title="a", rotation="cyclic")
        await running.video.add_video(portrait_id=p, title="b", rotation="cyclic")
        assert (await running.video.check())["status"] == "ok"
        activated = clock.time()
        async with Engine(shell_side, run=[], clock=clock) as shell:
            upcoming = (await shell.video.summary())["upcoming"]
    rotations = [u for u in upcoming if u["what"] == "rotate"]
    assert [(u["video"], u["at"]) for u in rotations] == [(a, isoformat(activated + 7200))]


async def test_a_rotation_that_can_never_happen_is_not_upcoming(
    backend_settings: Settings, clock: FakeClock
) -> None:
    """Measured before: portraits with a single active video sat in "rotate ... due now"."""
    async with Engine(backend_settings, run=[], clock=clock) as engine:
        alone = await engine.lifecycle.add_portrait(title="alone", owner="o@example.com")
        single = await engine.video.add_video(portrait_id=alone, title="only", rotation="cyclic")
        ends = await engine.lifecycle.add_portrait(title="ends", owner="o@example.com")
        await engine.video.add_video(portrait_id=ends, title="1", rotation="sequential")
        await engine.video.add_video(portrait_id=ends, title="2", rotation="sequential")
        pair = await engine.lifecycle.add_portrait(title="pair", owner="o@example.com")
        first = await engine.video.add_video(portrait_id=pair, title="x", rotation="cyclic")
        await engine.video.add_video(portrait_id=pair, title="y", rotation="cyclic")
        assert (await engine.video.check())["status"] == "ok"
        clock.advance(backend_settings.video_rotation_interval + 1)
        assert (await engine.video.check())["status"] == "ok"  # "ends" moves on to video 2
        clock.advance(backend_settings.video_rotation_interval + 1)
        doc = await engine.video.summary()
    rotating = {r["portrait"] for r in doc["rotating"]}
    assert rotating == {alone, ends, pair}  # each shows its current video
    upcoming = [(u["portrait"], u["what"]) for u in doc["upcoming"] if u["what"] == "rotate"]
    # Only the pair can rotate: "alone" has no other video, "ends" is at its last one.
    assert upcoming == [(pair, "rotate")]
    assert single and first
