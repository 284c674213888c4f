"""The one search language of the console's `/` and the CLI's `--search` (pure, no I/O).

    mailbox                 free text: recipient, subject, last error or Message-ID contain it
    "mailbox unavailable"   a quoted phrase is one piece of free text
    status:failed           status is one of the listed ones (status:failed,pending)
    to:bob  subject:invoice  error:"5.1.1"   that field contains the text
    id:42                   the job with that number (1 to 2**63 - 1)
    older:2h  newer:15m     created more / less than that long ago (s, m, h, d, w)

Other tables take other terms (`parse(..., keys=...)`): the Log screen `service:email`
(comma-separated names), `level:warning` (that level and worse, as its level filter),
`older:` and `newer:` (`LOG_KEYS`); the Jobs screen `service:` and `paused:yes|no`
(`JOB_KEYS`).

Terms are combined with AND. Matching is case-insensitive. A bad term raises `SearchError`
with one line that names it and says what is expected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from vertex_tui.engine.errors import UsageError
from vertex_tui.engine.eventlog import LEVELS
from vertex_tui.engine.numbers import DB_INT_MAX, whole_number

FIELDS = ("to", "subject", "error")
KEYS = ("status", *FIELDS, "id", "older", "newer")
LOG_KEYS = ("service", "level", "older", "newer")  # the Log screen
JOB_KEYS = ("service", "paused")  # the Jobs screen
_YES_NO = {"yes": True, "no": False}
STATUSES = ("pending", "sending", "sent", "failed", "cancelled")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_KEY = re.compile(r"([A-Za-z]{2,}):")


class SearchError(UsageError):
    """A search the parser cannot read: the message is one line for the operator."""


@dataclass(frozen=True, kw_only=True)
class Query:
    """A parsed search: every part must hold (AND)."""

    text: tuple[str, ...] = ()  # free text: any searchable field contains each piece
    fields: tuple[tuple[str, str], ...] = ()  # ("to" | "subject" | "error", text)
    statuses: frozenset[str] | None = None  # None: any status
    ids: tuple[int, ...] = ()  # every id: term must name the same job
    older: float | None = None  # created at least this many seconds ago
    newer: float | None = None  # created at most this many seconds ago
    services: frozenset[str] | None = None  # None: any service
    level: int | None = None  # log entries of this level (a logging number) and worse
    paused: bool | None = None  # None: paused or not
    source: str = field(default="", compare=False)

    @property
    def empty(self) -> bool:
        return not self.used_keys() and not self.text

    def used_keys(self) -> set[str]:
        keys = {name for name, _ in self.fields}
        if self.statuses is not None:
            keys.add("status")
        if self.ids:
            keys.add("id")
        if self.older is not None:
            keys.add("older")
        if self.newer is not None:
            keys.add("newer")
        for key in ("services", "level", "paused"):
            if getattr(self, key) is not None:
                keys.add(key.removesuffix("s"))
        return keys

    def check_applies(self, keys: Iterable[str], where: str) -> None:
        """Refuse terms a table cannot answer (e.g. `to:` on the backups table)."""
        extra = sorted(self.used_keys() - set(keys))
        if extra:
            raise SearchError(
                f"{extra[0]}: does not apply to {where}"
                f" (use free text{''.join(', ' + k + ':' for k in keys)})"
            )

    def matches(
        self,
        cells: Iterable[str],
        *,
        status: str | None = None,
        named: Mapping[str, str] | None = None,
        row_id: int | None = None,
        age: float | None = None,
    ) -> bool:
        """In-memory match of one row (tables other than email). `cells`: the row's text;
        `named`: text per field key (and `service`, `paused`: "yes" | "no"); `age`: seconds
        since the row's time."""
        haystack = " ".join(cells).casefold()
        if any(piece.casefold() not in haystack for piece in self.text):
            return False
        for name, piece in self.fields:
            if piece.casefold() not in (named or {}).get(name, "").casefold():
                return False
        if self.statuses is not None and (status or "").casefold() not in self.statuses:
            return False
        if self.ids and (row_id is None or any(i != row_id for i in self.ids)):
            return False
        if self.older is not None and (age is None or age < self.older):
            return False
        named = named or {}
        if self.services is not None and named.get("service", "").casefold() not in (
                self.services):
            return False
        if self.paused is not None and named.get("paused") != ("yes" if self.paused else "no"):
            return False
        return not (self.newer is not None and (age is None or age > self.newer))


def parse_duration(text: str, key: str) -> float:
    """`2h`, `15m`, `1d12h`, `90s` -> seconds."""
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise SearchError(f"{key}:{text}: expected a duration such as 90s, 15m, 2h, 3d or 1w")
    return total


def _tokens(source: str) -> list[tuple[str | None, str]]:
    """(key or None, value) for each whitespace-separated term; quotes group words."""
    out: list[tuple[str | None, str]] = []
    pos, n = 0, len(source)
    while pos < n:
        if source[pos].isspace():
            pos += 1
            continue
        key: str | None = None
        m = _KEY.match(source, pos)
        if m is not None:
            key = m.group(1).lower()
            pos = m.end()
        if pos < n and source[pos] == '"':
            end = source.find('"', pos + 1)
            if end < 0:
                raise SearchError(f"unterminated quote in search: {source[pos:][:40]}")
            value = source[pos + 1 : end]
            pos = end + 1
            if pos < n and not source[pos].isspace():
                raise SearchError(f"expected a space after the closing quote: {source[:pos + 1]}")
        else:
            end = pos
            while end < n and not source[end].isspace():
                end += 1
            value = source[pos:end]
            if '"' in value:
                raise SearchError(f"a quote inside a word: {value} (quote the whole phrase)")
            pos = end
        out.append((key, value))
    return out


def _job_number(value: str) -> int:
    """`42` or `#42` -> 42; a number no row can have (0, or past what the store holds:
    2**63 - 1) is refused like any other bad term, not left to overflow the driver."""
    digits = value[1:] if value.startswith("#") else value
    if not (digits.isascii() and digits.isdigit()):
        raise SearchError(f"id:{value}: expected a job number, e.g. id:42")
    try:
        return whole_number(digits)
    except ValueError:
        raise SearchError(f"id:{value}: expected a job number from 1 to {DB_INT_MAX}"
                          ) from None


def _one_of(key: str, value: str, known: Iterable[str] | None, what: str) -> frozenset[str]:
    """The comma-separated words of `value`, each one of `known` (None: any word)."""
    wanted = frozenset(v.strip().lower() for v in value.split(",") if v.strip())
    names = None if known is None else [k.lower() for k in known]
    unknown = sorted(wanted - set(names)) if names is not None else []
    if unknown or not wanted:
        raise SearchError(f"{key}:{value}: unknown {what} {unknown[0] if unknown else ''!r}"
                          f" (one of {', '.join(names or ())})")
    return wanted


def parse(source: str, *, statuses: Sequence[str] | None = STATUSES,
          keys: Sequence[str] = KEYS, services: Iterable[str] | None = None) -> Query:
    """Parse a search; raises `SearchError` (one line) for a bad term. `statuses`: the
    values `status:` accepts (the email queue's by default; None: any word); `keys`: the
    terms the table takes (the email queue's by default; `LOG_KEYS`, `JOB_KEYS`);
    `services`: the names `service:` accepts (None: any word)."""
    known = statuses
    wanted_services: frozenset[str] | None = None
    level: int | None = None
    paused: bool | None = None
    text: list[str] = []
    fields: list[tuple[str, str]] = []
    wanted_statuses: frozenset[str] | None = None
    ids: list[int] = []
    older = newer = None
    for key, value in _tokens(source):
        if key is None:
            if value:
                text.append(value)
            continue
        if key not in keys:
            raise SearchError(
                f"unknown search term {key}: (use {', '.join(k + ':' for k in keys)};"
                f' quote text that contains a colon: "{key}:{value}")'
            )
        if not value:
            raise SearchError(f"{key}: needs a value, e.g. {_EXAMPLES[key]}")
        if key == "status":
            wanted = _one_of(key, value, known, "status")
            wanted_statuses = (
                wanted if wanted_statuses is None else wanted_statuses & wanted
            )
        elif key == "service":
            wanted = _one_of(key, value, services, "service")
            wanted_services = (
                wanted if wanted_services is None else wanted_services & wanted
            )
        elif key == "level":
            if "," in value:
                raise SearchError(f"level:{value}: one level, e.g. level:warning (that level "
                                  "and worse)")
            (name,) = _one_of(key, value, LEVELS, "level")
            level = LEVELS[name] if level is None else max(level, LEVELS[name])
        elif key == "paused":
            if value.lower() not in _YES_NO:
                raise SearchError(f"paused:{value}: expected yes or no")
            if paused is not None and paused != _YES_NO[value.lower()]:
                raise SearchError("paused:yes and paused:no together match nothing")
            paused = _YES_NO[value.lower()]
        elif key == "id":
            ids.append(_job_number(value))
        elif key == "older":
            seconds = parse_duration(value, key)
            older = seconds if older is None else max(older, seconds)
        elif key == "newer":
            seconds = parse_duration(value, key)
            newer = seconds if newer is None else min(newer, seconds)
        else:
            fields.append((key, value))
    return Query(
        text=tuple(text),
        fields=tuple(fields),
        statuses=wanted_statuses,
        ids=tuple(ids),
        older=older,
        newer=newer,
        services=wanted_services,
        level=level,
        paused=paused,
        source=source.strip(),
    )


_EXAMPLES = {
    "status": "status:failed",
    "to": "to:bob@example.com",
    "subject": 'subject:"your invoice"',
    "error": "error:mailbox",
    "id": "id:42",
    "older": "older:2h",
    "newer": "newer:15m",
    "service": "service:email",
    "level": "level:warning",
    "paused": "paused:yes",
}
