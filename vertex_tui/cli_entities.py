"""`vertex-tui lifecycle|video ...` (summary, check now, add a video) and
`vertex-tui project|portrait add`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from vertex_tui.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    here_or_by_request,
    print_json,
    run_line,
)
from vertex_tui.engine.engine import Engine


def add_parser(sub: Any, parser_class: type[argparse.ArgumentParser],
               positive_int: Callable[[str], int]) -> None:
    from vertex_tui.engine.videos import ROTATIONS

    for service in ("lifecycle", "video"):
        parser = sub.add_parser(service, help=f"the {service} scheduler: summary, check now")
        actions = parser.add_subparsers(dest="action", required=True, parser_class=parser_class)
        summary = actions.add_parser("summary", help="counts, notices, upcoming changes")
        summary.add_argument("--json", action="store_true")
        check = actions.add_parser("check", help="run one pass now")
        check.add_argument("--json", action="store_true")
        if service == "video":
            add = actions.add_parser("add", help="add a video to a portrait; prints its id")
            add.add_argument("--portrait", type=positive_int, required=True)
            add.add_argument("--title", required=True)
            add.add_argument("--start", metavar="ISO8601")
            add.add_argument("--end", metavar="ISO8601")
            add.add_argument("--rotation", choices=ROTATIONS, default="none")
    project = sub.add_parser("project", help="projects").add_subparsers(
        dest="action", required=True, parser_class=parser_class)
    add = project.add_parser("add", help="add a project; prints its id")
    add.add_argument("--name", required=True)
    add.add_argument("--owner", required=True, metavar="EMAIL")
    add.add_argument("--subscription-end", metavar="ISO8601")
    portrait = sub.add_parser("portrait", help="portraits").add_subparsers(
        dest="action", required=True, parser_class=parser_class)
    add = portrait.add_parser("add", help="add a portrait; prints its id")
    add.add_argument("--owner", required=True, metavar="EMAIL")
    add.add_argument("--title", required=True)
    add.add_argument("--project", type=positive_int)
    add.add_argument("--subscription-end", metavar="ISO8601")


def _when(text: str | None) -> float | None:
    from vertex_tui.engine.lifecycle import parse_when

    return None if text is None else parse_when(text)


async def command(args: argparse.Namespace, engine: Engine) -> int:
    if args.command == "project":
        print(await engine.lifecycle.add_project(
            name=args.name, owner=args.owner, subscription_end=_when(args.subscription_end)))
        return EXIT_OK
    if args.command == "portrait":
        print(await engine.lifecycle.add_portrait(
            title=args.title, owner=args.owner, project_id=args.project,
            subscription_end=_when(args.subscription_end)))
        return EXIT_OK
    if args.action == "add":
        print(await engine.video.add_video(portrait_id=args.portrait, title=args.title,
                                           start=_when(args.start), end=_when(args.end),
                                           rotation=args.rotation))
        return EXIT_OK
    service = engine.lifecycle if args.command == "lifecycle" else engine.video
    if args.action == "check":
        result = await here_or_by_request(engine, f"{args.command}.check", {},
                                          service.check)
        if args.json:
            print_json(result)
        else:
            print(run_line(result))
        return EXIT_OK if result["status"] == "ok" else EXIT_FAILED
    doc = await service.summary()
    if args.json:
        print_json(doc)
    elif args.command == "lifecycle":
        _lifecycle_text(doc)
    else:
        _video_text(doc)
    return EXIT_OK


def _lifecycle_text(doc: dict[str, Any]) -> None:
    n = doc["notifications"]
    print(f"active {doc['active']}  expiring {doc['expiring']}  archived {doc['archived']}")
    print(f"notices sent: 7 days {n['7days']}  24 hours {n['24hours']}  expired "
          f"{n['expired']}  (skipped as too old: {doc['notifications_skipped']})")
    print("next expirations:")
    lefts = _spans([u["seconds_left"] for u in doc["upcoming"]])
    for u, left in zip(doc["upcoming"], lefts, strict=True):
        print(f"  {u['subscription_end']}  in {left}  {u['kind']:8} #{u['id']:<6} "
              f"{u['name'][:30]:30} {u['owner']}")


def _spans(seconds: list[float]) -> list[str]:
    """Each duration in two units, padded to the longest (one column: "in 21 hours 26
    minutes" is longer than most)."""
    from vertex_tui.timefmt import span

    texts = [span(s) for s in seconds]
    width = max(map(len, texts), default=0)
    return [f"{text:{width}}" for text in texts]


def _video_text(doc: dict[str, Any]) -> None:
    print("  ".join(f"{k} {doc[k]}" for k in ("scheduled", "active", "inactive", "archived")))
    print("upcoming changes:")
    whens = _spans([c["seconds_from_now"] for c in doc["upcoming"]])
    for c, when in zip(doc["upcoming"], whens, strict=True):
        print(f"  {c['at']}  in {when}  {c['what']:10} video #{c['video']} "
              f"'{c['title']}' of portrait #{c['portrait']}")
    print("current rotation:")
    for r in doc["rotating"]:
        print(f"  portrait #{r['portrait']} '{r['portrait_title']}': video #{r['video']} "
              f"'{r['title']}' ({r['rotation']}, since {r['since']})")
