"""Payload codecs: deflate-raw (LiveKit) and zstd (this library's extension).

Compression always covers a whole payload as one compressed stream; the compressed bytes are
then cut into chunks regardless of block boundaries. Decompression is incremental and bounded:
a :class:`Decompressor` never produces more than its cap, whatever the input.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Iterator
from typing import Any, Final

import zstandard

from .constants import COMPRESSION_DEFLATE_RAW, COMPRESSION_LKRPC_ZSTD, COMPRESSION_NONE

SUPPORTED_COMPRESSIONS: Final = frozenset(
    {COMPRESSION_NONE, COMPRESSION_DEFLATE_RAW, COMPRESSION_LKRPC_ZSTD}
)
DEFAULT_ZSTD_LEVEL: Final = 1
"""zstd level used unless told otherwise. Level 1 compresses RPC-style JSON about 1.7x faster
than level 3 and, from about 20 KB up, no larger (bench/room.py: 10 MB JSON RPC ~35% faster)."""
_OUTPUT_STEP: Final = 1 << 18


class CompressionError(Exception):
    """Compressed input is corrupt or truncated."""


class DecompressedTooLargeError(Exception):
    """Decompressed output went over the configured cap."""


def compress(compression: int, data: bytes, *, zstd_level: int = DEFAULT_ZSTD_LEVEL) -> bytes:
    """Compress ``data`` as one stream with the given wire compression type."""
    if compression == COMPRESSION_DEFLATE_RAW:
        codec = zlib.compressobj(-1, zlib.DEFLATED, -15)
        return codec.compress(data) + codec.flush()
    if compression == COMPRESSION_LKRPC_ZSTD:
        return _zstd_compressor(zstd_level).compress(data)
    if compression == COMPRESSION_NONE:
        return data
    raise ValueError(f"unsupported compression {compression}")


@functools.lru_cache(maxsize=8)
def _zstd_compressor(level: int) -> zstandard.ZstdCompressor:
    # Building a compressor costs more than compressing a small payload; one per level is
    # reused (the event loop runs one compression at a time).
    return zstandard.ZstdCompressor(level=level, write_checksum=True)


class StreamCompressor:
    """Incremental whole-payload compression (pass-through for NONE).

    Feeding a payload in pieces gives the same deflate-raw bytes as one-shot :func:`compress`;
    for zstd, ``size`` (when known) is written into the frame header.
    """

    def __init__(self, compression: int, zstd_level: int, size: int | None = None) -> None:
        self._deflate = (
            zlib.compressobj(-1, zlib.DEFLATED, -15)
            if compression == COMPRESSION_DEFLATE_RAW
            else None
        )
        self._zstd = (
            zstandard.ZstdCompressor(level=zstd_level, write_checksum=True).compressobj(
                size=-1 if size is None else size
            )
            if compression == COMPRESSION_LKRPC_ZSTD
            else None
        )

    def feed(self, data: bytes | memoryview) -> bytes:
        if self._deflate is not None:
            return self._deflate.compress(data)
        if self._zstd is not None:
            return bytes(self._zstd.compress(data))
        return bytes(data)

    def finish(self) -> bytes:
        if self._deflate is not None:
            return self._deflate.flush()
        if self._zstd is not None:
            return bytes(self._zstd.flush())
        return b""


def compress_pieces(
    compression: int, data: bytes, *, zstd_level: int = DEFAULT_ZSTD_LEVEL, step: int = 1 << 20
) -> Iterator[bytes]:
    """The compressed form of ``data``, produced ``step`` input bytes at a time.

    Lets a sender stream a large payload out without holding its compressed copy whole.
    Payloads up to ``step`` are compressed in one call (the same bytes as :func:`compress`).
    """
    if len(data) <= step:
        yield compress(compression, data, zstd_level=zstd_level)
        return
    compressor = StreamCompressor(compression, zstd_level, size=len(data))
    view = memoryview(data)
    for start in range(0, len(data), step):
        out = compressor.feed(view[start : start + step])
        if out:
            yield out
    yield compressor.finish()


class _CappedSink:
    """Write target for zstd's stream writer: collects output, refuses to grow past a cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.total = 0
        self.pieces: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.total += len(data)
        if self.total > self.cap:
            raise DecompressedTooLargeError(f"decompressed payload exceeds {self.cap} bytes")
        self.pieces.append(bytes(data))
        return len(data)

    def take(self) -> list[bytes]:
        pieces, self.pieces = self.pieces, []
        return pieces


@functools.lru_cache(maxsize=1)
def _shared_zstd_decompressor() -> zstandard.ZstdDecompressor:
    # Building a decompression context costs more than decoding a small payload. This one is
    # used only by decompress_whole, which runs start to end without yielding to the event
    # loop, so no two payloads ever share it at the same time; every stream_writer() starts
    # from a fresh session, whatever the previous payload left behind.
    return zstandard.ZstdDecompressor()


def decompress_whole(compression: int, data: bytes, max_output: int) -> bytes:
    """Decompress a complete payload (an inline header's content) in one call.

    The result and the errors are those of a :class:`Decompressor` fed ``data`` and then
    finished; only the zstd context is reused across calls.
    """
    decompressor = Decompressor(compression, max_output, _shared_context=True)
    return b"".join([*decompressor.feed(data), *decompressor.finish()])


class Decompressor:
    """Incremental decompression of one stream with a hard cap on total output bytes."""

    def __init__(self, compression: int, max_output: int, *, _shared_context: bool = False) -> None:
        if compression not in (COMPRESSION_DEFLATE_RAW, COMPRESSION_LKRPC_ZSTD):
            raise ValueError(f"unsupported compression {compression}")
        self.compression = compression
        self.max_output = max_output
        self.total_out = 0
        self._inflater = zlib.decompressobj(-15) if compression == COMPRESSION_DEFLATE_RAW else None
        self._zstd_sink = _CappedSink(max_output)
        self._zstd_writer: Any = None
        if compression == COMPRESSION_LKRPC_ZSTD:
            context = (
                _shared_zstd_decompressor() if _shared_context else zstandard.ZstdDecompressor()
            )
            self._zstd_writer = context.stream_writer(
                self._zstd_sink,  # type: ignore[arg-type]  # only write() is used
                write_size=_OUTPUT_STEP,
                closefd=False,
            )

    def feed(self, data: bytes) -> list[bytes]:
        """Decompress the next piece of input; return the output it produced."""
        if self._inflater is not None:
            return self._inflate(data)
        assert self._zstd_writer is not None
        try:
            self._zstd_writer.write(data)
        except zstandard.ZstdError as exc:
            raise CompressionError(f"corrupt zstd data: {exc}") from exc
        pieces = self._zstd_sink.take()
        self.total_out = self._zstd_sink.total
        return pieces

    def _inflate(self, data: bytes) -> list[bytes]:
        inflater = self._inflater
        assert inflater is not None
        pieces: list[bytes] = []
        pending = data
        while True:
            if pending and inflater.eof:
                raise CompressionError("data after the end of the deflate stream")
            try:
                out = inflater.decompress(pending, _OUTPUT_STEP)
            except zlib.error as exc:
                raise CompressionError(f"corrupt deflate data: {exc}") from exc
            self.total_out += len(out)
            if self.total_out > self.max_output:
                raise DecompressedTooLargeError(
                    f"decompressed payload exceeds {self.max_output} bytes"
                )
            if out:
                pieces.append(out)
            if inflater.unused_data:
                raise CompressionError("data after the end of the deflate stream")
            pending = inflater.unconsumed_tail
            # A full output step may leave output pending inside zlib even with no input left.
            if not pending and len(out) < _OUTPUT_STEP:
                return pieces

    def finish(self) -> list[bytes]:
        """Signal end of input; raise :class:`CompressionError` if the stream is truncated."""
        if self._inflater is not None:
            if not self._inflater.eof:
                raise CompressionError("truncated deflate stream")
            return []
        # zstd: completeness is checked by the caller against total_length, which zstd
        # streams must carry (spec §Extensions).
        return []
