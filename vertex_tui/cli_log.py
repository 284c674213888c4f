"""`vertex-tui log`: the event log of every engine on this database, like `journalctl`.

    vertex-tui log [--follow] [--service S] [--level L] [--search QUERY] [--since 10m] [--json]

`--json` prints one object a line (`at`, `service`, `level`, `event`, `message`), so
`--follow --json` streams. `--follow` runs until SIGINT or SIGTERM and then exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from vertex_tui.engine import Engine
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.eventlog import LEVELS, level_number, parse_since
from vertex_tui.engine.search import LOG_KEYS, parse

EXIT_OK = 0
FOLLOW_POLL = 0.5  # seconds between reads while following
FIRST_PAGE = 200  # without --since, the latest this many entries (then everything new)


def _since(text: str) -> float:
    try:
        return parse_since(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--since {text!r}: ")) from None


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser],
               positive_int: Callable[[str], int]) -> None:
    p = sub.add_parser("log", help="engine events of every engine on this database")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new entries")
    p.add_argument("--service", metavar="S", help="only this service (email, backup, ...)")
    p.add_argument("--level", type=str.lower, choices=tuple(LEVELS), default="info",
                   help="this level and above (default info)")
    p.add_argument("--search", metavar="QUERY",
                   help="the Log screen's search: text in the message, service:, level:, older:,"
                        " newer: (a bad term is exit 2)")
    p.add_argument("--since", type=_since, metavar="AGE",
                   help="entries of the last AGE (90s, 10m, 2h, 7d)")
    p.add_argument("--limit", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="one JSON object a line")


async def command(args: argparse.Namespace, engine: Engine) -> int:
    zone = ZoneInfo(engine.settings.timezone)
    # The Log screen's language; a bad term raises SearchError (a UsageError: one line, exit 2).
    search = parse(args.search, keys=LOG_KEYS) if args.search else None
    query = {"service": args.service, "level": level_number(args.level), "search": search}
    limit = args.limit or (100_000 if args.since is not None else FIRST_PAGE)
    if not args.follow:
        entries, _ = await engine.read_log(since=args.since, limit=limit, **query)
        _print(entries, args.json, zone)
        if not entries and not args.json:
            print("no entries", file=sys.stderr)
        return EXIT_OK
    # Before the first read: a SIGINT from then on ends the follow quietly (exit 0).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        entries, cursor = await engine.read_log(since=args.since, limit=limit, **query)
        _print(entries, args.json, zone)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FOLLOW_POLL)
            except TimeoutError:
                pass
            entries, cursor = await engine.read_log(after=cursor, limit=100_000, **query)
            _print(entries, args.json, zone)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return EXIT_OK


def _print(entries: list[dict[str, Any]], as_json: bool, zone: ZoneInfo) -> None:
    for e in entries:
        if as_json:
            line = json.dumps(e, ensure_ascii=False)
        else:
            stamp = datetime.fromisoformat(e["at"]).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
            line = f"{stamp}  {e['level'].upper():<7}  {e['service']:<9}  {e['message']}"
        sys.stdout.write(line + "\n")
    sys.stdout.flush()
