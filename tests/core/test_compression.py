"""wire/compression.py: deflate-raw and zstd codecs, and the capped incremental decompressor."""

from __future__ import annotations

import os
import zlib

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from livekit_rpc.wire.compression import (
    SUPPORTED_COMPRESSIONS,
    CompressionError,
    DecompressedTooLargeError,
    Decompressor,
    compress,
)
from livekit_rpc.wire.constants import (
    COMPRESSION_DEFLATE_RAW,
    COMPRESSION_LKRPC_ZSTD,
    COMPRESSION_NONE,
)

DEFLATE, ZSTD = COMPRESSION_DEFLATE_RAW, COMPRESSION_LKRPC_ZSTD
MB = 1 << 20


def deflate_bomb(megabytes: int) -> bytes:
    """A deflate-raw stream of ``megabytes`` MiB of zeros, built without compressing them all.

    After a full flush the compressor starts afresh, so every flushed megabyte of zeros
    compresses to the same bytes; repeating them gives a valid stream of any size.
    """
    codec = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MB)
    first = codec.compress(zeros) + codec.flush(zlib.Z_FULL_FLUSH)
    again = codec.compress(zeros) + codec.flush(zlib.Z_FULL_FLUSH)
    assert again == first
    return first * (megabytes - 1) + codec.compress(zeros) + codec.flush()


def inflate_all(data: bytes) -> bytes:
    codec = zlib.decompressobj(-15)
    return codec.decompress(data) + codec.flush()


def test_supported_compressions() -> None:
    assert frozenset({0, 1, 10001}) == SUPPORTED_COMPRESSIONS


def test_deflate_raw_matches_zlib_raw_deflate() -> None:
    data = b"hello hello compressible world " * 50
    reference = zlib.compressobj(-1, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY)
    assert compress(DEFLATE, data) == reference.compress(data) + reference.flush()
    assert inflate_all(compress(DEFLATE, data)) == data


def test_deflate_raw_of_nothing_is_03_00() -> None:
    assert compress(DEFLATE, b"") == b"\x03\x00"


def test_compress_none_and_zstd() -> None:
    assert compress(COMPRESSION_NONE, b"abc") == b"abc"
    packed = compress(ZSTD, b"x" * 10000)
    assert len(packed) < 100
    assert zstandard.ZstdDecompressor().decompress(packed) == b"x" * 10000
    assert compress(ZSTD, b"x" * 10000, zstd_level=19) != b""


def test_compress_unknown_type_raises() -> None:
    with pytest.raises(ValueError, match="unsupported compression 99"):
        compress(99, b"x")


@pytest.mark.parametrize("kind", [COMPRESSION_NONE, 99])
def test_decompressor_refuses_non_codecs(kind: int) -> None:
    with pytest.raises(ValueError):
        Decompressor(kind, 100)


@pytest.mark.parametrize("kind", [DEFLATE, ZSTD])
def test_decompressor_round_trip_fed_byte_by_byte(kind: int) -> None:
    data = os.urandom(3000) + b"a" * 5000
    packed = compress(kind, data)
    decompressor = Decompressor(kind, len(data))
    out = b"".join(b"".join(decompressor.feed(packed[i : i + 1])) for i in range(len(packed)))
    out += b"".join(decompressor.finish())
    assert out == data
    assert decompressor.total_out == len(data)


@pytest.mark.parametrize("kind", [DEFLATE, ZSTD])
def test_decompressor_cap_exactly_reached_is_fine_one_more_is_not(kind: int) -> None:
    packed = compress(kind, b"z" * 1000)
    assert b"".join(Decompressor(kind, 1000).feed(packed)) == b"z" * 1000
    with pytest.raises(DecompressedTooLargeError):
        Decompressor(kind, 999).feed(packed)


def test_deflate_bomb_stops_at_the_cap() -> None:
    bomb = deflate_bomb(1024)  # 1 GiB of zeros in about 1 MB
    assert len(bomb) < 2 * MB
    assert inflate_all(bomb[: len(bomb) // 1024]).count(0) >= MB - 1
    decompressor = Decompressor(DEFLATE, 1_000_000)
    with pytest.raises(DecompressedTooLargeError):
        for start in range(0, len(bomb), 15000):
            decompressor.feed(bomb[start : start + 15000])
    # Work stops within one output step of the cap, long before the gigabyte.
    assert decompressor.total_out < 1_000_000 + (1 << 18) + 1


def test_zstd_bomb_stops_at_the_cap() -> None:
    bomb = compress(ZSTD, bytes(200 * MB))
    assert len(bomb) < 15000  # fits in a single chunk
    decompressor = Decompressor(ZSTD, 1_000_000)
    with pytest.raises(DecompressedTooLargeError):
        decompressor.feed(bomb)
    assert decompressor.total_out <= 1_000_000


def test_corrupt_deflate_raises_compression_error() -> None:
    with pytest.raises(CompressionError, match="corrupt deflate"):
        Decompressor(DEFLATE, MB).feed(b"\xff" * 64)


def test_corrupt_zstd_raises_compression_error() -> None:
    with pytest.raises(CompressionError, match="corrupt zstd"):
        Decompressor(ZSTD, MB).feed(b"\x00" * 64)


def test_zstd_with_a_damaged_frame_header_raises_compression_error() -> None:
    packed = bytearray(compress(ZSTD, os.urandom(2000)))
    packed[0] ^= 0xFF  # magic number
    with pytest.raises(CompressionError, match="corrupt zstd"):
        Decompressor(ZSTD, MB).feed(bytes(packed))


def test_truncated_deflate_fails_at_finish() -> None:
    packed = compress(DEFLATE, os.urandom(5000))
    decompressor = Decompressor(DEFLATE, MB)
    decompressor.feed(packed[:-10])
    with pytest.raises(CompressionError, match="truncated"):
        decompressor.finish()


def test_data_after_the_deflate_end_is_an_error() -> None:
    # This library's choice (LiveKit's JS SDK on Node ignores such bytes): refuse them.
    packed = compress(DEFLATE, b"abc")
    with pytest.raises(CompressionError, match="after the end"):
        Decompressor(DEFLATE, MB).feed(packed + b"junk")
    decompressor = Decompressor(DEFLATE, MB)
    assert b"".join(decompressor.feed(packed)) == b"abc"
    with pytest.raises(CompressionError, match="after the end"):
        decompressor.feed(b"more")


def test_deflate_output_larger_than_one_step_is_not_lost() -> None:
    data = os.urandom(1000) * 1000  # 1 MB: several 256 KiB output steps per feed
    decompressor = Decompressor(DEFLATE, len(data))
    out = b"".join(decompressor.feed(compress(DEFLATE, data)))
    assert out == data
    assert decompressor.finish() == []


@settings(max_examples=60, deadline=None)
@given(
    st.binary(max_size=4000),
    st.sampled_from([DEFLATE, ZSTD]),
    st.lists(st.integers(min_value=1, max_value=500), max_size=20),
)
def test_decompressor_round_trip_any_split(data: bytes, kind: int, cuts: list[int]) -> None:
    packed = compress(kind, data)
    decompressor = Decompressor(kind, max(len(data), 1))
    out, start = [], 0
    for size in [*cuts, len(packed)]:
        out += decompressor.feed(packed[start : start + size])
        start += size
    out += decompressor.finish()
    assert b"".join(out) == data


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from([DEFLATE, ZSTD]))
def test_decompressor_on_garbage_raises_only_its_own_errors(garbage: bytes, kind: int) -> None:
    decompressor = Decompressor(kind, 10_000)
    try:
        decompressor.feed(garbage)
        decompressor.finish()
    except (CompressionError, DecompressedTooLargeError):
        pass
    assert decompressor.total_out <= 10_000
