"""The Backups screen's panel: one line per kind coloured by the age of its last success
(`freshness` in engine/backup/overview.py), next run, count and size on disk, last
verification; and the last restore drill with its result."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from textual.content import Content
from textual.widgets import Static

from vertex_tui.timefmt import size

LEVEL_STYLE = {"ok": "bold $success", "warning": "bold $warning", "critical": "bold $error",
               "disabled": "$text-disabled"}
LEVEL_TEXT = {"ok": "OK", "warning": "OLD", "critical": "TOO OLD", "disabled": "OFF"}


def compact(seconds: float) -> str:
    """A short span for a narrow line: `45s`, `12m`, `3h 5m`, `1d 23h`."""
    left = int(max(0.0, seconds))
    for unit, length, sub, sub_length in (("d", 86_400, "h", 3600), ("h", 3600, "m", 60)):
        if left >= length:
            count, rest = divmod(left, length)
            return f"{count}{unit} {rest // sub_length}{sub}" if rest // sub_length else (
                f"{count}{unit}")
    return f"{left // 60}m" if left >= 60 else f"{left}s"


def _ts(value: object) -> float | None:
    if isinstance(value, str):
        return datetime.fromisoformat(value).timestamp()
    return float(value) if isinstance(value, int | float) else None


def _since(value: object, now: float) -> str:
    at = _ts(value)
    return "-" if at is None else f"{compact(now - at)} ago"


def kind_parts(doc: dict[str, Any], now: float) -> list[str | tuple[str, str]]:
    """One kind's line: `database OK       3h ago · next in 18h · 7 (1.3 MiB) · verified ok 3h
    ago`. When no success ever: `MISSING none yet`."""
    level = str(doc["level"])
    age = doc.get("age_seconds")
    last = "none yet" if age is None else f"{compact(age)} ago"
    # A kind with no successful backup at all is not "too old": it is missing.
    word = "MISSING" if age is None and level == "critical" else LEVEL_TEXT[level]
    if not doc.get("enabled", True):
        nxt = "disabled"
    else:
        at = _ts(doc.get("next_run"))
        nxt = "next -" if at is None else (
            "next due now" if at <= now else f"next in {compact(at - now)}")
    verified_at = _ts(doc.get("last_verified_at"))
    if verified_at is None:
        verified = "never verified"
    else:
        verdict = "ok" if doc.get("last_verified_ok") else "BAD"
        verified = f"verified {verdict} {compact(now - verified_at)} ago"
    return [(f"{doc['kind']:8} ", "bold"),
            (f"{word:7}", LEVEL_STYLE[level]),
            f" {last:>11} · {nxt:12} · {doc['count']} ({size(doc['total_size'])}) · {verified}"]


def drill_parts(drill: dict[str, Any] | None, now: float,
                shown: Callable[[str | None], str | None]) -> list[str | tuple[str, str]]:
    if drill is None:
        return [("drill    ", "bold"), "never run (select the drill job and press t)"]
    if drill.get("ok"):
        return [("drill    ", "bold"), ("OK     ", LEVEL_STYLE["ok"]),
                f" {_since(drill.get('at'), now):>11} · from {shown(drill.get('path'))}"]
    return [("drill    ", "bold"), ("FAILED ", LEVEL_STYLE["critical"]),
            f" {_since(drill.get('at'), now):>11} · {drill.get('error') or 'no reason recorded'}"]


class BackupPanel(Static):
    """`BackupService.panel()` at a glance; the level of each kind is also a CSS class of
    the panel (`-critical` if any kind is, else `-warning`), for the screen's border."""

    DEFAULT_CSS = """
    BackupPanel {
        height: auto;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    def __init__(self) -> None:
        super().__init__("", id="backup-panel")
        self.levels: dict[str, str] = {}

    def show(self, panel: dict[str, Any], now: float,
             shown: Callable[[str | None], str | None]) -> None:
        self.levels = {str(k["kind"]): str(k["level"]) for k in panel["kinds"]}
        worst = next((level for level in ("critical", "warning")
                      if level in self.levels.values()), "ok")
        for level in ("critical", "warning", "ok"):
            self.set_class(worst == level, f"-{level}")
        parts: list[str | tuple[str, str]] = []
        for doc in panel["kinds"]:
            parts += [*kind_parts(doc, now), "\n"]
        parts += drill_parts(panel.get("last_drill"), now, shown)
        self.update(Content.assemble(*parts))
