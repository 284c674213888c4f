"""Email history latency: `email history --range 7d` (the dashboard's 7d sparklines) over a
database with a full 30 days of rollup. Run by `console_latency.py` on its 1M-job database
(jobs created over the last 30 days); standalone:

    python bench/history_latency.py --db PATH [--runs 20] [--json]

history_rollup_s: the `email.rollup` run that fills the rollup at the start (the first one
on a database computes 30 days of hours and 48 hours of minutes from the jobs; on a reused
database only what is new). history_ms_7d: median of `--runs` calls of
`engine.email.history("7d")` (168 hourly buckets: 167 read from the rollup, the current hour
computed from the jobs), goal <= 20 ms; also 24h and 1h. Baseline, run interleaved: the same
7 days computed from the jobs alone, as with no rollup (`history_ms_7d_no_rollup`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit, load_1m

GOALS = {"history_ms_7d": ("<=", 20)}


async def _measure(path: Path, runs: int) -> dict[str, Any]:
    from vertex_tui.engine.email import history as policy
    from vertex_tui.engine.email.rollup import roll_up
    from vertex_tui.engine.engine import Engine
    from vertex_tui.engine.settings import Settings
    from vertex_tui.engine.store import history as store

    settings = Settings(db_path=path)
    async with Engine(settings, run=[]) as engine:
        db, now = engine.db, time.time()
        t0 = time.perf_counter()
        await roll_up(db, now)
        rollup_s = time.perf_counter() - t0
        rows = {g: len(await store.read(db, g, 0, now + 1)) for g in (policy.MINUTE, policy.HOUR)}
        times: dict[str, list[float]] = {"7d": [], "24h": [], "1h": [], "none": []}
        starts = policy.bucket_starts(now, policy.HOUR, 168)
        for _ in range(runs):
            for name in ("7d", "24h", "1h"):
                t0 = time.perf_counter()
                buckets = await engine.email.history(name)
                times[name].append((time.perf_counter() - t0) * 1000)
                assert len(buckets) == policy.RANGES[name][1]
            t0 = time.perf_counter()
            await store.compute(db, policy.HOUR, starts[0], starts[-1] + policy.HOUR)
            times["none"].append((time.perf_counter() - t0) * 1000)
        week = await engine.email.history("7d")

    def med(name: str) -> float:
        return round(statistics.median(times[name]), 2)

    return {
        "history_ms_7d": med("7d"),
        "history_ms_24h": med("24h"),
        "history_ms_1h": med("1h"),
        "history_ms_7d_no_rollup": med("none"),
        "history_rollup_ratio": round(med("none") / max(med("7d"), 1e-6), 1),
        "history_rollup_s": round(rollup_s, 2),
        "history_rows_minutes": rows[policy.MINUTE],
        "history_rows_hours": rows[policy.HOUR],
        "history_sent_7d": sum(b.sent for b in week),
        "history_sent_current_hour": week[-1].sent,
    }


def history_part(path: Path, runs: int = 20) -> dict[str, Any]:
    return asyncio.run(_measure(path, runs))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", type=Path, required=True, help="a database (console_latency's)")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    doc = history_part(args.db, args.runs)
    doc["load_1m"] = load_1m()
    emit(doc, args.json, GOALS)


if __name__ == "__main__":
    main()
