"""CLI checks and commands of the console-safety work: option combinations, the database
path, `config --json`, `backup run rotation --dry-run` and a missing subcommand's list.

Wired into cli.py by one call each (see `main` there)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pwd
import sys
from pathlib import Path
from typing import Any

from vertex_tui.engine import Engine, Settings
from vertex_tui.engine.errors import ConfigError, StoreError, UsageError
from vertex_tui.engine.settings import DatabaseUrl, Secret
from vertex_tui.engine.store.db import check_sqlite_file


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


def check_database_path(settings: Settings) -> None:
    """What makes the SQLite database at VERTEX_DB_PATH unusable before any command opens it
    is a configuration error (exit 2, one line naming VERTEX_DB_PATH): a folder that does not
    exist, a folder or a file that is not SQLite at the path, and a file or folder this user
    cannot write (SQLite's own word for each is "unable to open database file" or worse).
    (None on PostgreSQL.)"""
    if settings.database_url:
        return
    path = settings.db_path
    folder = path.absolute().parent
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError("VERTEX_DB_PATH", str(path),
                          f"a file in an existing folder ({folder} {what})")
    try:
        check_sqlite_file(path)
    except StoreError as exc:
        raise ConfigError("VERTEX_DB_PATH", str(path),
                          f"a vertex-tui SQLite database, or a path for a new one ({exc})"
                          ) from None
    read_only = read_only_part(path)
    if read_only:
        raise ConfigError("VERTEX_DB_PATH", str(path),
                          f"a database this user can write ({read_only})")


def read_only_part(path: Path) -> str:
    """Why this user cannot write the SQLite database at `path` ("" if it can): the file, or
    its folder when SQLite must create something there (the file itself, its -wal or -shm).
    Every command writes (migrations, heartbeats, audit), so a read-only one fails anyway."""
    folder = path.absolute().parent
    user = _user()
    if os.access(folder, os.F_OK) and _read_only_mount(folder):
        return f"{folder} is on a read-only file system"
    if path.exists() and not os.access(path, os.W_OK):
        return f"the file {path} is read-only for {user}"
    needed = [p for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if not p.exists()]
    if needed and not os.access(folder, os.W_OK | os.X_OK):
        return (f"its folder {folder} is read-only for {user}, and SQLite must create"
                f" {needed[0].name} in it")
    return ""


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"uid {uid}"


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
