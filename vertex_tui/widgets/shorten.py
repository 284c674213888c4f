"""Fitting text into a narrow terminal without losing what matters."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten_middle(text: str, width: int) -> str:
    """`text` in at most `width` columns, cut in the middle: a path keeps its top folders and
    its file name ("/srv/vertex/…/data/vertex.db"), which say which database it is."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return ELLIPSIS
    keep = width - 1
    head = keep // 2
    tail = keep - head
    return text[:head] + ELLIPSIS + text[len(text) - tail:]


def clip(text: str, width: int) -> str:
    """`text` cut at the end to `width` columns, with an ellipsis when it was longer."""
    if len(text) <= width:
        return text
    return text[: max(0, width - 1)] + ELLIPSIS if width > 0 else ""
