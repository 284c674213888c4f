"""An engine killed with SIGKILL is gone from `status` and `jobs` at once.

Its heartbeat and its services' leases are rows that outlive it until they expire (the
heartbeat ~35 s, a singleton pass's lease longer). Read as they were, `status` said "engines
alive: 1" right after a `kill -9`, and lifecycle and video went on naming the dead engine as
their holder, in `status` and in `jobs` ("held by"), long after its heartbeat expired. A
holder of this host whose process is gone, or an engine whose heartbeat expired, holds
nothing an operator should wait for. On both backends (the leases are rows either way).
"""

from __future__ import annotations

import signal
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SINGLETONS = ("lifecycle", "video")


def held_by(doc: dict[str, Any]) -> dict[str, Any]:
    return {name: doc["services"][name]["holder"] for name in SINGLETONS}


def test_a_sigkilled_engine_is_neither_alive_nor_a_holder(ws: Any, backend: str) -> None:
    engine = ws.start_engine(ws.env(), "victim")
    owner = engine.wait_running()

    # While it runs it is alive and holds the singleton services' passes: what is read below.
    def holding() -> dict[str, Any] | None:
        doc: dict[str, Any] = ws.cli_json("status")
        alive = [e["owner"] for e in doc["engines"]]
        return doc if alive == [owner] and set(held_by(doc).values()) == {owner} else None

    ws.wait_for(holding, timeout=60, what="the engine to hold lifecycle and video")
    jobs = {j["job"]: j["holder"] for j in ws.cli_json("jobs")}
    assert jobs["lifecycle.check"] == jobs["video.check"] == owner

    engine.proc.send_signal(signal.SIGKILL)
    engine.proc.wait(10)
    # Its rows are still there and unexpired: the case this is about.
    assert ws.query("SELECT count(*) FROM leases WHERE owner = ?", (owner,))[0][0] >= 3

    doc = ws.cli_json("status")
    assert doc["engines"] == []
    assert held_by(doc) == dict.fromkeys(SINGLETONS)
    assert all(j["holder"] is None for j in ws.cli_json("jobs"))
    text = ws.cli("status")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0] == "engines alive: 0"
