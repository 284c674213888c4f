"""What a job's run did, in one line for `jobs history` and the console's run history: a
pure function, table-tested.

A run's counts are what its job returned (`service_runs.counts`): numbers, flags, texts and
nested groups (the lifecycle check's `changes` by kind and by what changed). The line gives
the run's own figures, zeros too (`database=0 storage=0 full=0`: rotation looked at each kind
and removed nothing), each flag that is set, each text, and of a group only what is not zero,
under its path (`changes.project.expiring=1`): a group of two kinds by three changes is six
zeros on most passes. The run's duration has a column of its own; `--json` keeps the whole
document.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

NOTHING = "nothing to do"


def run_detail(counts: Mapping[str, object] | None, error: str | None = None) -> str:
    """The run's error (its first line), else what its counts say happened (NOTHING when
    they say nothing: no counts, or only unset flags and zero groups)."""
    if error and error.strip():
        return error.strip().splitlines()[0]
    shown = list(_items(counts or {}, ""))
    return " ".join(shown) if shown else NOTHING


def _items(counts: Mapping[str, object], prefix: str) -> Iterator[str]:
    for key, value in counts.items():
        name = f"{prefix}{key}"
        if name == "seconds":
            continue
        if isinstance(value, Mapping):
            yield from _items(value, f"{name}.")
        elif isinstance(value, bool):
            if value:
                yield name
        elif isinstance(value, (int, float)):
            if value or not prefix:
                yield f"{name}={_number(value)}"
        elif isinstance(value, (list, tuple)):
            if value:
                yield f"{name}={','.join(map(str, value))}"
        elif value is not None and value != "":
            yield f"{name}={value}"


def _number(value: float) -> str:
    """12 and 12.0 as "12", 0.25 as "0.25", 1/3 as "0.333": never an exponent."""
    if float(value).is_integer():
        return str(int(value))
    return str(round(value, 3))
