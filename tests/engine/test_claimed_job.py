"""A claimed job reads its stored recipients exactly as the JSON parser would."""

from __future__ import annotations

import json

import pytest

from vertex_tui.engine.email.models import _recipients
from vertex_tui.engine.email.queue import _json_strings

LISTS = [
    ["alice@example.com"],
    ["alice@example.com", "bob@example.org"],
    ['"odd name"@example.com'],
    ["jöran@exämple.com"],  # stored as \\u escapes
    ["back\\slash@example.com"],
    ["a@b.c", '"x"@b.c'],
    [""],
    [],
]


@pytest.mark.parametrize("recipients", LISTS)
def test_recipients_read_back_as_stored(recipients: list[str]) -> None:
    stored = _json_strings(recipients)
    assert stored == json.dumps(recipients)
    assert _recipients(stored) == tuple(json.loads(stored)) == tuple(recipients)
