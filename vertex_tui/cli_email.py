"""`vertex-tui email ...`: the queue's operator commands, one handler per action."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from vertex_tui import cli_history, cli_search
from vertex_tui.cli_common import EXIT_OK, ago, days, field_lines, print_json
from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.email.message import PreparedEmail
from vertex_tui.engine.email.models import STATUSES, EmailJob
from vertex_tui.engine.email.queue import prepare_mapping
from vertex_tui.engine.engine import Engine
from vertex_tui.engine.errors import InvalidMessage, UsageError


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser],
               positive_int: Callable[[str], int]) -> None:
    email = sub.add_parser("email", help="the email queue").add_subparsers(
        dest="action", required=True, parser_class=parser_class
    )
    stats = email.add_parser("stats", help="counts by status, oldest pending, sent last minute")
    stats.add_argument("--json", action="store_true")
    lst = email.add_parser("list", help="jobs, newest first")
    lst.add_argument("--status", choices=STATUSES)
    lst.add_argument("--search", metavar="QUERY", help=cli_search.SEARCH_HELP)
    lst.add_argument("--limit", type=positive_int, default=50)
    lst.add_argument("--before-id", type=positive_int, help="continue below this job id")
    lst.add_argument("--json", action="store_true")
    failed = email.add_parser("failed", help="failed jobs with their last error")
    failed.add_argument("--limit", type=positive_int, default=50)
    failed.add_argument("--json", action="store_true")
    show = email.add_parser("show", help="one job with headers and every attempt")
    show.add_argument("id", type=positive_int)
    show.add_argument("--json", action="store_true")
    retry = email.add_parser("retry", help="failed jobs back to the queue with fresh attempts")
    retry.add_argument("--id", type=positive_int, help="retry this job only")
    retry.add_argument("--max", type=positive_int, help="retry at most N (oldest first)")
    retry.add_argument("--json", action="store_true")
    drain = email.add_parser("drain", help="deliver everything due now, then return")
    drain.add_argument("--timeout", type=float, default=None, help="give up after S seconds")
    drain.add_argument("--json", action="store_true")
    cleanup = email.add_parser("cleanup", help="delete sent and failed jobs older than N days")
    cleanup.add_argument("--older-than", type=days, default=30.0, metavar="DAYS")
    cleanup.add_argument("--json", action="store_true")
    email.add_parser("pause", help="stop delivering (every engine on this database)")
    email.add_parser("resume", help="resume delivering")
    cli_search.add_parser(email, positive_int)
    cli_history.add_parser(email)
    enqueue = email.add_parser("enqueue", help="queue one message or a JSONL file of them")
    enqueue.add_argument("--to")
    enqueue.add_argument("--subject")
    enqueue.add_argument("--body")
    enqueue.add_argument("--html")
    enqueue.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'")
    enqueue.add_argument("--jsonl", type=Path, metavar="FILE")


def services(args: argparse.Namespace) -> list[str]:
    """`drain` delivers: it runs the email service in this process."""
    return ["email"] if args.action == "drain" else []


async def command(args: argparse.Namespace, engine: Engine) -> int:
    return await ACTIONS[args.action](args, engine)


async def _stats(args: argparse.Namespace, engine: Engine) -> int:
    stats = await engine.email.stats()
    if args.json:
        print_json(stats.to_json())
    else:
        now = engine.clock.time()
        print(
            f"pending {stats.pending}  sending {stats.sending}  sent {stats.sent}  "
            f"failed {stats.failed}  cancelled {stats.cancelled}"
            f"{'  (PAUSED)' if stats.paused else ''}"
        )
        print(
            f"oldest pending: {ago(stats.oldest_pending_at, now)}   "
            f"sent in the last minute: {stats.sent_last_minute}"
        )
    return EXIT_OK


async def _list(args: argparse.Namespace, engine: Engine) -> int:
    status = "failed" if args.action == "failed" else args.status
    jobs = await engine.email.list_jobs(
        status=status,
        search=getattr(args, "search", None),
        limit=args.limit,
        before_id=getattr(args, "before_id", None),
    )
    if args.json:
        print_json([j.to_json() for j in jobs])
    else:
        _jobs_table(jobs)
    return EXIT_OK


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


async def _show(args: argparse.Namespace, engine: Engine) -> int:
    detail = await engine.email.get_job(args.id)
    if args.json:
        print_json(detail.to_json())
        return EXIT_OK
    fields = {k: v for k, v in detail.to_json().items() if k != "history"}
    for line in field_lines(fields, 16):
        print(line)
    print("         history:")
    for a in detail.history:
        print(
            f"    round {a.round} attempt {a.attempt}  {isoformat(a.at)}  "
            f"{a.outcome:9} {a.session:10} {a.error or ''}".rstrip()
        )
    return EXIT_OK


async def _retry(args: argparse.Namespace, engine: Engine) -> int:
    ids = await engine.email.retry(job_id=args.id, limit=args.max)
    if args.json:
        print_json({"retried": len(ids), "ids": ids})
    else:
        print(f"retried {len(ids)} failed job(s)")
    return EXIT_OK


async def _cleanup(args: argparse.Namespace, engine: Engine) -> int:
    count = await engine.email.cleanup(args.older_than)
    if args.json:
        print_json({"deleted": count, "older_than_days": args.older_than})
    else:
        print(f"deleted {count} sent/failed job(s) older than {args.older_than:g} days")
    return EXIT_OK


async def _pause_or_resume(args: argparse.Namespace, engine: Engine) -> int:
    pause = args.action == "pause"
    await (engine.email.pause() if pause else engine.email.resume())
    print("delivery paused" if pause else "delivery resumed")
    return EXIT_OK


async def _drain(args: argparse.Namespace, engine: Engine) -> int:
    # This process's engine runs for the drain alone: what its workers sent before the
    # call (they start with the engine) belongs to the drain.
    result = await engine.email.drain(timeout=args.timeout, since_start=True)
    if args.json:
        print_json(result)
    else:
        print(
            f"drained: sent {result['sent']}, failed {result['failed']}, "
            f"retrying later {result['retrying']}"
        )
    return EXIT_OK


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


ACTIONS: dict[str, Callable[[argparse.Namespace, Engine], Awaitable[int]]] = {
    "stats": _stats,
    "list": _list,
    "failed": _list,
    "show": _show,
    "retry": _retry,
    "cleanup": _cleanup,
    "pause": _pause_or_resume,
    "resume": _pause_or_resume,
    "drain": _drain,
    "enqueue": _enqueue,
    "history": cli_history.command,
    "cancel": cli_search.cancel,
}
