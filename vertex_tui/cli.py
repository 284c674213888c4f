"""The command line: the top-level options, the console or headless engine, and a table of
subcommand modules, each a thin call into the engine (see cli_common.py for what a module
exposes). Adding one is a line in `AREAS`.

Exit status: 0 done, 1 the operation failed, 2 bad usage, configuration or input (one line
on stderr naming what is wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import signal
import sys
from types import ModuleType
from typing import Any

from vertex_tui import (
    __version__,
    cli_backup,
    cli_email,
    cli_entities,
    cli_jobs,
    cli_log,
    cli_panels,
    cli_status,
    doctor,
    logsetup,
)
from vertex_tui.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageExit,
    ago,
    here_or_by_request,
    positive_int,
    print_json,
    with_engine,
)
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import UsageError, VertexError
from vertex_tui.engine.settings import Settings
from vertex_tui.engine.store.db import DriverError

__all__ = ["AREAS", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

log = logging.getLogger("vertex_tui")

# The helpers' names before cli_common.py, for subcommand modules that still import them here.
_print_json, _ago, _here_or_by_request, _positive_int, _with_engine = (
    print_json, ago, here_or_by_request, positive_int, with_engine)

# Subcommand modules, in the order `--help` lists them.
AREAS: list[ModuleType] = [
    cli_status, cli_email, cli_backup, cli_entities, cli_jobs, cli_log, doctor,
]


def _add_parser(module: ModuleType, sub: Any) -> None:
    """`add_parser(sub, parser_class, positive_int)`, or `add_parser(sub)` for a module that
    needs neither."""
    takes = len(inspect.signature(module.add_parser).parameters)
    module.add_parser(*(sub, Parser, positive_int)[:max(1, takes)])


def build_parser() -> tuple[Parser, dict[str, ModuleType]]:
    """The parser, and the command table: subcommand name -> the module that runs it."""
    p = Parser(prog="vertex-tui", description="Operations console and engine for Vertex AR.")
    p.add_argument("--version", action="version", version=f"vertex-tui {__version__}")
    p.add_argument("--no-ui", action="store_true", help="run the engine headless (systemd)")
    p.add_argument(
        "--attach",
        action="store_true",
        help="console without an engine of its own, over the shared database",
    )
    cli_panels.add_top_options(p)
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    sub = p.add_subparsers(dest="command", parser_class=Parser)
    sub.add_parser("demo", help="the console on a sample database with a built-in mail sink")
    table: dict[str, ModuleType] = {}
    for module in AREAS:
        before = set(sub.choices)
        _add_parser(module, sub)
        table.update(dict.fromkeys(set(sub.choices) - before, module))
    return p, table


def run_command(module: ModuleType, args: argparse.Namespace, settings: Settings) -> int:
    """A module's `run(args, settings)`, or its `command(args, engine)` with an engine
    running the services its `services(args)` names (none unless it has one)."""
    if hasattr(module, "run"):
        code: int = module.run(args, settings)
        return code
    services = module.services(args) if hasattr(module, "services") else []
    return asyncio.run(with_engine(settings, services, lambda e: module.command(args, e)))


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def headless(settings: Settings) -> int:
    """`run_headless` under a handler of its own for SIGTERM and SIGINT from the start.

    Left to `asyncio.run`, a SIGINT landing before `run_headless` had put its loop handlers in
    place went to asyncio's own handler, which cancels the main task; and once, in the full
    suite, that Ctrl-C was lost: the engine started and ran on (its passes every five minutes
    for 35 minutes) until a SIGTERM stopped it. A stop signal before the loop handlers is
    now remembered here, and `run_headless` stops as soon as it has started."""
    early: list[int] = []
    for sig in STOP_SIGNALS:
        signal.signal(sig, lambda signum, _frame: early.append(signum))
    return asyncio.run(run_headless(settings, early))


async def run_headless(settings: Settings, early: list[int] | None = None) -> int:
    """The engine without a console until SIGTERM or SIGINT; then a graceful stop. `early`:
    stop signals received before this (see `headless`), checked once the loop has its own
    handlers, so none falls between the two."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    if early:
        stop.set()
    async with Engine(settings) as engine:
        log.info(
            "engine %s running: %s (database %s)",
            engine.owner,
            ", ".join(engine.running()),
            settings.database_label,
        )
        await stop.wait()
        log.info("stop requested; finishing in-flight work")
    log.info("engine stopped")
    return EXIT_OK


def _console(args: argparse.Namespace, settings: Settings) -> int:
    if not sys.stdout.isatty():
        print("vertex-tui: the console needs a terminal; use --no-ui for the headless engine",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "demo":
            from vertex_tui.demo import run_demo

            return asyncio.run(run_demo(settings))
        from vertex_tui.console import run_console

        return asyncio.run(run_console(settings, attached=args.attach,
                                       read_only=args.read_only))
    except VertexError as exc:
        print(f"vertex-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED


def main(argv: list[str]) -> int:
    parser, table = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageExit as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        cli_panels.check_options(args)
        settings = Settings.from_env()
        if args.command not in ("config", "demo"):
            cli_panels.check_database_path(settings)
    except UsageError as exc:
        print(f"vertex-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "demo" or (args.command is None and not args.no_ui):
        return _console(args, settings)
    logsetup.configure(args.log_format, "warning" if args.command else args.log_level)
    try:
        if args.command is None:
            return headless(settings)
        return run_command(table[args.command], args, settings)
    except UsageError as exc:
        print(f"vertex-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VertexError as exc:
        print(f"vertex-tui: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except DriverError as exc:
        # What the engine did not turn into a VertexError still gets one line, not a traceback.
        print(f"vertex-tui: database {settings.database_label}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
