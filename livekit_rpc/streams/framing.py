"""Sans-I/O encoding of outgoing data streams: payloads in, DataPackets out.

Nothing here touches a socket, a clock or an event loop: callers pass the stream id and the
timestamp, and send the packets these functions produce in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from ..peers import PeerDirectory
from ..wire import constants as c
from ..wire.compression import DEFAULT_ZSTD_LEVEL, compress_pieces
from ..wire.packets import (
    DataPacket,
    DataStream,
    stream_chunk_packet,
    stream_header_packet,
    stream_trailer_packet,
)
from ..wire.utf8 import iter_split_utf8, split_bytes, split_utf8
from .types import DataStreamError, DataStreamErrorReason


@dataclass(frozen=True)
class Route:
    """Who a stream goes to, and what every one of them can read."""

    destinations: tuple[str, ...]
    v2: bool
    """Every recipient has client_protocol >= 2: single-packet (inline) streams allowed."""
    compression: int
    """The best compression every recipient can read (NONE when compression is off)."""


def plan_route(peers: PeerDirectory, destinations: Sequence[str], *, compress: bool) -> Route:
    """Decide inline eligibility and compression for a send, as LiveKit's SDKs do.

    Recipients are the explicit destinations, or every known remote participant for a
    broadcast (an empty room counts as fully capable). zstd, this library's extension, is
    used only for targeted sends where every destination advertises it, so a participant that
    joins during a broadcast can never receive a stream it cannot read.
    """
    recipients = list(destinations) if destinations else list(peers.remote_identities())
    v2 = all(peers.client_protocol(r) >= c.CLIENT_PROTOCOL_DATA_STREAM_V2 for r in recipients)
    compression = c.COMPRESSION_NONE
    if compress and v2:
        caps = [peers.capabilities(r) for r in recipients]
        if destinations and all(c.CAP_LKRPC_COMPRESSION_ZSTD in cs for cs in caps):
            compression = c.COMPRESSION_LKRPC_ZSTD
        elif all(c.CAP_COMPRESSION_DEFLATE_RAW in cs for cs in caps):
            compression = c.COMPRESSION_DEFLATE_RAW
    return Route(tuple(destinations), v2, compression)


@dataclass(frozen=True)
class StreamHeaderFields:
    """Everything a header says apart from compression, length and inline content."""

    stream_id: str
    timestamp_ms: int
    topic: str
    mime_type: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    text_header: DataStream.TextHeader | None = None
    byte_name: str | None = None

    def packet(
        self,
        route: Route,
        *,
        compression: int,
        total_length: int | None,
        inline_content: bytes | None = None,
    ) -> DataPacket:
        return stream_header_packet(
            stream_id=self.stream_id,
            timestamp_ms=self.timestamp_ms,
            topic=self.topic,
            mime_type=self.mime_type,
            total_length=total_length,
            attributes=self.attributes,
            destinations=route.destinations,
            compression=compression,
            text_header=self.text_header,
            byte_name=self.byte_name,
            inline_content=inline_content,
        )


def text_header(
    *,
    attached_stream_ids: Iterable[str] = (),
    reply_to_stream_id: str = "",
    version: int = 0,
    operation_type: int = 0,
) -> DataStream.TextHeader:
    """The text-specific part of a header."""
    return DataStream.TextHeader(
        operation_type=operation_type,  # type: ignore[arg-type]
        version=version,
        reply_to_stream_id=reply_to_stream_id,
        attached_stream_ids=list(attached_stream_ids),
    )


def guard_header(packet: DataPacket) -> DataPacket:
    """Refuse a chunked-stream header whose serialized packet is over the 15,000-byte budget."""
    size = packet.ByteSize()
    if size > c.STREAM_CHUNK_SIZE:
        raise DataStreamError(
            DataStreamErrorReason.HEADER_TOO_LARGE,
            f"stream header is {size} bytes, over the {c.STREAM_CHUNK_SIZE}-byte limit",
        )
    return packet


def encode_payload(
    fields: StreamHeaderFields,
    payload: bytes,
    route: Route,
    *,
    allow_inline: bool = True,
    zstd_level: int = DEFAULT_ZSTD_LEVEL,
) -> Iterator[DataPacket]:
    """Packets for a whole payload known up front (``send_text`` / ``send_bytes``).

    Tries a single inline packet first (v2 recipients only), compressed when that is
    smaller; otherwise a header, chunks and a trailer, compressed when the route allows.
    Raises :class:`DataStreamError` (HEADER_TOO_LARGE) before yielding anything if the
    chunked header does not fit. Chunks are produced lazily, so the payload is not copied
    into packets all at once.
    """
    is_text = fields.text_header is not None
    size = c.STREAM_CHUNK_SIZE
    compressed: bytes | None = None
    compressed_pieces: Iterator[bytes] = iter(())
    if route.compression != c.COMPRESSION_NONE:
        compressed_pieces = compress_pieces(route.compression, payload, zstd_level=zstd_level)
        # Compress just far enough to know whether the result fits one inline packet; the
        # rest is compressed as chunks are sent, so a big payload is never held twice.
        head = _take_more_than(compressed_pieces, size)
        if len(head) <= size:
            compressed = bytes(head)
        compressed_pieces = itertools.chain((bytes(head),), compressed_pieces)

    if allow_inline and route.v2:
        content, compression = payload, c.COMPRESSION_NONE
        if compressed is not None and len(compressed) < len(payload):
            content, compression = compressed, route.compression
        # The packet is larger than its content: skip copying a big payload into one.
        if len(content) <= size:
            inline = fields.packet(
                route, compression=compression, total_length=len(payload), inline_content=content
            )
            if inline.ByteSize() <= size:
                return iter((inline,))

    if route.compression != c.COMPRESSION_NONE:
        header = guard_header(
            fields.packet(route, compression=route.compression, total_length=len(payload))
        )
        pieces: Iterable[bytes] = _exact_slices(compressed_pieces, size)
    else:
        header = guard_header(
            fields.packet(route, compression=c.COMPRESSION_NONE, total_length=len(payload))
        )
        pieces = iter_split_utf8(payload, size) if is_text else _lazy_slices(payload, size)
    return _framed(header, fields.stream_id, pieces, route.destinations)


def _take_more_than(pieces: Iterator[bytes], limit: int) -> bytearray:
    """Concatenate pieces until more than ``limit`` bytes are held or the pieces run out."""
    head = bytearray()
    for piece in pieces:
        head += piece
        if len(head) > limit:
            break
    return head


def _exact_slices(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut a sequence of byte strings into ``size``-byte slices (the last may be shorter)."""
    pending = bytearray()
    for piece in pieces:
        if not pending and len(piece) >= size:  # common case: slice a big piece directly
            view = memoryview(piece)
            whole = len(piece) - len(piece) % size
            for start in range(0, whole, size):
                yield bytes(view[start : start + size])
            pending += view[whole:]
            continue
        pending += piece
        while len(pending) >= size:
            yield bytes(pending[:size])
            del pending[:size]
    if pending:
        yield bytes(pending)


def _lazy_slices(data: bytes, size: int) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(data), size):
        yield bytes(view[start : start + size])


def _framed(
    header: DataPacket, stream_id: str, pieces: Iterable[bytes], destinations: Sequence[str]
) -> Iterator[DataPacket]:
    yield header
    for index, piece in enumerate(pieces):
        yield stream_chunk_packet(
            stream_id=stream_id, chunk_index=index, content=piece, destinations=destinations
        )
    yield stream_trailer_packet(stream_id=stream_id, destinations=destinations)


class ChunkFramer:
    """Incremental framing of one stream: numbered chunk packets, then a trailer.

    Used by the incremental writers (never inline, never compressed) and by ``send_file``,
    whose content is re-cut into exact 15,000-byte chunks.
    """

    def __init__(self, stream_id: str, destinations: Sequence[str]) -> None:
        self.stream_id = stream_id
        self.destinations = tuple(destinations)
        self.next_index = 0
        self._pending = bytearray()

    def chunk(self, content: bytes) -> DataPacket:
        packet = stream_chunk_packet(
            stream_id=self.stream_id,
            chunk_index=self.next_index,
            content=content,
            destinations=self.destinations,
        )
        self.next_index += 1
        return packet

    def text(self, text: str) -> list[DataPacket]:
        """Chunks for one text write, split on UTF-8 boundaries."""
        return [self.chunk(p) for p in split_utf8(text.encode(), c.STREAM_CHUNK_SIZE)]

    def data(self, data: bytes) -> list[DataPacket]:
        """Chunks for one byte write; slices are not merged across writes."""
        return [self.chunk(p) for p in split_bytes(data, c.STREAM_CHUNK_SIZE)]

    def rechunk(self, data: bytes) -> list[DataPacket]:
        """Buffer ``data`` and emit every complete 15,000-byte chunk."""
        self._pending += data
        size = c.STREAM_CHUNK_SIZE
        full = len(self._pending) - len(self._pending) % size
        packets = [self.chunk(bytes(self._pending[i : i + size])) for i in range(0, full, size)]
        del self._pending[:full]
        return packets

    def flush(self) -> list[DataPacket]:
        """Emit what :meth:`rechunk` still holds."""
        if not self._pending:
            return []
        packet = self.chunk(bytes(self._pending))
        self._pending.clear()
        return [packet]

    def trailer(self, reason: str = "", attributes: Mapping[str, str] | None = None) -> DataPacket:
        return stream_trailer_packet(
            stream_id=self.stream_id,
            destinations=self.destinations,
            reason=reason,
            attributes=attributes,
        )
