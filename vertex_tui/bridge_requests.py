"""Asking the engine that runs on a database to perform an action, and waiting for it.

Used by the attached console and by CLI commands whose job's lease a running engine holds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from vertex_tui.engine import Engine

REQUEST_WAIT = 60.0


async def wait_for_request(engine: Engine, action: str, args: dict[str, Any] | None = None,
                           timeout: float = REQUEST_WAIT) -> dict[str, Any]:
    request_id = await engine.submit_request(action, args)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        request = await engine.request(request_id)
        if request is not None and request.finished_at is not None:
            result = request.result if isinstance(request.result, dict) else {}
            return {**result, "status": result.get("status", "ok") if request.outcome == "ok"
                    else result.get("status", "failed"),
                    "via": f"request #{request_id} ({request.picked_by})"}
        await asyncio.sleep(0.25)
    return {"status": "pending", "via": f"request #{request_id}",
            "error": "no engine picked up the request yet; it stays queued for 10 minutes"}
