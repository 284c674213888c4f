"""`vertex-tui email history [--range 1h|24h|7d] [--json]`: mail per minute or hour.

The buckets come from the `email.rollup` job's table, the current one (and any not rolled up
yet) computed from the jobs. JSON: a list, oldest first, of
`{"at", "enqueued", "sent", "failed", "retried", "p50_ms", "p95_ms", "depth"}`; text: a table.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from vertex_tui.engine import Engine
from vertex_tui.engine.email.history import RANGES, Bucket
from vertex_tui.engine.email.rollup import to_json

EXIT_OK = 0


def add_parser(email: Any) -> None:
    history = email.add_parser("history", help="enqueued, sent, failed, retried, latency and "
                                               "depth per minute (1h) or hour (24h, 7d)")
    history.add_argument("--range", choices=list(RANGES), default="1h", dest="range_name")
    history.add_argument("--json", action="store_true")


async def command(args: argparse.Namespace, engine: Engine) -> int:
    from vertex_tui.cli import _print_json

    buckets = await engine.email.history(args.range_name)
    if args.json:
        _print_json([to_json(b) for b in buckets])
    else:
        print("\n".join(table(buckets, engine.settings.timezone, args.range_name)))
    return EXIT_OK


def table(buckets: list[Bucket], timezone: str, range_name: str) -> list[str]:
    """The buckets as aligned lines; the time in VERTEX_TIMEZONE (a date when not today)."""
    tz = ZoneInfo(timezone)
    head = ("at", "enqueued", "sent", "failed", "retried", "p50", "p95", "depth")
    rows = [head]
    fmt = "%H:%M" if range_name == "1h" else "%a %H:00"
    for b in buckets:
        at = datetime.fromtimestamp(b.at, UTC).astimezone(tz).strftime(fmt)
        rows.append((at, str(b.enqueued), str(b.sent), str(b.failed), str(b.retried),
                     _ms(b.p50_ms), _ms(b.p95_ms), "-" if b.depth is None else str(b.depth)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()
             for r in rows]
    total = sum(b.sent for b in buckets)
    lines.append(f"{len(buckets)} buckets · sent {total} · failed "
                 f"{sum(b.failed for b in buckets)} · retried {sum(b.retried for b in buckets)}")
    return lines


def _ms(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value} ms" if value < 10_000 else f"{value / 1000:.0f} s"
