"""CLI checks and commands of the console-safety work: option combinations, the database
folder, `config --json`, `backup run rotation --dry-run` and a missing subcommand's list.

Wired into cli.py by one call each (see `main` there)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from vertex_tui.engine import Engine, Settings
from vertex_tui.engine.errors import ConfigError, UsageError
from vertex_tui.engine.settings import DatabaseUrl, Secret


def add_top_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--read-only", action="store_true",
                        help="with --attach: a console that only looks (no action keys)")


def check_options(args: argparse.Namespace) -> None:
    """Option combinations that make no sense are bad usage (exit 2), not a guess."""
    if args.attach and args.no_ui:
        raise UsageError("--attach and --no-ui exclude each other: --no-ui runs an engine, "
                         "--attach a console over an engine that runs elsewhere")
    if args.read_only and not args.attach:
        raise UsageError("--read-only needs --attach (a console that hosts the engine runs "
                         "its jobs anyway)")
    if args.command == "backup" and getattr(args, "dry_run", False) and args.kind != "rotation":
        raise UsageError(f"--dry-run applies to rotation only, not {args.kind}")


def check_database_folder(settings: Settings) -> None:
    """A database in a folder that does not exist is a configuration error (exit 2): opening
    it would fail anyway, with a less helpful sqlite message. (None on PostgreSQL.)"""
    if settings.database_url:
        return
    folder = settings.db_path.absolute().parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError("VERTEX_DB_PATH", str(settings.db_path),
                          f"a file in an existing folder ({folder} {what})")


def _json_value(value: Any) -> Any:
    if isinstance(value, DatabaseUrl):
        return value.masked()
    if isinstance(value, Secret):
        return "********" if value else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if value == "":
        return None
    return value


def config_json(settings: Settings) -> dict[str, Any]:
    """`config --json`: variable -> effective value (numbers and booleans typed, unset null,
    secrets masked)."""
    return {name: _json_value(value) for name, value in settings.values()}


async def rotation_dry_run(args: argparse.Namespace, engine: Engine) -> int:
    """`backup run rotation --dry-run`: what rotation would delete now; deletes nothing."""
    import humanize

    preview = await engine.backup.rotation_preview()
    if args.json:
        json.dump({"dry_run": True, "would_delete": preview}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    total = sum(len(items) for items in preview.values())
    for kind, items in preview.items():
        for item in items:
            size = "-" if item["size"] is None else humanize.naturalsize(item["size"],
                                                                         binary=True)
            print(f"would delete {kind:8} #{item['id']:<5} {item['started_at']}  {size:>10}  "
                  f"{item['path'] or ''}")
    print(f"rotation dry run: {total} backup(s) would be deleted "
          f"({', '.join(f'{k} {len(v)}' for k, v in preview.items())}); nothing was deleted")
    return 0


def missing_subcommand(parser: argparse.ArgumentParser, message: str) -> str | None:
    """For `vertex-tui email` alone: the error line and the list of its subcommands (as
    `git stash foo` users expect: usage on stderr, exit 2); None for other errors."""
    if "required" not in message:
        return None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and action.dest in message:
            rows = [(choice.dest, choice.help or "") for choice in action._choices_actions]
            width = max(len(name) for name, _ in rows)
            lines = [f"{parser.prog}: a subcommand is required, one of:"]
            lines += [f"  {name:{width}}  {help_text}".rstrip() for name, help_text in rows]
            lines.append(f"(`{parser.prog} SUBCOMMAND --help` for its options)")
            return "\n".join(lines)
    return None
