"""wire/utf8.py: byte lengths, truncation on whole characters, splitting on boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livekit_rpc.wire.utf8 import iter_split_utf8, split_bytes, split_utf8, truncate_utf8, utf8_len


def split_text(text: str, n: int) -> list[str]:
    return [piece.decode() for piece in split_utf8(text.encode(), n)]


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("hello world", 5, ["hello", " worl", "d"]),
        ("héllo wörld", 5, ["héll", "o wö", "rld"]),
        ("こんにちは世界", 5, list("こんにちは世界")),
        ("😊", 5, ["😊"]),
        ("a😊b", 4, ["a", "😊", "b"]),
        ("", 5, []),
        ("abcde", 5, ["abcde"]),  # exactly n bytes stays one piece
    ],
)
def test_split_utf8_reference_cases(text: str, n: int, expected: list[str]) -> None:
    assert split_text(text, n) == expected


def test_split_utf8_emoji_after_14999_ascii_bytes() -> None:
    pieces = split_utf8(("a" * 14999 + "😀" + "b" * 10).encode(), 15000)
    assert [len(p) for p in pieces] == [14999, 14]
    assert pieces[1].decode() == "😀" + "b" * 10


def test_split_utf8_needs_room_for_a_whole_character() -> None:
    with pytest.raises(ValueError):
        split_utf8(b"abc", 3)


def test_split_utf8_cuts_invalid_utf8_blindly_instead_of_looping() -> None:
    # Only continuation bytes: no boundary exists, so the cut falls at max_bytes.
    assert split_utf8(b"\x80" * 10, 4) == [b"\x80" * 4, b"\x80" * 4, b"\x80" * 2]


def test_iter_split_utf8_is_lazy_and_equal() -> None:
    data = ("ab€" * 1000).encode()
    iterator = iter_split_utf8(data, 7)
    assert next(iterator) == "ab€".encode() + b"ab"
    assert list(iter_split_utf8(data, 7)) == split_utf8(data, 7)


@pytest.mark.parametrize(
    ("text", "n", "expected"),
    [
        ("hello", 5, "hello"),
        ("hello world", 5, "hello"),
        ("aéé", 4, "aé"),
        ("a" + "😀" * 64, 256, "a" + "😀" * 63),
        ("", 0, ""),
        ("é", 1, ""),
    ],
)
def test_truncate_utf8(text: str, n: int, expected: str) -> None:
    assert truncate_utf8(text, n) == expected


def test_truncate_utf8_emoji_result_size() -> None:
    result = truncate_utf8("a" + "😀" * 64, 256)
    assert utf8_len(result) == 253
    assert result.encode().decode() == result


def test_utf8_len() -> None:
    assert utf8_len("") == 0
    assert utf8_len("abc") == 3
    assert utf8_len("é😀") == 6


def test_split_bytes() -> None:
    assert split_bytes(b"", 3) == []
    assert split_bytes(b"abcdefg", 3) == [b"abc", b"def", b"g"]
    assert split_bytes(b"abc", 3) == [b"abc"]


@settings(max_examples=200, deadline=None)
@given(st.text(), st.integers(min_value=4, max_value=40))
def test_split_utf8_properties(text: str, n: int) -> None:
    data = text.encode()
    pieces = split_utf8(data, n)
    assert b"".join(pieces) == data
    assert all(0 < len(p) <= n for p in pieces)
    assert "".join(p.decode() for p in pieces) == text  # every piece decodes on its own


@settings(max_examples=200, deadline=None)
@given(st.text(), st.integers(min_value=0, max_value=40))
def test_truncate_utf8_properties(text: str, n: int) -> None:
    result = truncate_utf8(text, n)
    assert text.startswith(result)
    assert utf8_len(result) <= max(n, 0) or (result == text and utf8_len(text) <= n)
    if utf8_len(text) > n:  # longest fitting prefix: one more character would not fit
        assert utf8_len(text[: len(result) + 1]) > n
