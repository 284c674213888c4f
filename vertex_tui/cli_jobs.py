"""`vertex-tui jobs`: every scheduled job of every service, listed and controlled.

    vertex-tui jobs [--json]                    like `systemctl list-timers`
    vertex-tui jobs run JOB [--json]            run now (through the running engine if one is)
    vertex-tui jobs pause JOB | resume JOB      durable; every engine follows within a poll
    vertex-tui jobs history JOB [--limit N] [--json]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from vertex_tui.engine import Engine
from vertex_tui.engine.engine import JOB_RUN
from vertex_tui.engine.rundetail import run_detail
from vertex_tui.engine.store import schedules

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser],
               positive_int: Any) -> None:
    jobs = sub.add_parser("jobs", help="every scheduled job: list, run now, pause, resume, "
                                       "history")
    jobs.add_argument("--json", action="store_true")
    actions = jobs.add_subparsers(dest="action", required=False, parser_class=parser_class)
    run = actions.add_parser("run", help="run a job now (by the running engine, if any)")
    run.add_argument("job", metavar="JOB")
    run.add_argument("--json", action="store_true")
    for name, text in (("pause", "stop running a job on schedule (every engine)"),
                       ("resume", "run a paused job on schedule again")):
        action = actions.add_parser(name, help=text)
        action.add_argument("job", metavar="JOB")
        action.add_argument("--json", action="store_true")
    history = actions.add_parser("history", help="a job's runs, newest first")
    history.add_argument("job", metavar="JOB")
    history.add_argument("--limit", type=positive_int, default=20)
    history.add_argument("--json", action="store_true")


async def command(args: argparse.Namespace, engine: Engine) -> int:
    from vertex_tui.cli_common import print_json as _print_json
    from vertex_tui.cli_common import run_line

    action = args.action
    if action is None:
        jobs = await engine.jobs.snapshot()
        if args.json:
            _print_json(jobs)
        else:
            _timers(jobs, engine)
        return EXIT_OK
    name = args.job
    engine.jobs.get(name)  # an unknown job is bad usage (exit 2), naming the known ones
    if action == "run":
        result = await run_now(engine, name)
        if args.json:
            _print_json(result)
        else:
            print(run_line(result))
        return EXIT_OK if result.get("status") == "ok" else EXIT_FAILED
    if action in ("pause", "resume"):
        changed = await engine.jobs.set_paused(name, action == "pause")
        if args.json:
            _print_json({"job": name, "paused": action == "pause", "changed": changed})
        else:
            done = "paused" if action == "pause" else "resumed"
            print(f"{name} {done}" if changed else f"{name} was already {done}")
        return EXIT_OK
    if action == "history":
        runs = await engine.jobs.history(name, limit=args.limit)
        if args.json:
            _print_json(runs)
        else:
            _history(runs)
        return EXIT_OK
    raise AssertionError(action)


async def run_now(engine: Engine, name: str) -> dict[str, Any]:
    """Run `name` now: by the running engine that schedules it (a request, as an attached
    console does), else in this process; if here a live process holds its lease, ask it."""
    from vertex_tui.bridge_requests import wait_for_request

    now = engine.clock.time()
    theirs = await schedules.published(engine.db, now=now, reader=engine.owner)
    if name in theirs:
        return {"job": name, **await wait_for_request(engine, JOB_RUN, {"job": name})}
    result = await engine.jobs.run(name)
    if result.get("status") == "skipped" and await engine.leases.alive_engines(now):
        return {"job": name, **await wait_for_request(engine, JOB_RUN, {"job": name})}
    return result


def _stamp(iso: str | None, zone: ZoneInfo) -> str:
    if iso is None:
        return "-"
    return datetime.fromisoformat(iso).astimezone(zone).strftime("%a %Y-%m-%d %H:%M:%S %Z")


def _delta(iso: str | None, now: float) -> str:
    import humanize

    if iso is None:
        return "-"
    seconds = datetime.fromisoformat(iso).timestamp() - now
    text = humanize.naturaldelta(abs(seconds))
    return f"{text} left" if seconds >= 0 else f"{text} ago"


def _timers(jobs: list[dict[str, Any]], engine: Engine) -> None:
    zone = ZoneInfo(engine.settings.timezone)
    now = engine.clock.time()
    far = datetime.max.replace(tzinfo=UTC).isoformat()
    jobs = sorted(jobs, key=lambda j: (j["next_run"] is None,
                                       datetime.fromisoformat(j["next_run"] or far), j["job"]))
    rows = []
    for j in jobs:
        left = (_delta(j["next_run"], now) if j["next_run"] else
                "paused" if j["paused"] else "disabled" if not j["enabled"] else "-")
        result = j["last_outcome"] or "-"
        if j["holder"]:
            result += f" (held by {j['holder']})"
        rows.append((_stamp(j["next_run"], zone), left, _stamp(j["last_run"], zone),
                     _delta(j["last_run"], now), j["job"], result))
    head = ("NEXT", "LEFT", "LAST", "PASSED", "JOB", "RESULT")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    for row in [head, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])
    print(f"\n{len(rows)} jobs listed.")


def _history(runs: list[dict[str, Any]]) -> None:
    if not runs:
        print("no runs")
        return
    print(f"{'STARTED':26} {'OUTCOME':8} {'SECONDS':>8}  {'OWNER':28} DETAIL")
    for r in runs:
        secs = "-" if r["duration_s"] is None else f"{r['duration_s']:.2f}"
        detail = run_detail(r["counts"], r["error"])
        print(f"{r['started_at']:26} {r['outcome']:8} {secs:>8}  {r['owner'][:28]:28} "
              f"{detail[:80]}")
