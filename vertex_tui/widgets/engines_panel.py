"""The dashboard's engines line(s): each live engine (host, pid, up since, heartbeat age, the
leases it holds), or, when none is alive, a warning naming the work that waits for one (mail
due, a schedule overdue)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from textual.content import Content
from textual.widgets import Static

from vertex_tui.timefmt import ago, span

if TYPE_CHECKING:
    from vertex_tui.engine import Engine

# A schedule is overdue when its next run passed this long ago (a pass that is merely
# starting is not).
OVERDUE_GRACE_SECONDS = 60.0


def _ts(value: object) -> float | None:
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value) if isinstance(value, int | float) else None


def engine_line(engine: dict[str, Any], now: float) -> str:
    """`vm pid 4242 · up 2 hours · beat 3 seconds ago · holds backup:database, …`"""
    since, beat = _ts(engine.get("since")), _ts(engine.get("heartbeat_at"))
    up = "up " + span(now - since) if since is not None else "up ?"
    # A beat stamped ahead of this console's clock (clocks of two hosts differ) is fresh.
    beat_text = "beat " + ("?" if beat is None else "just now" if beat >= now
                           else ago(beat, now))
    held = engine.get("leases") or []
    holds = "holds " + ", ".join(str(h) for h in held) if held else "holds nothing"
    pid = engine.get("pid")
    return (f"{engine.get('host') or engine.get('owner')} pid {pid if pid is not None else '?'}"
            f" · {up} · {beat_text} · {holds}")


def due_at(schedule: str, last_run: float, timezone: str) -> float | None:
    """When a job that last ran at `last_run` was due next: `every N s` after N seconds,
    `cron EXPR` at the expression's next fire time; None for a schedule of another form."""
    kind, _, rest = schedule.partition(" ")
    if kind == "every" and rest.endswith(" s"):
        try:
            return last_run + float(rest[:-2])
        except ValueError:
            return None
    if kind == "cron":
        from vertex_tui.engine.scheduling import next_cron_time

        try:
            nxt = next_cron_time(rest, timezone, datetime.fromtimestamp(last_run, UTC))
        except ValueError:
            return None
        return None if nxt is None else nxt.timestamp()
    return None


def overdue_jobs(jobs: list[dict[str, Any]], now: float, timezone: str) -> list[str]:
    """Jobs (`jobs.snapshot()`) that ran before and whose next run by their schedule is more
    than OVERDUE_GRACE_SECONDS late; enabled and not paused. `email.reap` is left out (mail
    that waits is named by itself)."""
    out = []
    for job in jobs:
        last = _ts(job.get("last_run"))
        if (last is None or not job.get("enabled") or job.get("paused")
                or job.get("job") == "email.reap"):
            continue
        at = due_at(str(job.get("schedule", "")), last, timezone)
        if at is not None and at < now - OVERDUE_GRACE_SECONDS:
            out.append(f"{job['job']} overdue since {ago(at, now)}")
    return out


def waiting_work(services: dict[str, Any], now: float,
                 overdue: list[str] | None = None) -> list[str]:
    """What waits for an engine (pure; `status()["services"]`): mail whose next attempt is
    due, every service whose next run is more than OVERDUE_GRACE_SECONDS late, and the
    `overdue` jobs (`overdue_jobs`)."""
    out = []
    email = services.get("email") or {}
    due_at = _ts(email.get("next_attempt_at"))
    pending = email.get("pending") or 0
    if pending and due_at is not None and due_at <= now:
        out.append(f"{pending:,} mail pending, due {ago(due_at, now)}")
    for name, doc in services.items():
        at = _ts(doc.get("next_run"))
        if at is not None and at < now - OVERDUE_GRACE_SECONDS and not (
                name == "email" and out):
            out.append(f"{name} overdue since {ago(at, now)}")
    return out + list(overdue or [])


class EnginesPanel(Static):
    """`Engines:` one line per live engine; an alarm line when none is alive and work waits."""

    DEFAULT_CSS = """
    EnginesPanel {
        height: auto;
        max-height: 3;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    EnginesPanel.-alarm {
        background: $error 30%;
        color: $text;
    }
    EnginesPanel.-none {
        color: $warning;
    }
    """

    def __init__(self) -> None:
        super().__init__("", id="engines")

    async def load(self, engine: Engine, status: dict[str, Any], now: float) -> None:
        """`show`, with the overdue jobs read from `engine` when no engine is alive."""
        overdue = [] if status.get("engines") else overdue_jobs(
            await engine.jobs.snapshot(), now, engine.settings.timezone)
        self.show(status, now, overdue)

    def show(self, status: dict[str, Any], now: float,
             overdue: list[str] | None = None) -> None:
        engines = status.get("engines") or []
        waiting = [] if engines else waiting_work(status.get("services") or {}, now, overdue)
        self.set_class(not engines and bool(waiting), "-alarm")
        self.set_class(not engines and not waiting, "-none")
        if engines:
            lines: list[str | tuple[str, str]] = []
            for index, engine in enumerate(engines):
                lines += ["\n" if index else "",
                          ("Engine " if len(engines) == 1 else f"Engine {index + 1} ", "bold"),
                          engine_line(engine, now)]
            self.update(Content.assemble(*lines))
        elif waiting:
            self.update(Content.assemble(("NO ENGINE ALIVE", "bold"),
                                         " and work waits: " + "; ".join(waiting)))
        else:
            self.update(Content.assemble(("NO ENGINE ALIVE", "bold"), " (nothing due yet)"))
