"""The dashboard's engines line(s): each live engine (host, pid, up since, heartbeat age, the
leases it holds), or, when none is alive, a warning naming the work that waits for one (mail
due, a schedule overdue)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from textual.content import Content
from textual.widgets import Static

from vertex_tui.timefmt import ago, span

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


def waiting_work(services: dict[str, Any], now: float) -> list[str]:
    """What waits for an engine (pure; `status()["services"]`): mail whose next attempt is
    due, and every service whose next run is more than OVERDUE_GRACE_SECONDS late."""
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
    return out


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

    def show(self, status: dict[str, Any], now: float) -> None:
        engines = status.get("engines") or []
        waiting = [] if engines else waiting_work(status.get("services") or {}, now)
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
