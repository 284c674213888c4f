"""`vertex-tui backup ...`: schedule, history, run now, verify, restore, drill."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vertex_tui import cli_panels
from vertex_tui.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    ago,
    here_or_by_request,
    print_json,
    run_line,
    with_engine,
)
from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.settings import Settings


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser],
               positive_int: Callable[[str], int]) -> None:
    from vertex_tui.engine.backup.service import JOBS, KINDS

    backup = sub.add_parser("backup", help="backups: schedule, history, run, verify, restore")
    actions = backup.add_subparsers(dest="action", required=True, parser_class=parser_class)
    schedule = actions.add_parser("schedule", help="each job: schedule, enabled, next run")
    schedule.add_argument("--json", action="store_true")
    lst = actions.add_parser("list", help="backup history, newest first")
    lst.add_argument("--kind", choices=KINDS)
    lst.add_argument("--limit", type=positive_int, default=50)
    lst.add_argument("--json", action="store_true")
    run = actions.add_parser("run", help="run a job now: " + ", ".join(JOBS))
    run.add_argument("kind", choices=JOBS, metavar="KIND")
    run.add_argument("--dry-run", action="store_true",
                     help="rotation: list what it would delete now, delete nothing")
    run.add_argument("--json", action="store_true")
    verify = actions.add_parser("verify", help="check a backup file or folder (exit 1 if bad)")
    verify.add_argument("path", type=Path)
    verify.add_argument("--json", action="store_true")
    restore = actions.add_parser("restore", help="replace the database from a verified backup")
    restore.add_argument("path", type=Path)
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.add_argument("--force", action="store_true",
                         help="restore a file that is not a recorded, verified backup")
    restore.add_argument("--json", action="store_true")
    drill = actions.add_parser("drill", help="restore the newest backup into a temp folder")
    drill.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """`restore` replaces the database, so it runs before any engine opens it."""
    if args.action == "restore":
        return _restore(args, settings)
    return asyncio.run(with_engine(settings, [], lambda e: command(args, e)))


async def command(args: argparse.Namespace, engine: Engine) -> int:
    action = ACTIONS.get(args.action)
    if action is None:
        raise UsageError(f"unknown backup action {args.action}")
    return await action(args, engine)


async def _schedule(args: argparse.Namespace, engine: Engine) -> int:
    jobs = await engine.backup.schedule()
    if args.json:
        print_json([{k: j[k] for k in ("job", "schedule", "enabled", "next_run")}
                    for j in jobs])
    else:
        now = engine.clock.time()
        for j in jobs:
            nxt = j["next_run"]
            when = ("disabled" if not j["enabled"] else "enabled, no next run" if nxt is None
                    else f"{nxt}  ({_until(nxt, now)})")
            print(f"{j['job']:9} {j['schedule']:15} {when}")
    return EXIT_OK


async def _list(args: argparse.Namespace, engine: Engine) -> int:
    records = await engine.backup.history(kind=args.kind, limit=args.limit)
    if args.json:
        print_json([r.to_json() for r in records])
    else:
        _backups_table(records)
    return EXIT_OK


async def _run_job(args: argparse.Namespace, engine: Engine) -> int:
    if args.action == "run" and args.dry_run:
        return await cli_panels.rotation_dry_run(args, engine)
    job = args.kind if args.action == "run" else "drill"
    result = await here_or_by_request(engine, "backup.run", {"job": job},
                                      lambda: engine.backup.run(job))
    if args.json:
        print_json(result)
    else:
        print(run_line(result))
    return EXIT_OK if result["status"] == "ok" else EXIT_FAILED


async def _verify(args: argparse.Namespace, engine: Engine) -> int:
    verdict = await engine.backup.verify(args.path)
    if args.json:
        print_json({"path": str(args.path), "kind": verdict.kind, "ok": verdict.ok,
                    "reason": verdict.reason})
    else:
        print(f"{args.path}: {'ok' if verdict.ok else 'BAD'} ({verdict.kind}: "
              f"{verdict.reason})")
    return EXIT_OK if verdict.ok else EXIT_FAILED


ACTIONS: dict[str, Callable[[argparse.Namespace, Engine], Awaitable[int]]] = {
    "schedule": _schedule,
    "list": _list,
    "run": _run_job,
    "drill": _run_job,
    "verify": _verify,
}


def _until(iso: str | None, now: float) -> str:
    from datetime import datetime

    if iso is None:
        return "-"
    return ago(datetime.fromisoformat(iso).timestamp(), now)


def _backups_table(records: list[Any]) -> None:
    import humanize

    if not records:
        print("no backups")
        return
    print(f"{'ID':>5}  {'KIND':8} {'STATUS':7} {'STARTED':26} {'SIZE':>10} {'SECS':>7} "
          "VERIFIED  PATH")
    for r in records:
        size = humanize.naturalsize(r.size, binary=True) if r.size is not None else "-"
        secs = f"{r.duration:.1f}" if r.duration is not None else "-"
        print(f"{r.id:>5}  {r.kind:8} {r.status:7} {isoformat(r.started_at) or '-':26} "
              f"{size:>10} {secs:>7} {'yes' if r.verified else 'no':8}  "
              f"{r.path or r.error or ''}")


def _restore(args: argparse.Namespace, settings: Settings) -> int:
    from vertex_tui.engine.backup.restore import restore
    from vertex_tui.engine.engine import new_owner

    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("restore replaces the database; confirm with --yes")
        answer = input(f"Replace {settings.database_label} with the database in {args.path}?"
                       " The current one is kept aside. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("restore cancelled")
            return EXIT_FAILED
    result = asyncio.run(restore(settings, args.path, owner=new_owner(), force=args.force))
    if args.json:
        print_json(result)
    else:
        kept = result["carried_over"]
        print(f"restored {settings.database_label} from {result['restored_from']}; previous "
              f"database "
              f"saved as {result['previous_saved_as']}; kept its {kept.get('backups', 0)} "
              f"backup record(s) and {kept.get('audit_log', 0)} newer audit entries")
        for warning in result["warnings"]:
            print(f"warning: {warning}")
    return EXIT_OK
