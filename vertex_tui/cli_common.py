"""What every `vertex-tui` subcommand module shares: exit codes, one-line usage errors,
argument types, running a command against an engine, and output helpers.

A subcommand module (`cli_<area>.py`) exposes `add_parser(sub, parser_class, positive_int)`
(or just `add_parser(sub)`) and either `command(args, engine)` (run with an engine whose
services are not started, or those named by an optional `services(args)`) or
`run(args, settings)` (it opens what it needs itself); `cli.AREAS` lists the modules.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, NoReturn

from vertex_tui.engine.engine import Engine
from vertex_tui.engine.numbers import whole_number
from vertex_tui.engine.rundetail import NOTHING, run_detail
from vertex_tui.engine.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageExit(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line (exit 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        from vertex_tui import cli_panels  # (it imports nothing of the CLI's)

        raise UsageExit(cli_panels.missing_subcommand(self, message) or f"{self.prog}: {message}")


def positive_int(text: str) -> int:
    """The type of every id, limit and count option: 1 to 2**63 - 1 (what both backends
    store), else a one-line usage error that argparse prefixes with the option's name."""
    try:
        return whole_number(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got {text}")
    return value


async def with_engine(
    settings: Settings, run: list[str], command: Callable[[Engine], Awaitable[int]]
) -> int:
    async with Engine(settings, run=run) as engine:
        return await command(engine)


async def here_or_by_request(engine: Engine, action: str, args: dict[str, Any],
                             here: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a pass or job in this process; if a running engine holds its lease, ask that
    engine to run it (a request it picks up within a second) and wait for the result."""
    result = await here()
    if result.get("status") != "skipped" or not await engine.leases.alive_engines(
            engine.clock.time()):
        return result
    from vertex_tui.bridge_requests import wait_for_request

    return await wait_for_request(engine, action, args)


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def ago(ts: float | None, now: float) -> str:
    import humanize

    from vertex_tui.timefmt import until

    if ts is None:
        return "-"
    from datetime import timedelta

    delta = timedelta(seconds=now - ts)
    # A time to come is a deadline: two units, as the console shows it ("in 1 day 23 hours").
    return humanize.naturaltime(delta) if delta.total_seconds() >= 0 else until(ts, now)


def words(value: Any) -> str:
    """A value of a result as an operator reads it, never a Python repr: "-" for nothing
    (None or ""), yes/no for a flag, a list joined with ", ", a mapping as "key: value"
    pairs joined with ", " ("-" when empty)."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {words(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(map(words, value)) or "-"
    return str(value)


def run_line(result: Mapping[str, Any]) -> str:
    """A job's or pass's result in one line (`jobs run`, `backup run`, `lifecycle check`):
    `job=` and `status=`, then what it did as `jobs history` says it (run_detail: numbers,
    set flags, texts, of a group what is not zero as `changes.project.expiring=1`), a
    non-empty group that is all zeros as `deleted=0` (rotation looked and removed nothing),
    its duration, and its error in full. `--json` keeps the whole document."""
    parts = [f"{key}={result[key]}" for key in ("job", "status")
             if result.get(key) not in (None, "")]
    rest = {k: v for k, v in result.items() if k not in ("job", "status", "error", "seconds")}
    for key, value in rest.items():
        detail = run_detail({key: value})
        if detail != NOTHING:
            parts.append(detail)
        elif isinstance(value, Mapping) and value:
            parts.append(f"{key}=0")
    seconds = result.get("seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
        parts.append(f"seconds={seconds:.3f}")
    if result.get("error"):
        parts.append(f"error={result['error']}")
    return " ".join(parts)


def field_lines(doc: Mapping[str, Any], width: int) -> Iterator[str]:
    """A record as `name: value` lines, names right-aligned to `width`: values in words
    (`words`), an empty mapping or list left out, a mapping one `key: value` a line and a
    value of several lines on as many, each under the first."""
    pad = " " * (width + 2)
    for key, value in doc.items():
        if isinstance(value, (Mapping, list, tuple)) and not value:
            continue
        if isinstance(value, Mapping):
            lines = [f"{k}: {words(v)}" for k, v in value.items()]
        else:
            lines = words(value).splitlines() or ["-"]
        yield f"{key:>{width}}: {lines[0]}"
        yield from (f"{pad}{line}" for line in lines[1:])
