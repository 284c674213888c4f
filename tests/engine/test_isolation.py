"""The engine runs without the console: importing and using it never loads Textual or Rich.

Each check runs in a fresh interpreter, since this test process may have imported anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FORBIDDEN_CHECK = """
def forbidden():
    bad = []
    for name in sorted(sys.modules):
        top = name.split(".")[0]
        if top.startswith(("textual", "rich")):
            bad.append(name)
        elif name == "vertex_tui.app" or name.startswith(("vertex_tui.app.", "vertex_tui.screens")):
            bad.append(name)
    return bad
"""


def _run(code: str, cwd: Path) -> dict[str, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", "import sys\n" + FORBIDDEN_CHECK + code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, list[str]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def test_importing_and_using_the_engine_loads_no_console_module(tmp_path: Path) -> None:
    code = f"""
import asyncio, json, importlib, pkgutil
import vertex_tui.engine
from vertex_tui.engine import Engine, FakeClock, Settings
out = {{"import": forbidden()}}

settings = Settings.from_env({{"VERTEX_DB_PATH": {str(tmp_path / "vertex.db")!r}}})
engine = Engine(settings, clock=FakeClock())
out["construct"] = forbidden()

for info in pkgutil.walk_packages(vertex_tui.engine.__path__, "vertex_tui.engine."):
    importlib.import_module(info.name)
out["all_engine_modules"] = forbidden()

async def main():
    async with Engine(settings, clock=FakeClock(), run=[]) as opened:
        await opened.status()
asyncio.run(main())
out["open_and_status"] = forbidden()
out["engine_loaded"] = [m for m in ("vertex_tui.engine.engine", "vertex_tui.engine.store.db")
                        if m in sys.modules]
# Guard against a vacuous pass: the same probe does flag Textual once it is imported.
import textual.app
out["control"] = forbidden()
print(json.dumps(out))
"""
    result = _run(code, tmp_path)
    assert result.pop("engine_loaded") == ["vertex_tui.engine.engine", "vertex_tui.engine.store.db"]
    control = result.pop("control")
    assert "textual" in control and "textual.app" in control
    assert result == {
        "import": [],
        "construct": [],
        "all_engine_modules": [],
        "open_and_status": [],
    }
    assert (tmp_path / "vertex.db").exists()
