"""Whole numbers an operator types (ids, limits, counts): one parser, one bound (pure).

Both backends keep integers in 64 bits (SQLite INTEGER, PostgreSQL BIGINT): a number above
`DB_INT_MAX` names no row and cannot even be bound as a statement parameter (the driver
raises OverflowError), so it is refused where it is typed, with the other bad numbers.
"""

from __future__ import annotations

import re

DB_INT_MAX = 2**63 - 1  # the largest id or count either backend can store or compare
_WHOLE = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*")  # what int() reads, ASCII digits only


def whole_number(text: str, low: int = 1, high: int = DB_INT_MAX) -> int:
    """`text` as an int in [low, high]; raises ValueError whose message is one line that
    says what was expected and echoes (the start of) `text`."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    stripped = text.strip()
    if _WHOLE.fullmatch(stripped) is None:
        raise ValueError(f"expected a whole number, got {shown!r}")
    negative = stripped.startswith("-")
    digits = stripped.lstrip("+-").replace("_", "").lstrip("0") or "0"
    # More digits than either bound has is out of range: no int() (it stops at 4300 digits).
    too_long = len(digits) > len(str(max(high, abs(low))))
    value = None if too_long else int(digits) * (-1 if negative else 1)
    if (value is None and negative) or (value is not None and value < low):
        raise ValueError(f"expected a number >= {low}, got {shown}")
    if value is None or value > high:
        raise ValueError(f"expected a number <= {high}, got {shown}")
    return value
