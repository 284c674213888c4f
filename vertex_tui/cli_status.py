"""`vertex-tui status` (every service, the live engines) and `vertex-tui config`."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from vertex_tui import cli_panels
from vertex_tui.cli_common import EXIT_OK, print_json, with_engine
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.settings import Settings


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser],
               positive_int: Callable[[str], int]) -> None:
    sub.add_parser("config", help="print the effective settings (secrets masked)").add_argument(
        "--json", action="store_true")
    status = sub.add_parser("status", help="state of every service")
    status.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "config":
        if args.json:
            print_json(cli_panels.config_json(settings))
            return EXIT_OK
        for name, value in settings.describe():
            print(f"{name}={value}")
        return EXIT_OK
    return asyncio.run(with_engine(settings, [], lambda e: command(args, e)))


async def command(args: argparse.Namespace, engine: Engine) -> int:
    doc = await engine.status()
    if args.json:
        print_json(doc)
        return EXIT_OK
    engines = [e["owner"] for e in doc["engines"]]
    print(f"engines alive: {len(engines)}" + (f" ({', '.join(engines)})" if engines else ""))
    for name, svc in doc["services"].items():
        print(
            f"{name:10} {svc['state']:12} last {svc['last_run'] or '-':26} "
            f"next {svc['next_run'] or '-'}"
        )
    smtp = doc["services"]["email"].get("smtp") or {}
    if smtp.get("state") == "unreachable":
        print(f"SMTP relay unreachable since {smtp['since']} ({smtp['error']})")
    return EXIT_OK
