"""Console latency: cold start to the first dashboard frame, and the Email screen at 1M jobs.

    python bench/console_latency.py [--runs 5] [--switches 5] [--jobs 1000000] [--db PATH]
                                    [--skip-cold] [--skip-email] [--only-search] [--json]

cold_start_s: the real console (`.venv/bin/vertex-tui`, hosting an engine, over a database in a
temp folder) in a real terminal: a tmux server of its own, 100x30, stderr not redirected. From
just before `tmux new-session` until `tmux capture-pane` (polled every 20 ms) shows the
dashboard cards: "Email queue" and "Backups" titles plus a state word (IDLE, RUNNING, ...).
Median over `--runs` (goal <= 1.0 s). One unmeasured run first creates the database (reported
as `cold_start_new_db_s`). Baselines in the same rounds, alternating: a minimal Textual app
(one Static "hello") started the same way; `python -c "import textual"` (wall time, and the
import alone as timed in the child), and the import alone of what vertex-tui imports before its
event loop starts (engine, Textual, screens).

email_screen_ms_at_1m: `--jobs` email jobs of mixed statuses (60% sent, 30% pending, ~10%
failed, 0.1% sending). In process with Pilot: `VertexApp(engine, live_refresh=False)` over
`Engine(settings, run=[])`, `run_test(size=(100, 30))`. From the `e` key (posted like a
terminal's) until the first painted frame in which the DataTable's first row and the counts
line (with the pending count) are drawn: a wrap of `App._display`, which receives each
rendered frame, checks `DataTable.render_line(1)` and the counts Static. Per app, the first
switch composes the screen (`email_screen_first_ms_at_1m`, one sample per app, `--runs`
apps); the `--switches` later ones resume it (`email_screen_ms_at_1m`): before each, from the
dashboard, the bench empties the table and the counts line, so only fresh data counts. Goal
<= 150 ms for both. `*_settled_ms`: until a Pilot drain (`pilot.pause(0)`, every pending
message processed) finds the data. Baselines: the engine queries alone (`stats()` +
`list_jobs(limit=50)`), and stock Textual apps (no engine, rows in memory, filled
synchronously on resume) with the same widgets, CSS and bindings, with the stock Footer and
with no Footer; ours and both baselines run interleaved, one app each per round.

search_ms_at_1m: the first page (50 jobs, newest first) of a search over the same database,
through `engine.email.search` (the search language over the FTS5 trigram index): the slowest
median of free text that ~10% of jobs match (`mailbox`), `error:mailbox`, free text that one
job matches (a recipient), and `status:failed mailbox`; each query 7 times, interleaved
(goal <= 100 ms). `search_count_ms_at_1m`: the "N jobs" total the Email screen shows for
`mailbox` (capped at 10,000). Baseline: the same first pages by LIKE scans over the jobs
(what `email list --search` did before), `baseline_like_*_ms`.

history_ms_7d (goal <= 20 ms): `email history --range 7d` on the same database after the
rollup has filled 30 days; see bench/history_latency.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, SENDER, emit, load_1m, message, settings
from history_latency import GOALS as HISTORY_GOALS
from history_latency import history_part

VENV_BIN = Path(sys.executable).parent
GOALS = {
    "cold_start_s": ("<=", 1.0),
    "email_screen_ms_at_1m": ("<=", 150),
    "email_screen_first_ms_at_1m": ("<=", 150),
    "search_ms_at_1m": ("<=", 100),
    **HISTORY_GOALS,
}
POLL_S = 0.02
# What `vertex-tui` imports before its event loop starts (engine, Textual, the screens).
CONSOLE_MODULES = "vertex_tui.cli, vertex_tui.console, vertex_tui.app"
TIMEOUT_S = 60.0

HELLO_APP = """\
from textual.app import App
from textual.widgets import Static


class Hello(App):
    def compose(self):
        yield Static("hello")


Hello().run()
"""

# ---- cold start in a real terminal ---------------------------------------------------------


class Tmux:
    """One tmux server of our own (its own socket), one session, one pane."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.socket = f"vtbench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.conf = tmp / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\nset -g status off\n")
        self.env = env

    def tmux(self, *args: str, check: bool = True) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.conf), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"tmux {args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout

    def start(self, command: str) -> None:
        extra = [
            a
            for k in ("VERTEX_DB_PATH", "VERTEX_STORAGE_DIR", "VERTEX_BACKUP_DIR")
            if k in self.env
            for a in ("-e", f"{k}={self.env[k]}")
        ]
        self.tmux("new-session", "-d", "-x", "100", "-y", "30", *extra, command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def dead(self) -> bool:
        return self.tmux("display-message", "-p", "#{pane_dead}", check=False).strip() == "1"

    def stop(self, quit_key: str | None = "q") -> None:
        try:
            if quit_key and not self.dead():
                self.tmux("send-keys", quit_key, check=False)
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline and not self.dead():
                    time.sleep(0.05)
        finally:
            self.tmux("kill-server", check=False)


def dashboard_ready(text: str) -> bool:
    return (
        "Email queue" in text
        and "Backups" in text
        and any(w in text for w in ("IDLE", "RUNNING", "STOPPED", "PAUSED", "STANDBY"))
    )


def first_frame_s(tmp: Path, env: dict[str, str], command: str, ready: Any) -> float:
    """Seconds from `tmux new-session` until `ready(capture)` holds."""
    tmux = Tmux(tmp, env)
    t0 = time.perf_counter()
    try:
        tmux.start(command)
        while True:
            text = tmux.screen()
            if ready(text):
                return time.perf_counter() - t0
            if time.perf_counter() - t0 > TIMEOUT_S or tmux.dead():
                raise RuntimeError(f"no first frame from {command!r}; the pane shows:\n{text}")
            time.sleep(POLL_S)
    finally:
        tmux.stop()


def import_s(modules: str) -> tuple[float, float]:
    """A fresh `python -c "import <modules>"`: (wall seconds, interpreter start and exit
    included; seconds of the import statement alone, as the child measured it)."""
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True
    ).stdout
    return time.perf_counter() - t0, float(out)


def cold_start(runs: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vertex-cold-"))
    try:
        env = dict(os.environ)
        env.update(
            VERTEX_DB_PATH=str(tmp / "vertex.db"),
            VERTEX_STORAGE_DIR=str(tmp / "storage"),
            VERTEX_BACKUP_DIR=str(tmp / "backups"),
            SMTP_HOST="127.0.0.1",
            SMTP_PORT="9",
            SMTP_STARTTLS="false",
            EMAIL_FROM=SENDER,
        )
        hello = tmp / "hello_app.py"
        hello.write_text(HELLO_APP)
        vertex = f"{VENV_BIN / 'vertex-tui'}"
        hello_cmd = f"{sys.executable} {hello}"
        # Not measured: creates the database (migrations) and warms the page cache.
        new_db = first_frame_s(tmp, env, vertex, dashboard_ready)
        first_frame_s(tmp, env, hello_cmd, lambda t: "hello" in t)
        ours, hellos, ratios = [], [], []
        imports: list[tuple[float, float]] = []
        console_imports: list[tuple[float, float]] = []
        for i in range(runs):
            pair = [("ours", vertex, dashboard_ready), ("hello", hello_cmd, lambda t: "hello" in t)]
            if i % 2:
                pair.reverse()
            got = {name: first_frame_s(tmp, env, cmd, ready) for name, cmd, ready in pair}
            ours.append(got["ours"])
            hellos.append(got["hello"])
            ratios.append(got["ours"] / got["hello"])
            imports.append(import_s("textual"))
            console_imports.append(import_s(CONSOLE_MODULES))
        return {
            "cold_start_s": round(statistics.median(ours), 3),
            "baseline_textual_hello_s": round(statistics.median(hellos), 3),
            "ratio_cold_start_vs_hello": round(statistics.median(ratios), 3),
            "import_textual_s": round(statistics.median(w for w, _ in imports), 3),
            "import_textual_in_process_s": round(statistics.median(i for _, i in imports), 3),
            "import_console_in_process_s": round(
                statistics.median(i for _, i in console_imports), 3
            ),
            "cold_start_new_db_s": round(new_db, 3),
            "cold_start_runs_s": [round(t, 3) for t in ours],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- a database of 1M mixed jobs ----------------------------------------------------------

CHUNK = 100_000
INSERT = (
    "INSERT INTO email_jobs (message_id, sender, recipients, to_header, subject, body, headers,"
    " status, attempts, max_attempts, created_at, updated_at, next_attempt_at, lease_owner,"
    " lease_expires_at, finished_at, last_error, last_code)"
    " VALUES (?, ?, ?, ?, ?, ?, '{}', ?, ?, 5, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def status_of(i: int) -> str:
    """60% sent, 30% pending, ~10% failed, 0.1% sending; interleaved by id."""
    if i % 1000 == 999:
        return "sending"
    r = i % 100
    return "sent" if r < 60 else "pending" if r < 90 else "failed"


def expected_counts(jobs: int) -> dict[str, int]:
    counts = {"pending": 0, "sending": 0, "sent": 0, "failed": 0, "cancelled": 0}
    for i in range(jobs):
        counts[status_of(i)] += 1
    return counts


def db_counts(path: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(path) as conn:
            return {s: int(n) for s, n in conn.execute("SELECT status, n FROM email_status_counts")}
    except sqlite3.Error:
        return {}


def build(path: Path, jobs: int) -> float:
    """Schema by `Database.open`; rows in 100k-row transactions (status triggers kept)."""
    from vertex_tui.engine.store.db import Database

    async def migrate() -> None:
        db = await Database.open(path)
        await db.close()

    t0 = time.perf_counter()
    asyncio.run(migrate())
    prefix = f"<{uuid.uuid4().hex}."
    now = time.time()
    span = 30 * 86_400  # created over the last 30 days, oldest first
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=NORMAL")
    try:
        for start in range(0, jobs, CHUNK):
            rows = []
            for i in range(start, min(jobs, start + CHUNK)):
                m = message(i)
                status = status_of(i)
                created = now - span * (jobs - i) / jobs
                done = created + 5 if status in ("sent", "failed") else None
                rows.append(
                    (
                        f"{prefix}{i}@example.com>",
                        SENDER,
                        json.dumps([m["to"]]),
                        m["to"],
                        m["subject"],
                        m["body"],
                        status,
                        {"pending": 0, "sending": 1, "sent": 1, "failed": 5}[status],
                        created,
                        done or created,
                        created,
                        "bench-owner" if status == "sending" else None,
                        now + 86_400 if status == "sending" else None,
                        done,
                        "550 mailbox unavailable" if status == "failed" else None,
                        550 if status == "failed" else None,
                    )
                )
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT, rows)
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return time.perf_counter() - t0


# ---- the Email screen with Pilot ----------------------------------------------------------


class PaintWatch:
    """Records when the app first paints a frame for which `check(screen)` holds.

    Wraps `App._display`, which receives each rendered update (the headless driver then
    drops it); `check` runs right after the frame was rendered, so the time is the paint's.
    """

    def __init__(self, app: Any) -> None:
        self.check: Any = None
        self.at: float | None = None
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if renderable is not None and self.check is not None and self.at is None:
                now = time.perf_counter()
                if self.check(screen):
                    self.at = now

        app._display = display


def table_painted(screen: Any, table_id: str, counts_id: str, pending: str) -> bool:
    """The table's first data row (line 1, below the header) and the counts are drawn."""
    from textual.widgets import DataTable, Static

    try:
        table = screen.query_one(table_id, DataTable)
        counts = screen.query_one(counts_id, Static)
        if table.row_count == 0 or pending not in str(counts.content) or not counts.size.height:
            return False
        return str(table.get_row_at(0)[0]) in table.render_line(1).text
    except Exception:  # not composed yet, or dimensions not updated: not drawn
        return False


async def _until(pilot: Any, check: Any, what: str) -> None:
    deadline = time.perf_counter() + TIMEOUT_S
    while not check():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await pilot.pause(0)


async def _quiet(pilot: Any, app: Any) -> None:
    """Wait until no worker of the app is pending or running, then a short settle."""
    from textual.worker import WorkerState

    await _until(
        pilot,
        lambda: (
            not [w for w in app.workers if w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        ),
        "workers to finish",
    )
    await asyncio.sleep(0.05)


def new_times() -> dict[str, list[float]]:
    return {"first": [], "first_settled": [], "resume": [], "resume_settled": []}


async def switch_times(
    variants: dict[str, tuple[Any, type, type]],
    painted: Any,
    clear: Any,
    rounds: int,
    switches: int,
) -> dict[str, dict[str, list[float]]]:
    """Each round runs one app of every variant (name -> (make_app, target screen class,
    home screen class)), in a rotating order so that load changes hit them alike.

    Per app: press `e` once (the screen is composed), then `switches` times more (resumed;
    `clear(screen)` empties it first, from the home screen, so only new data counts).
    Each time: ms until the first painted frame with the data (`painted`), and ms until a
    Pilot drain (every pending message processed) finds it (`settled`)."""
    out = {name: new_times() for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            make_app, target, home = variants[name]
            await _one_app(make_app(), target, home, painted, clear, switches, out[name])
    return out


async def _one_app(
    app: Any,
    target: type,
    home: type,
    painted: Any,
    clear: Any,
    switches: int,
    out: dict[str, list[float]],
) -> None:
    def at_home() -> bool:
        return isinstance(app.screen, home)

    def done() -> bool:
        return isinstance(app.screen, target) and bool(painted(app.screen))

    async with app.run_test(size=(100, 30)) as pilot:
        watch = PaintWatch(app)
        await _until(pilot, at_home, "the home screen")
        await _quiet(pilot, app)
        screen = None
        for n in range(switches + 1):
            if screen is not None:
                clear(screen)
                await pilot.pause(0)
            watch.at, watch.check = None, (lambda s: isinstance(s, target) and painted(s))
            t0 = time.perf_counter()
            app.simulate_key("e")
            while watch.at is None:
                if time.perf_counter() > t0 + TIMEOUT_S:
                    raise RuntimeError("timed out waiting for the screen's data to be drawn")
                await asyncio.sleep(0.001)
            first_paint = (watch.at - t0) * 1000
            watch.check = None
            await _until(pilot, done, "the screen's data")
            settled = (time.perf_counter() - t0) * 1000
            out["resume" if n else "first"].append(first_paint)
            out["resume_settled" if n else "first_settled"].append(settled)
            screen = app.screen
            await _quiet(pilot, app)
            await pilot.press("d")
            await _until(pilot, at_home, "the home screen")
            await _quiet(pilot, app)


def baseline_app(rows: Sequence[tuple[str, ...]], counts: str, footer: bool = True) -> Any:
    """Stock Textual, no engine: the Email screen's widgets (same CSS, ids, bindings, stock
    Footer, or no Footer at all) filled from rows in memory, synchronously, on each resume."""
    from textual.app import App
    from textual.binding import Binding
    from textual.screen import Screen
    from textual.widgets import DataTable, Footer, Header, Input, Static

    from vertex_tui.app import VertexApp
    from vertex_tui.screens.email_queue import EmailQueueScreen

    class Home(Screen[None]):
        def compose(self) -> Any:
            yield Header()
            yield Static("home")
            yield Footer()

    class Table(Screen[None]):
        BINDINGS = EmailQueueScreen.BINDINGS

        def compose(self) -> Any:
            yield Header()
            yield Static("", id="email-counts")
            yield Input(id="email-search")
            table: DataTable[str] = DataTable(
                id="email-jobs", cursor_type="row", zebra_stripes=True
            )
            table.add_columns("ID", "Status", "Tries", "To", "Subject", "Updated", "Last error")
            yield table
            yield Static("", id="email-page")
            if footer:
                yield Footer()

        def on_mount(self) -> None:
            self.query_one(DataTable).focus()

        def on_screen_resume(self) -> None:
            self.query_one("#email-counts", Static).update(counts)
            table = self.query_one(DataTable)
            table.clear()
            for row in rows:
                table.add_row(*row, key=row[0])
            self.query_one("#email-page", Static).update(f"page 1 · {len(rows)} shown")

    class Baseline(App[None]):
        CSS_PATH = VertexApp.CSS_PATH
        MODES = {"home": Home, "table": Table}  # noqa: RUF012
        DEFAULT_MODE = "home"
        BINDINGS = [  # noqa: RUF012
            # The console's other keys (so the stock footer is as long); d and e are these.
            *(b for b in VertexApp.BINDINGS if b.key not in ("d", "e")),
            Binding("d", "switch_mode('home')", "Home"),
            Binding("e", "switch_mode('table')", "Table"),
        ]

    return Baseline


def clear_email(screen: Any) -> None:
    from textual.widgets import DataTable, Static

    screen.query_one("#email-jobs", DataTable).clear()
    screen.query_one("#email-counts", Static).update("")


async def email_screen(path: Path, apps: int, switches: int) -> dict[str, Any]:
    from vertex_tui.app import VertexApp
    from vertex_tui.engine import Engine
    from vertex_tui.screens.dashboard import DashboardScreen
    from vertex_tui.screens.email_queue import PAGE, EmailQueueScreen
    from vertex_tui.timefmt import clock_time

    queries: list[float] = []
    async with Engine(settings(path), run=[]) as engine:
        stats = await engine.email.stats()  # warm the page cache like an open console
        pending = f"pending {stats.pending:,} "

        async def query_once() -> float:
            t0 = time.perf_counter()
            await engine.email.stats()
            await engine.email.list_jobs(limit=PAGE)
            return (time.perf_counter() - t0) * 1000

        for _ in range(7):
            queries.append(await query_once())
        jobs = await engine.email.list_jobs(limit=PAGE)
        rows = [
            (
                str(j.id),
                j.status,
                str(j.attempts),
                j.to[:32],
                j.subject[:40],
                clock_time(j.updated_at),
                (j.last_error or "")[:60],
            )
            for j in jobs
        ]
        counts = f"{pending}  sending {stats.sending}  sent {stats.sent}"
        stock = baseline_app(rows, counts, footer=True)
        bare = baseline_app(rows, counts, footer=False)
        times = await switch_times(
            {
                "ours": (
                    lambda: VertexApp(engine, live_refresh=False),
                    EmailQueueScreen,
                    DashboardScreen,
                ),
                "stock": (stock, stock.MODES["table"], stock.MODES["home"]),
                "no_footer": (bare, bare.MODES["table"], bare.MODES["home"]),
            },
            lambda s: table_painted(s, "#email-jobs", "#email-counts", pending),
            clear_email,
            apps,
            switches,
        )
        ours = times.pop("ours")
        base = times
    med = statistics.median
    return {
        "email_screen_ms_at_1m": round(med(ours["resume"]), 1),
        "email_screen_first_ms_at_1m": round(med(ours["first"]), 1),
        "email_screen_settled_ms": round(med(ours["resume_settled"]), 1),
        "email_screen_first_settled_ms": round(med(ours["first_settled"]), 1),
        "email_queries_ms_at_1m": round(med(queries), 2),
        "baseline_textual_table_switch_ms": round(med(base["stock"]["resume"]), 1),
        "baseline_textual_table_first_ms": round(med(base["stock"]["first"]), 1),
        "baseline_textual_table_no_footer_switch_ms": round(med(base["no_footer"]["resume"]), 1),
        "baseline_textual_table_no_footer_first_ms": round(med(base["no_footer"]["first"]), 1),
        "ratio_email_screen_vs_textual": round(
            med(ours["resume"]) / med(base["stock"]["resume"]), 2
        ),
        "ratio_email_screen_vs_textual_no_footer": round(
            med(ours["resume"]) / med(base["no_footer"]["resume"]), 2
        ),
        "ratio_email_first_vs_textual": round(med(ours["first"]) / med(base["stock"]["first"]), 2),
        "email_screen_first_runs_ms": [round(t) for t in ours["first"]],
        "email_screen_resume_runs_ms": [round(t) for t in ours["resume"]],
        "jobs": sum(db_counts(path).values()),
        "jobs_by_status": db_counts(path),
    }


SEARCHES = {
    "free_common": "mailbox",
    "error_term": "error:mailbox",
    "free_rare": "user123457@",
    "status_and_text": "status:failed mailbox",
}
LIKE_PAGE = (
    "SELECT id FROM email_jobs WHERE (to_header LIKE ?1 OR subject LIKE ?1 OR last_error LIKE ?1"
    " OR message_id LIKE ?1) ORDER BY id DESC LIMIT 50"
)


async def search_times(path: Path, rounds: int = 7) -> dict[str, Any]:
    from vertex_tui.engine import Engine

    ours: dict[str, list[float]] = {name: [] for name in SEARCHES}
    like: dict[str, list[float]] = {name: [] for name in ("free_common", "free_rare")}
    counts: list[float] = []
    found: dict[str, int] = {}
    async with Engine(settings(path), run=[]) as engine:
        await engine.email.stats()
        conn = sqlite3.connect(path)
        try:
            for _ in range(rounds):
                for name, text in SEARCHES.items():
                    t0 = time.perf_counter()
                    page = await engine.email.search(text, limit=50)
                    ours[name].append((time.perf_counter() - t0) * 1000)
                    found[name] = len(page)
                t0 = time.perf_counter()
                await engine.email.count_matching("mailbox", cap=10_000)
                counts.append((time.perf_counter() - t0) * 1000)
                for name in like:
                    pattern = "%" + SEARCHES[name] + "%"
                    t0 = time.perf_counter()
                    conn.execute(LIKE_PAGE, (pattern,)).fetchall()
                    like[name].append((time.perf_counter() - t0) * 1000)
        finally:
            conn.close()
    med = statistics.median
    doc: dict[str, Any] = {
        "search_ms_at_1m": round(max(med(v) for v in ours.values()), 1),
        "search_count_ms_at_1m": round(med(counts), 1),
        **{f"search_{name}_ms": round(med(v), 1) for name, v in ours.items()},
        **{f"baseline_like_{name}_ms": round(med(v), 1) for name, v in like.items()},
        "search_rows_found": found,
    }
    return doc


def email_part(jobs: int, db: Path | None, apps: int, switches: int,
               screen: bool = True) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="vertex-console-"))
    try:
        path = db or tmp / "console.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        built = None
        if db_counts(path) != expected_counts(jobs):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            print(f"building {path} with {jobs:,} email jobs", file=sys.stderr)
            built = round(build(path, jobs), 1)
        doc = asyncio.run(email_screen(path, apps, switches)) if screen else {}
        doc.update(asyncio.run(search_times(path)))
        if screen:
            doc.update(history_part(path))  # history_ms_7d (bench/history_latency.py)
        doc["build_s"] = built
        return doc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="cold starts, and apps for the first switch")
    p.add_argument("--switches", type=int, default=5, help="resumed switches per app")
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--db", type=Path, help="reuse (or build and keep) this database")
    p.add_argument("--skip-cold", action="store_true")
    p.add_argument("--skip-email", action="store_true", help="no Email screen, no search")
    p.add_argument("--only-search", action="store_true", help="of the 1M-job part: search")
    p.add_argument("--json", action="store_true", help="one JSON line")
    args = p.parse_args()
    os.chdir(ROOT)
    doc: dict[str, Any] = {}
    if not args.skip_cold:
        doc.update(cold_start(args.runs))
    if not args.skip_email:
        doc.update(email_part(args.jobs, args.db, args.runs, args.switches,
                              screen=not args.only_search))
    doc["load_1m"] = load_1m()
    if args.json:
        emit(doc, True, GOALS)
    else:
        emit({k: v for k, v in doc.items() if not isinstance(v, (dict, list))}, False, GOALS)
        for k, v in doc.items():
            if isinstance(v, (dict, list)):
                print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
