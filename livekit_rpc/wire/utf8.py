"""UTF-8 helpers: byte-budget truncation and chunking on character boundaries."""

from __future__ import annotations

from collections.abc import Iterator


def utf8_len(text: str) -> int:
    """Number of bytes ``text`` takes in UTF-8."""
    if text.isascii():
        return len(text)
    return len(text.encode())


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Longest prefix of whole characters of ``text`` whose UTF-8 form fits ``max_bytes``."""
    if utf8_len(text) <= max_bytes:
        return text
    return text.encode()[:max_bytes].decode(errors="ignore")


def split_utf8(data: bytes, max_bytes: int) -> list[bytes]:
    """Cut UTF-8 ``data`` into pieces of at most ``max_bytes``, never inside a character.

    A cut falls at the largest offset ``k <= max_bytes`` whose byte is not a continuation
    byte. Empty input gives no pieces.
    """
    return list(iter_split_utf8(data, max_bytes))


def iter_split_utf8(data: bytes, max_bytes: int) -> Iterator[bytes]:
    """Lazy form of :func:`split_utf8`."""
    if max_bytes < 4:
        raise ValueError("max_bytes must be at least 4")
    view = memoryview(data)
    start, end = 0, len(data)
    while end - start > max_bytes:
        cut = start + max_bytes
        while cut > start and (view[cut] & 0xC0) == 0x80:
            cut -= 1
        if cut == start:  # not valid UTF-8: cut blindly rather than loop forever
            cut = start + max_bytes
        yield bytes(view[start:cut])
        start = cut
    if end > start:
        yield bytes(view[start:end])


def split_bytes(data: bytes, size: int) -> list[bytes]:
    """Cut ``data`` into consecutive slices of ``size`` bytes (the last may be shorter)."""
    return [data[i : i + size] for i in range(0, len(data), size)]
