"""`vertex-tui email cancel`: pending or failed jobs become cancelled (kept, never sent).

    vertex-tui email cancel --id ID [--yes] [--json]
    vertex-tui email cancel --search QUERY [--yes] [--json]

`--search` takes the search language of `email list --search` and the console's `/`
(`vertex_tui/engine/search.py`). The jobs are chosen once, their count named in the question
(or printed with --yes), and exactly those are cancelled if they are still pending or failed.
At most BULK_CAP (100,000), the newest, at a time: past that, the question names how many
match in all and the answer how many are left for another run (`remaining` in --json).
Without --yes on a terminal it asks; without a terminal it refuses (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vertex_tui.engine import Engine
from vertex_tui.engine.email.bulk import BULK_CAP, CANCELLABLE
from vertex_tui.engine.errors import UsageError

EXIT_OK = 0
SEARCH_HELP = (
    "search: free text (recipient, subject, last error, Message-ID), status:, to:, subject:,"
    " error:, id:, older:2h, newer:15m, \"quoted phrases\"; terms are ANDed"
)


def add_parser(email: Any, positive_int: Any) -> None:
    cancel = email.add_parser("cancel", help="pending or failed jobs become cancelled (kept)")
    which = cancel.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", type=positive_int, help="cancel this job")
    which.add_argument("--search", metavar="QUERY", help=SEARCH_HELP)
    cancel.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    cancel.add_argument("--json", action="store_true")


def _confirm(question: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question}: confirm with --yes (stdin is not a terminal)")
    return input(f"{question}? [y/N] ").strip().lower() in ("y", "yes")


async def cancel(args: argparse.Namespace, engine: Engine) -> int:
    from vertex_tui.cli import _print_json

    q = engine.email
    remaining = 0
    if args.id is not None:
        if not _confirm(f"cancel email job {args.id}", args.yes):
            print("nothing cancelled")
            return EXIT_OK
        ids = await q.cancel(job_id=args.id)
    else:
        chosen = await q.matching_ids(args.search, eligible=CANCELLABLE)
        capped = len(chosen) >= BULK_CAP
        total = await q.count_eligible(args.search, eligible=CANCELLABLE) if capped else 0
        what = f"{len(chosen):,} pending or failed job(s) matching {args.search!r}"
        if capped and total > len(chosen):
            what = (f"the newest {len(chosen):,} of {total:,} pending or failed jobs matching"
                    f" {args.search!r} (at most {BULK_CAP:,} at a time)")
        if not chosen:
            ids = []
        elif not _confirm(f"cancel {what}", args.yes):
            print("nothing cancelled")
            return EXIT_OK
        else:
            ids = await q.cancel(ids=chosen, search=args.search)
        remaining = await q.count_eligible(args.search, eligible=CANCELLABLE) if capped else 0
    doc: dict[str, Any] = {"cancelled": len(ids), "ids": ids}
    if remaining:
        doc["remaining"] = remaining
    if args.json:
        _print_json(doc)
    else:
        print(f"cancelled {len(ids):,} job(s)" + (
            f"; {remaining:,} more match: run it again for the rest" if remaining else ""))
    return EXIT_OK
