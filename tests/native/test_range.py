"""HTTP Range parsing (vedina._native.parse_range), RFC 9110 §14."""

import pytest

from vedina._native import RangeNotSatisfiable, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-499", 1000, [(0, 500)]),
        ("bytes=500-", 1000, [(500, 1000)]),
        ("bytes=-500", 1000, [(500, 1000)]),
        ("bytes=900-5000", 1000, [(900, 1000)]),  # last-pos clamped
        ("bytes=-5000", 1000, [(0, 1000)]),  # suffix longer than the file
        ("BYTES=0-1", 10, [(0, 2)]),
        ("bytes=4-5 ,\t0-1", 10, [(0, 2), (4, 6)]),  # OWS, sorted
        ("bytes=,0-1,,2-3,", 10, [(0, 4)]),  # empty elements, adjacent merged
        ("bytes=0-99,50-149, -10", 1000, [(0, 150), (990, 1000)]),
        ("bytes=0-1,2000-", 1000, [(0, 2)]),  # unsatisfiable spec dropped
        ("bytes=0-", 2**64 - 1, [(0, 2**64 - 1)]),
    ],
)
def test_satisfiable(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=,",
        "bytes=-",
        "bytes=5-4",
        "bytes=a-b",
        "bytes = 0-1",
        "bytes=0 -1",
        "items=0-1",
        "bytes=0-,0-",  # ranges add up to more than the file (nginx rule)
        "bytes=0-599,400-999",
    ],
)
def test_ignored(header):
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize(
    ("header", "size"),
    [("bytes=1000-", 1000), ("bytes=-0", 1000), ("bytes=0-0", 0), ("bytes=-1", 0),
     ("bytes=18446744073709551616-", 1000)],  # past u64: saturates, so beyond the file
)
def test_not_satisfiable(header, size):
    with pytest.raises(RangeNotSatisfiable) as info:
        parse_range(header, size)
    assert isinstance(info.value, ValueError)
    assert f"*/{size}" in str(info.value)


def test_max_ranges_is_keyword_only_and_enforced():
    header = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(17))
    assert parse_range(header, 1000) is None  # default 16
    assert len(parse_range(header, 1000, max_ranges=17)) == 17
    with pytest.raises(TypeError):
        parse_range(header, 1000, 17)


def test_negative_size_is_refused():
    with pytest.raises(OverflowError):
        parse_range("bytes=0-1", -1)
