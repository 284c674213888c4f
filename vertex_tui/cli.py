"""The command line: argument parsing and subcommands, each a thin call into the engine.

Exit status: 0 done, 1 the operation failed, 2 bad usage, configuration or input (one line
on stderr naming what is wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from vertex_tui import __version__, cli_jobs, doctor, logsetup
from vertex_tui.engine import Engine, Settings, UsageError, VertexError
from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.email.message import PreparedEmail
from vertex_tui.engine.email.models import STATUSES, EmailJob
from vertex_tui.engine.email.queue import prepare_mapping
from vertex_tui.engine.errors import InvalidMessage
from vertex_tui.engine.store.db import DriverError

log = logging.getLogger("vertex_tui")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageExit(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


class Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line (exit 2) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        raise UsageExit(f"{self.prog}: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text}")
    return value


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of days, got {text!r}") from None
    if not 0 <= value < 1e6:
        raise argparse.ArgumentTypeError(f"expected a number of days >= 0, got {text}")
    return value


def build_parser() -> Parser:
    p = Parser(prog="vertex-tui", description="Operations console and engine for Vertex AR.")
    p.add_argument("--version", action="version", version=f"vertex-tui {__version__}")
    p.add_argument("--no-ui", action="store_true", help="run the engine headless (systemd)")
    p.add_argument(
        "--attach",
        action="store_true",
        help="console without an engine of its own, over the shared database",
    )
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="info")
    sub = p.add_subparsers(dest="command", parser_class=Parser)

    sub.add_parser("config", help="print the effective settings (secrets masked)")
    sub.add_parser("demo", help="the console on a sample database with a built-in mail sink")
    status = sub.add_parser("status", help="state of every service")
    status.add_argument("--json", action="store_true")

    email = sub.add_parser("email", help="the email queue").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    stats = email.add_parser("stats", help="counts by status, oldest pending, sent last minute")
    stats.add_argument("--json", action="store_true")
    lst = email.add_parser("list", help="jobs, newest first")
    lst.add_argument("--status", choices=STATUSES)
    lst.add_argument("--search", help="text in the recipient or subject")
    lst.add_argument("--limit", type=_positive_int, default=50)
    lst.add_argument("--before-id", type=_positive_int, help="continue below this job id")
    lst.add_argument("--json", action="store_true")
    failed = email.add_parser("failed", help="failed jobs with their last error")
    failed.add_argument("--limit", type=_positive_int, default=50)
    failed.add_argument("--json", action="store_true")
    show = email.add_parser("show", help="one job with headers and every attempt")
    show.add_argument("id", type=_positive_int)
    show.add_argument("--json", action="store_true")
    retry = email.add_parser("retry", help="failed jobs back to the queue with fresh attempts")
    retry.add_argument("--id", type=_positive_int, help="retry this job only")
    retry.add_argument("--max", type=_positive_int, help="retry at most N (oldest first)")
    retry.add_argument("--json", action="store_true")
    drain = email.add_parser("drain", help="deliver everything due now, then return")
    drain.add_argument("--timeout", type=float, default=None, help="give up after S seconds")
    drain.add_argument("--json", action="store_true")
    cleanup = email.add_parser("cleanup", help="delete sent and failed jobs older than N days")
    cleanup.add_argument("--older-than", type=_days, default=30.0, metavar="DAYS")
    cleanup.add_argument("--json", action="store_true")
    email.add_parser("pause", help="stop delivering (every engine on this database)")
    email.add_parser("resume", help="resume delivering")
    _backup_parser(sub)
    _entity_parsers(sub)
    cli_jobs.add_parser(sub, Parser, _positive_int)
    doctor.add_parser(sub)
    enqueue = email.add_parser("enqueue", help="queue one message or a JSONL file of them")
    enqueue.add_argument("--to")
    enqueue.add_argument("--subject")
    enqueue.add_argument("--body")
    enqueue.add_argument("--html")
    enqueue.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    enqueue.add_argument("--jsonl", type=Path, metavar="FILE")
    return p


def _entity_parsers(sub: Any) -> None:
    from vertex_tui.engine.videos import ROTATIONS

    for service in ("lifecycle", "video"):
        parser = sub.add_parser(service, help=f"the {service} scheduler: summary, check now")
        actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
        summary = actions.add_parser("summary", help="counts, notices, upcoming changes")
        summary.add_argument("--json", action="store_true")
        check = actions.add_parser("check", help="run one pass now")
        check.add_argument("--json", action="store_true")
        if service == "video":
            add = actions.add_parser("add", help="add a video to a portrait; prints its id")
            add.add_argument("--portrait", type=_positive_int, required=True)
            add.add_argument("--title", required=True)
            add.add_argument("--start", metavar="ISO8601")
            add.add_argument("--end", metavar="ISO8601")
            add.add_argument("--rotation", choices=ROTATIONS, default="none")
    project = sub.add_parser("project", help="projects").add_subparsers(
        dest="action", required=True, parser_class=Parser)
    add = project.add_parser("add", help="add a project; prints its id")
    add.add_argument("--name", required=True)
    add.add_argument("--owner", required=True, metavar="EMAIL")
    add.add_argument("--subscription-end", metavar="ISO8601")
    portrait = sub.add_parser("portrait", help="portraits").add_subparsers(
        dest="action", required=True, parser_class=Parser)
    add = portrait.add_parser("add", help="add a portrait; prints its id")
    add.add_argument("--owner", required=True, metavar="EMAIL")
    add.add_argument("--title", required=True)
    add.add_argument("--project", type=_positive_int)
    add.add_argument("--subscription-end", metavar="ISO8601")


async def _here_or_by_request(engine: Engine, action: str, args: dict[str, Any],
                              here: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a pass or job in this process; if a running engine holds its lease, ask that
    engine to run it (a request it picks up within a second) and wait for the result."""
    result = await here()
    if result.get("status") != "skipped" or not await engine.leases.alive_engines(
            engine.clock.time()):
        return result
    from vertex_tui.bridge_requests import wait_for_request

    return await wait_for_request(engine, action, args)


def _when(text: str | None) -> float | None:
    from vertex_tui.engine.lifecycle import parse_when

    return None if text is None else parse_when(text)


async def _entities(args: argparse.Namespace, engine: Engine) -> int:
    if args.command == "project":
        print(await engine.lifecycle.add_project(
            name=args.name, owner=args.owner, subscription_end=_when(args.subscription_end)))
        return EXIT_OK
    if args.command == "portrait":
        print(await engine.lifecycle.add_portrait(
            title=args.title, owner=args.owner, project_id=args.project,
            subscription_end=_when(args.subscription_end)))
        return EXIT_OK
    service = engine.lifecycle if args.command == "lifecycle" else engine.video
    if args.action == "add":
        print(await engine.video.add_video(portrait_id=args.portrait, title=args.title,
                                           start=_when(args.start), end=_when(args.end),
                                           rotation=args.rotation))
        return EXIT_OK
    if args.action == "check":
        result = await _here_or_by_request(engine, f"{args.command}.check", {},
                                           service.check)
        if args.json:
            _print_json(result)
        else:
            print(" ".join(f"{k}={v}" for k, v in result.items()))
        return EXIT_OK if result["status"] == "ok" else EXIT_FAILED
    doc = await service.summary()
    if args.json:
        _print_json(doc)
    elif args.command == "lifecycle":
        _lifecycle_text(doc)
    else:
        _video_text(doc)
    return EXIT_OK


def _lifecycle_text(doc: dict[str, Any]) -> None:
    from vertex_tui.timefmt import span

    n = doc["notifications"]
    print(f"active {doc['active']}  expiring {doc['expiring']}  archived {doc['archived']}")
    print(f"notices sent: 7 days {n['7days']}  24 hours {n['24hours']}  expired "
          f"{n['expired']}  (skipped as too old: {doc['notifications_skipped']})")
    print("next expirations:")
    for u in doc["upcoming"]:
        left = span(u["seconds_left"])
        print(f"  {u['subscription_end']}  in {left:18} {u['kind']:8} #{u['id']:<6} "
              f"{u['name'][:30]:30} {u['owner']}")


def _video_text(doc: dict[str, Any]) -> None:
    from vertex_tui.timefmt import span

    print("  ".join(f"{k} {doc[k]}" for k in ("scheduled", "active", "inactive", "archived")))
    print("upcoming changes:")
    for c in doc["upcoming"]:
        when = span(c["seconds_from_now"])
        print(f"  {c['at']}  in {when:18} {c['what']:10} video #{c['video']} "
              f"'{c['title']}' of portrait #{c['portrait']}")
    print("current rotation:")
    for r in doc["rotating"]:
        print(f"  portrait #{r['portrait']} '{r['portrait_title']}': video #{r['video']} "
              f"'{r['title']}' ({r['rotation']}, since {r['since']})")


def _backup_parser(sub: Any) -> None:
    from vertex_tui.engine.backup.service import JOBS, KINDS

    backup = sub.add_parser("backup", help="backups: schedule, history, run, verify, restore")
    actions = backup.add_subparsers(dest="action", required=True, parser_class=Parser)
    schedule = actions.add_parser("schedule", help="each job: schedule, enabled, next run")
    schedule.add_argument("--json", action="store_true")
    lst = actions.add_parser("list", help="backup history, newest first")
    lst.add_argument("--kind", choices=KINDS)
    lst.add_argument("--limit", type=_positive_int, default=50)
    lst.add_argument("--json", action="store_true")
    run = actions.add_parser("run", help="run a job now: " + ", ".join(JOBS))
    run.add_argument("kind", choices=JOBS, metavar="KIND")
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


async def _backup(args: argparse.Namespace, engine: Engine) -> int:
    b = engine.backup
    if args.action == "schedule":
        jobs = await b.schedule()
        if args.json:
            _print_json([{k: j[k] for k in ("job", "schedule", "enabled", "next_run")}
                         for j in jobs])
        else:
            now = engine.clock.time()
            for j in jobs:
                nxt = j["next_run"]
                when = "disabled" if not j["enabled"] else f"{nxt}  ({_until(nxt, now)})"
                print(f"{j['job']:9} {j['schedule']:15} {when}")
        return EXIT_OK
    if args.action == "list":
        records = await b.history(kind=args.kind, limit=args.limit)
        if args.json:
            _print_json([r.to_json() for r in records])
        else:
            _backups_table(records)
        return EXIT_OK
    if args.action in ("run", "drill"):
        job = args.kind if args.action == "run" else "drill"
        result = await _here_or_by_request(engine, "backup.run", {"job": job},
                                           lambda: b.run(job))
        if args.json:
            _print_json(result)
        else:
            print(" ".join(f"{k}={v}" for k, v in result.items() if v is not None))
        return EXIT_OK if result["status"] == "ok" else EXIT_FAILED
    if args.action == "verify":
        verdict = await b.verify(args.path)
        if args.json:
            _print_json({"path": str(args.path), "kind": verdict.kind, "ok": verdict.ok,
                         "reason": verdict.reason})
        else:
            print(f"{args.path}: {'ok' if verdict.ok else 'BAD'} ({verdict.kind}: "
                  f"{verdict.reason})")
        return EXIT_OK if verdict.ok else EXIT_FAILED
    raise UsageError(f"unknown backup action {args.action}")


def _until(iso: str | None, now: float) -> str:
    from datetime import datetime

    if iso is None:
        return "-"
    return _ago(datetime.fromisoformat(iso).timestamp(), now)


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
        answer = input(f"Replace {settings.db_path} with the database in {args.path}? "
                       "The current file is kept aside. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("restore cancelled")
            return EXIT_FAILED
    result = asyncio.run(restore(settings, args.path, owner=new_owner(), force=args.force))
    if args.json:
        _print_json(result)
    else:
        kept = result["carried_over"]
        print(f"restored {settings.db_path} from {result['restored_from']}; previous database "
              f"saved as {result['previous_saved_as']}; kept its {kept.get('backups', 0)} "
              f"backup record(s) and {kept.get('audit_log', 0)} newer audit entries")
        for warning in result["warnings"]:
            print(f"warning: {warning}")
    return EXIT_OK


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def _ago(ts: float | None, now: float) -> str:
    import humanize

    from vertex_tui.timefmt import until

    if ts is None:
        return "-"
    from datetime import timedelta

    delta = timedelta(seconds=now - ts)
    # A time to come is a deadline: two units, as the console shows it ("in 1 day 23 hours").
    return humanize.naturaltime(delta) if delta.total_seconds() >= 0 else until(ts, now)


def _jobs_table(jobs: list[EmailJob]) -> None:
    if not jobs:
        print("no jobs")
        return
    print(f"{'ID':>8}  {'STATUS':8} {'TRIES':>5}  {'TO':30} {'SUBJECT':30} LAST ERROR")
    for j in jobs:
        print(
            f"{j.id:>8}  {j.status:8} {j.attempts:>5}  {j.to[:30]:30} {j.subject[:30]:30} "
            f"{(j.last_error or '')[:60]}"
        )


async def _email(args: argparse.Namespace, engine: Engine) -> int:
    q = engine.email
    action = args.action
    if action == "stats":
        stats = await q.stats()
        if args.json:
            _print_json(stats.to_json())
        else:
            now = engine.clock.time()
            print(
                f"pending {stats.pending}  sending {stats.sending}  sent {stats.sent}  "
                f"failed {stats.failed}{'  (PAUSED)' if stats.paused else ''}"
            )
            print(
                f"oldest pending: {_ago(stats.oldest_pending_at, now)}   "
                f"sent in the last minute: {stats.sent_last_minute}"
            )
        return EXIT_OK
    if action in ("list", "failed"):
        status = "failed" if action == "failed" else args.status
        jobs = await q.list_jobs(
            status=status,
            search=getattr(args, "search", None),
            limit=args.limit,
            before_id=getattr(args, "before_id", None),
        )
        if args.json:
            _print_json([j.to_json() for j in jobs])
        else:
            _jobs_table(jobs)
        return EXIT_OK
    if action == "show":
        detail = await q.get_job(args.id)
        if args.json:
            _print_json(detail.to_json())
        else:
            for key, value in detail.to_json().items():
                if key != "history":
                    print(f"{key:>16}: {value}")
            print("         history:")
            for a in detail.history:
                print(
                    f"    round {a.round} attempt {a.attempt}  {isoformat(a.at)}  "
                    f"{a.outcome:9} {a.session:10} {a.error or ''}".rstrip()
                )
        return EXIT_OK
    if action == "retry":
        ids = await q.retry(job_id=args.id, limit=args.max)
        if args.json:
            _print_json({"retried": len(ids), "ids": ids})
        else:
            print(f"retried {len(ids)} failed job(s)")
        return EXIT_OK
    if action == "cleanup":
        count = await q.cleanup(args.older_than)
        if args.json:
            _print_json({"deleted": count, "older_than_days": args.older_than})
        else:
            print(f"deleted {count} sent/failed job(s) older than {args.older_than:g} days")
        return EXIT_OK
    if action in ("pause", "resume"):
        await (q.pause() if action == "pause" else q.resume())
        print("delivery paused" if action == "pause" else "delivery resumed")
        return EXIT_OK
    if action == "drain":
        result = await q.drain(timeout=args.timeout)
        if args.json:
            _print_json(result)
        else:
            print(
                f"drained: sent {result['sent']}, failed {result['failed']}, "
                f"retrying later {result['retrying']}"
            )
        return EXIT_OK
    if action == "enqueue":
        return await _enqueue(args, engine)
    raise UsageError(f"unknown email action {action}")


def _parse_headers(items: list[str]) -> dict[str, str]:
    headers = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise UsageError(f"--header expects 'Name: value', got {item!r}")
        headers[name.strip()] = value.strip()
    return headers


def read_jsonl(path: Path) -> Iterator[PreparedEmail]:
    """The messages of a JSONL file, read and validated one line at a time (the file is never
    held in memory); the first bad line raises naming its number."""
    try:
        file = path.open(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    with file:
        try:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    doc = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidMessage(f"{path} line {number}: invalid JSON: {exc.msg}") from None
                try:
                    yield prepare_mapping(doc)
                except InvalidMessage as exc:
                    raise InvalidMessage(f"{path} line {number}: {exc}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{path} is not UTF-8 text") from None
        except OSError as exc:
            raise UsageError(f"cannot read {path}: {exc.strerror}") from None


async def _enqueue(args: argparse.Namespace, engine: Engine) -> int:
    if args.jsonl is not None:
        if args.to or args.subject or args.body or args.html or args.header:
            raise UsageError("use either --jsonl FILE or --to/--subject/--body, not both")
        # Streamed: read, validated and inserted in chunks inside one transaction, so memory
        # stays flat whatever the file's size; a bad line rolls back every line before it.
        ids = await engine.email.enqueue_stream(read_jsonl(args.jsonl))
        if not ids:
            raise UsageError(f"{args.jsonl} holds no messages")
        print(len(ids))
        return EXIT_OK
    missing = [f"--{k}" for k in ("to", "subject", "body") if getattr(args, k) is None]
    if missing:
        raise UsageError(f"email enqueue needs {', '.join(missing)} (or --jsonl FILE)")
    job_id = await engine.email.enqueue(
        to=args.to,
        subject=args.subject,
        body=args.body,
        html=args.html,
        headers=_parse_headers(args.header),
    )
    print(job_id)
    return EXIT_OK


async def _status(args: argparse.Namespace, engine: Engine) -> int:
    doc = await engine.status()
    if args.json:
        _print_json(doc)
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


async def run_headless(settings: Settings) -> int:
    """The engine without a console until SIGTERM or SIGINT; then a graceful stop."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Engine(settings) as engine:
        log.info(
            "engine %s running: %s (database %s)",
            engine.owner,
            ", ".join(engine.running()),
            settings.db_path,
        )
        await stop.wait()
        log.info("stop requested; finishing in-flight work")
    log.info("engine stopped")
    return EXIT_OK


async def _with_engine(
    settings: Settings, run: list[str], command: Callable[[Engine], Awaitable[int]]
) -> int:
    async with Engine(settings, run=run) as engine:
        return await command(engine)


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

        return asyncio.run(run_console(settings, attached=args.attach))
    except VertexError as exc:
        print(f"vertex-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAILED


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageExit as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        settings = Settings.from_env()
    except UsageError as exc:
        print(f"vertex-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "demo" or (args.command is None and not args.no_ui):
        return _console(args, settings)
    logsetup.configure(args.log_format, "warning" if args.command else args.log_level)
    try:
        if args.command is None:
            return asyncio.run(run_headless(settings))
        if args.command == "config":
            for name, value in settings.describe():
                print(f"{name}={value}")
            return EXIT_OK
        if args.command == "status":
            return asyncio.run(_with_engine(settings, [], lambda e: _status(args, e)))
        if args.command == "jobs":
            return asyncio.run(_with_engine(settings, [], lambda e: cli_jobs.command(args, e)))
        if args.command == "doctor":
            return doctor.run(args, settings)
        if args.command in ("lifecycle", "video", "project", "portrait"):
            return asyncio.run(_with_engine(settings, [], lambda e: _entities(args, e)))
        if args.command == "backup":
            if args.action == "restore":
                return _restore(args, settings)
            return asyncio.run(_with_engine(settings, [], lambda e: _backup(args, e)))
        run = ["email"] if args.command == "email" and args.action == "drain" else []
        return asyncio.run(_with_engine(settings, run, lambda e: _email(args, e)))
    except UsageError as exc:
        print(f"vertex-tui: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VertexError as exc:
        print(f"vertex-tui: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except DriverError as exc:
        # What the engine did not turn into a VertexError still gets one line, not a traceback.
        print(f"vertex-tui: database {settings.db_path}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error of ours.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
