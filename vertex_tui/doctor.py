"""`vertex-tui doctor`: report (and, once confirmed, clear) what needs an operator.

Exit status: 0 the database is sound and nothing is left to clear; 1 it is damaged, or
something found was not cleared (no confirmation); 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from vertex_tui.engine import Settings
from vertex_tui.engine.clock import isoformat
from vertex_tui.engine.doctor import Report, examine, repair


def add_parser(sub: Any) -> None:
    doctor = sub.add_parser(
        "doctor", help="integrity check, stale leases, interrupted runs; clears with --yes")
    doctor.add_argument("--yes", action="store_true", help="clear what is found without asking")
    doctor.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, settings: Settings) -> int:
    report = asyncio.run(examine(settings))
    if report.damaged or not report.clearable:
        _show(report, args)
        return 1 if report.damaged else 0
    if not args.yes:
        if args.json or not sys.stdin.isatty():
            _show(report, args, hint="run 'vertex-tui doctor --yes' to clear them")
            return 1
        _show(report, args)
        try:
            answer = input(f"Clear these {report.clearable} item(s)? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing cleared")
            return 1
    cleared = asyncio.run(repair(settings, report))
    if args.json:
        _print_json({**report.to_json(), "cleared": cleared})
    else:
        if args.yes:
            _show(report, args)
        print("cleared: " + ", ".join(f"{n} {what.replace('_', ' ')}"
                                      for what, n in cleared.items()))
    return 0


def _show(report: Report, args: argparse.Namespace, hint: str | None = None) -> None:
    if args.json:
        _print_json({**report.to_json(), **({"hint": hint} if hint else {})})
        return
    if report.server:
        print(f"database {report.server}: reachable (PostgreSQL: no file to check)")
    else:
        print(f"database {report.db_path}: " + ("DAMAGED (PRAGMA quick_check)" if report.damaged
                                               else "integrity ok (quick_check)"))
    for problem in report.problems[:10]:
        print(f"  {problem}")
    if len(report.problems) > 10:
        print(f"  ... and {len(report.problems) - 10} more")
    if report.damaged:
        print(f"what to do: {report.advice()}")
        return
    for lease in report.stale_leases:
        print(f"stale lease {lease.name} held by {lease.owner} (its process is gone, or it "
              f"expired {isoformat(lease.expires_at)})")
    for r in report.interrupted:
        kind = "run" if r.table == "service_runs" else "backup"
        print(f"interrupted {kind} {r.what} #{r.id} by {r.owner}, started "
              f"{isoformat(r.started_at)}, still marked running")
    for path in report.temp_files:
        print(f"leftover temp file of a killed restore: {path}")
    for name in report.scratch_databases:
        print(f"leftover scratch database of a killed restore or drill: {name}")
    if not report.clearable:
        print("no stale leases, no interrupted runs: nothing to clear")
    elif hint:
        print(f"{report.clearable} item(s) to clear: {hint}")


def _print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
