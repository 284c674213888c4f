"""The one parser of typed ids, limits and counts: a pure function, table tests."""

from __future__ import annotations

import pytest

from vertex_tui.engine.numbers import DB_INT_MAX, whole_number

GOOD = [
    ("1", 1),
    ("42", 42),
    (" 42 ", 42),
    ("+7", 7),
    ("0042", 42),
    ("1_000", 1000),
    ("9223372036854775807", DB_INT_MAX),
    ("0" * 5000 + "5", 5),  # leading zeros are not digits that count
]


@pytest.mark.parametrize(("text", "expected"), GOOD, ids=[t[:20] for t, _ in GOOD])
def test_whole_number(text: str, expected: int) -> None:
    assert whole_number(text) == expected


BAD = [
    ("", "expected a whole number, got ''"),
    ("abc", "expected a whole number, got 'abc'"),
    ("1.5", "expected a whole number"),
    ("1e3", "expected a whole number"),
    ("\u00b2", "expected a whole number"),  # str.isdigit() says yes, int() says no
    ("\u0664\u0662", "expected a whole number"),  # Arabic-Indic 42: ASCII digits only
    ("_1", "expected a whole number"),
    ("0", "expected a number >= 1, got 0"),
    ("-1", "expected a number >= 1, got -1"),
    ("-0", "expected a number >= 1, got -0"),
    ("-" + "9" * 30, "expected a number >= 1"),
    ("9223372036854775808", "expected a number <= 9223372036854775807, got 9223372036854775808"),
    ("18446744073709551616", "expected a number <= 9223372036854775807"),
    ("9" * 5000, "expected a number <= 9223372036854775807, got 999"),  # past int()'s limit
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[t[:20] or "<empty>" for t, _ in BAD])
def test_bad_numbers_are_one_short_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^expected") as caught:
        whole_number(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 100


@pytest.mark.parametrize(("text", "low", "high", "expected"), [
    ("0", 0, 10, 0), ("10", 0, 10, 10), ("11", 0, 10, None), ("-1", 0, 10, None)])
def test_bounds(text: str, low: int, high: int, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(ValueError):
            whole_number(text, low, high)
    else:
        assert whole_number(text, low, high) == expected


def test_the_bound_is_what_both_backends_store() -> None:
    assert DB_INT_MAX == 2**63 - 1  # SQLite INTEGER and PostgreSQL BIGINT alike
