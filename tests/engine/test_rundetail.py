"""`run_detail`: what `jobs history` and the console's run history say a run did."""

from __future__ import annotations

from typing import Any

import pytest

from vertex_tui.engine.rundetail import NOTHING, run_detail

LIFECYCLE = {"full": False, "changes": {"project": {"recomputed": 1, "archived": 0,
                                                    "expiring": 2},
                                        "portrait": {"recomputed": 0, "archived": 0,
                                                     "expiring": 0}},
             "sent": {}, "skipped": 0, "emails": 3, "seconds": 0.003}


@pytest.mark.parametrize(("counts", "error", "expected"), [
    (None, None, NOTHING),
    ({}, None, NOTHING),
    ({"seconds": 1.5}, None, NOTHING),
    ({"full": False, "digest_mailed": False, "sent": {}, "changes": {"project": {"a": 0}}},
     None, NOTHING),
    # the run's own figures, zeros too: it looked at each and found nothing
    ({"full": False, "activated": 0, "deactivated": 0, "digest_mailed": False}, None,
     "activated=0 deactivated=0"),
    ({"database": 0, "storage": 0, "full": 0}, None, "database=0 storage=0 full=0"),
    # of a group, only what is not zero
    (LIFECYCLE, None,
     "changes.project.recomputed=1 changes.project.expiring=2 skipped=0 emails=3"),
    ({**LIFECYCLE, "full": True}, None,
     "full changes.project.recomputed=1 changes.project.expiring=2 skipped=0 emails=3"),
    ({"sent": {"expiring_7d": 4, "expired": 0}}, None, "sent.expiring_7d=4"),
    ({"activated": 2, "rotated": 1, "digest_mailed": True}, None,
     "activated=2 rotated=1 digest_mailed"),
    ({"minutes": 1, "hours": 0}, None, "minutes=1 hours=0"),
    ({"took": 2.0, "share": 1 / 3}, None, "took=2 share=0.333"),
    ({"size_bytes": 1_048_576, "ratio": 0.25}, None, "size_bytes=1048576 ratio=0.25"),
    ({"path": "/var/backups/db-1.sqlite", "kind": ""}, None, "path=/var/backups/db-1.sqlite"),
    ({"removed": ["a.db", "b.db"], "kept": []}, None, "removed=a.db,b.db"),
    ({"reaped": 0, "note": None}, None, "reaped=0"),
    ({"note": None, "kind": ""}, None, NOTHING),
    # an error wins, and only its first line fits a row
    ({"reaped": 3}, "database is locked", "database is locked"),
    ({}, "backup failed: disk full\nTraceback...", "backup failed: disk full"),
    ({"reaped": 3}, "", "reaped=3"),
    ({"reaped": 3}, "  \n", "reaped=3"),
])
def test_run_detail(counts: dict[str, Any] | None, error: str | None, expected: str) -> None:
    assert run_detail(counts, error) == expected
