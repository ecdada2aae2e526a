"""Asyncio side of outgoing data streams: one-shot sends and incremental writers."""

from __future__ import annotations

import asyncio
import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Generic, TypeVar

from ..emitter import PacketEmitter, SendPacket
from ..peers import PeerDirectory
from ..wire import constants as c
from ..wire.compression import DEFAULT_ZSTD_LEVEL, StreamCompressor
from ..wire.packets import DataPacket
from .framing import (
    ChunkFramer,
    Route,
    StreamHeaderFields,
    encode_payload,
    guard_header,
    plan_route,
    text_header,
)
from .types import ByteStreamInfo, DataStreamError, DataStreamErrorReason, TextStreamInfo

ProgressCallback = Callable[[float], None]

_FILE_READ_SIZE = 1 << 20
_ENCODE_OFF_LOOP_FROM = 1 << 20
"""Payloads above this size, when compressed, are encoded in a worker thread."""
_BATCH_BYTES = 1 << 18
"""Chunk content taken per worker-thread batch."""


def _take_batch(packets: Iterator[DataPacket]) -> list[DataPacket]:
    """The next packets of ``packets`` up to about ``_BATCH_BYTES`` of content; [] at the end."""
    batch: list[DataPacket] = []
    size = 0
    for packet in packets:
        batch.append(packet)
        size += len(packet.stream_chunk.content) if packet.HasField("stream_chunk") else 0
        if size >= _BATCH_BYTES:
            break
    return batch


def _now_ms() -> int:
    return int(time.time() * 1000)


class OutgoingDataStreamManager(PacketEmitter):
    """Sends data streams with LiveKit's framing, picking inline and compression per recipient.

    ``send_packet`` delivers one DataPacket on the reliable channel and may wait (for
    backpressure); ``peers`` tells each recipient's client_protocol and capabilities.
    """

    def __init__(
        self,
        send_packet: SendPacket | None,
        peers: PeerDirectory,
        *,
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
    ) -> None:
        super().__init__(send_packet)
        self._peers = peers
        self.zstd_level = zstd_level

    async def _send_payload(
        self,
        fields: StreamHeaderFields,
        payload: bytes,
        route: Route,
        on_progress: ProgressCallback | None,
        *,
        allow_inline: bool = True,
    ) -> None:
        """Encode and send a whole payload.

        A large payload that is compressed is encoded in a worker thread, a batch ahead of
        the packets being sent: zstd and zlib release the GIL, so compression overlaps with
        the transport's own work on the event loop instead of alternating with it, and the
        loop never stalls for a whole compression step.
        """
        if route.compression == c.COMPRESSION_NONE or len(payload) <= _ENCODE_OFF_LOOP_FROM:
            packets = encode_payload(
                fields, payload, route, allow_inline=allow_inline, zstd_level=self.zstd_level
            )
            await self._send_all(iter(packets), len(payload), on_progress)
            return
        encoded = await asyncio.to_thread(
            encode_payload,
            fields,
            payload,
            route,
            allow_inline=allow_inline,
            zstd_level=self.zstd_level,
        )
        await self._send_all(encoded, len(payload), on_progress, off_loop=True)

    async def _send_all(
        self,
        packets: Iterator[DataPacket],
        total: int,
        on_progress: ProgressCallback | None,
        *,
        off_loop: bool = False,
    ) -> None:
        """Send ``packets``; with ``off_loop``, produce each batch in a worker thread while
        the previous one is being sent."""
        sent = 0

        async def send(batch: Iterable[DataPacket]) -> None:
            nonlocal sent
            for packet in batch:
                await self._send(packet)
                if on_progress is not None and total and packet.HasField("stream_chunk"):
                    sent += len(packet.stream_chunk.content)
                    on_progress(min(sent / total, 1.0))

        if not off_loop:
            await send(packets)
        else:
            ahead = asyncio.ensure_future(asyncio.to_thread(_take_batch, packets))
            try:
                while batch := await ahead:
                    ahead = asyncio.ensure_future(asyncio.to_thread(_take_batch, packets))
                    await send(batch)
            finally:
                # On failure the thread may still be encoding; its batch is dropped unsent.
                ahead.cancel()
                await asyncio.gather(ahead, return_exceptions=True)
        if on_progress is not None:
            on_progress(1.0)

    async def send_text(
        self,
        text: str,
        *,
        destination_identities: Sequence[str] | None = None,
        topic: str = "",
        attributes: Mapping[str, str] | None = None,
        reply_to_id: str | None = None,
        attachments: Sequence[str] = (),
        stream_id: str | None = None,
        compress: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> TextStreamInfo:
        """Send a whole text as one stream; ``attachments`` are file paths sent alongside."""
        destinations = list(destination_identities or ())
        route = plan_route(self._peers, destinations, compress=compress)
        attachment_ids = [str(uuid.uuid4()) for _ in attachments]
        fields = StreamHeaderFields(
            stream_id=stream_id or str(uuid.uuid4()),
            timestamp_ms=_now_ms(),
            topic=topic,
            mime_type=c.TEXT_MIME_TYPE,
            attributes=dict(attributes or {}),
            text_header=text_header(
                attached_stream_ids=attachment_ids, reply_to_stream_id=reply_to_id or ""
            ),
        )
        payload = text.encode()
        await self._send_payload(
            fields,
            payload,
            route,
            None if attachments else on_progress,
            allow_inline=not attachments,
        )
        if attachments:
            await asyncio.gather(
                *(
                    self.send_file(
                        path,
                        topic=topic,
                        destination_identities=destinations,
                        stream_id=sid,
                        compress=compress,
                    )
                    for path, sid in zip(attachments, attachment_ids, strict=True)
                )
            )
            if on_progress is not None:
                on_progress(1.0)
        return TextStreamInfo(
            stream_id=fields.stream_id,
            mime_type=fields.mime_type,
            topic=topic,
            timestamp=fields.timestamp_ms,
            size=len(payload),
            attributes=dict(fields.attributes),
            attachments=attachment_ids,
            reply_to_id=reply_to_id or "",
        )

    async def send_bytes(
        self,
        data: bytes,
        *,
        topic: str = "",
        name: str | None = None,
        mime_type: str | None = None,
        destination_identities: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        compress: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> ByteStreamInfo:
        """Send a whole byte payload as one stream."""
        destinations = list(destination_identities or ())
        route = plan_route(self._peers, destinations, compress=compress)
        fields = StreamHeaderFields(
            stream_id=stream_id or str(uuid.uuid4()),
            timestamp_ms=_now_ms(),
            topic=topic,
            mime_type=mime_type or c.BYTES_MIME_TYPE,
            attributes=dict(attributes or {}),
            byte_name=name or c.DEFAULT_BYTE_STREAM_NAME,
        )
        await self._send_payload(fields, data, route, on_progress)
        return _byte_info(fields, len(data))

    async def send_file(
        self,
        file_path: str,
        *,
        topic: str = "",
        destination_identities: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        mime_type: str | None = None,
        compress: bool = True,
        on_progress: ProgressCallback | None = None,
    ) -> ByteStreamInfo:
        """Send a file as a chunked byte stream (never inline), read a piece at a time."""
        destinations = list(destination_identities or ())
        route = plan_route(self._peers, destinations, compress=compress)
        size = os.path.getsize(file_path)  # noqa: ASYNC240 - a stat of a local file
        guessed, _ = mimetypes.guess_type(file_path)
        fields = StreamHeaderFields(
            stream_id=stream_id or str(uuid.uuid4()),
            timestamp_ms=_now_ms(),
            topic=topic,
            mime_type=mime_type or guessed or c.BYTES_MIME_TYPE,
            attributes=dict(attributes or {}),
            byte_name=os.path.basename(file_path),
        )
        header = guard_header(
            fields.packet(route, compression=route.compression, total_length=size)
        )
        framer = ChunkFramer(fields.stream_id, destinations)
        encoder = StreamCompressor(route.compression, self.zstd_level, size=size)
        await self._send(header)
        read = 0
        with open(file_path, "rb") as handle:  # noqa: ASYNC230 - bounded reads of a local file
            while piece := handle.read(_FILE_READ_SIZE):
                read += len(piece)
                for packet in framer.rechunk(encoder.feed(piece)):
                    await self._send(packet)
                if on_progress is not None and size:
                    on_progress(min(read / size, 1.0))
        for packet in framer.rechunk(encoder.finish()) + framer.flush():
            await self._send(packet)
        await self._send(framer.trailer())
        if on_progress is not None:
            on_progress(1.0)
        return _byte_info(fields, size)

    async def stream_text(
        self,
        *,
        destination_identities: Sequence[str] | None = None,
        topic: str = "",
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        reply_to_id: str | None = None,
        total_size: int | None = None,
        attached_stream_ids: Sequence[str] = (),
    ) -> TextStreamWriter:
        """Open a text stream written piece by piece (never inline, never compressed)."""
        destinations = list(destination_identities or ())
        fields = StreamHeaderFields(
            stream_id=stream_id or str(uuid.uuid4()),
            timestamp_ms=_now_ms(),
            topic=topic,
            mime_type=c.TEXT_MIME_TYPE,
            attributes=dict(attributes or {}),
            text_header=text_header(
                attached_stream_ids=attached_stream_ids, reply_to_stream_id=reply_to_id or ""
            ),
        )
        writer = TextStreamWriter(self._send, fields, destinations, total_size)
        await writer._open()
        return writer

    async def stream_bytes(
        self,
        name: str = c.DEFAULT_BYTE_STREAM_NAME,
        *,
        total_size: int | None = None,
        mime_type: str = c.BYTES_MIME_TYPE,
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        destination_identities: Sequence[str] | None = None,
        topic: str = "",
    ) -> ByteStreamWriter:
        """Open a byte stream written piece by piece (never inline, never compressed)."""
        destinations = list(destination_identities or ())
        fields = StreamHeaderFields(
            stream_id=stream_id or str(uuid.uuid4()),
            timestamp_ms=_now_ms(),
            topic=topic,
            mime_type=mime_type,
            attributes=dict(attributes or {}),
            byte_name=name,
        )
        writer = ByteStreamWriter(self._send, fields, destinations, total_size)
        await writer._open()
        return writer


def _byte_info(fields: StreamHeaderFields, size: int) -> ByteStreamInfo:
    return ByteStreamInfo(
        stream_id=fields.stream_id,
        mime_type=fields.mime_type,
        topic=fields.topic,
        timestamp=fields.timestamp_ms,
        size=size,
        attributes=dict(fields.attributes),
        name=fields.byte_name or "",
    )


W = TypeVar("W", str, bytes)
WI = TypeVar("WI", TextStreamInfo, ByteStreamInfo)


class _StreamWriter(Generic[W, WI]):
    """A stream opened with its header sent; write pieces, then close with a trailer."""

    def __init__(
        self,
        send: SendPacket,
        fields: StreamHeaderFields,
        destinations: Sequence[str],
        total_size: int | None,
    ) -> None:
        self._send = send
        self._fields = fields
        self._route = Route(tuple(destinations), False, c.COMPRESSION_NONE)
        self._total_size = total_size
        self._framer = ChunkFramer(fields.stream_id, destinations)
        self._lock = asyncio.Lock()
        self._closed = False

    async def _open(self) -> None:
        header = self._fields.packet(
            self._route, compression=c.COMPRESSION_NONE, total_length=self._total_size
        )
        await self._send(guard_header(header))

    def _chunks(self, piece: W) -> list[DataPacket]:
        raise NotImplementedError

    async def write(self, piece: W) -> None:
        """Send one piece as one or more chunks (at most 15,000 bytes each)."""
        async with self._lock:
            if self._closed:
                raise DataStreamError(DataStreamErrorReason.ABNORMAL_END, "stream is closed")
            for packet in self._chunks(piece):
                await self._send(packet)

    async def aclose(
        self, *, reason: str = "", attributes: Mapping[str, str] | None = None
    ) -> None:
        """Send the trailer; a non-empty ``reason`` tells the receiver the stream was aborted."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await self._send(self._framer.trailer(reason, attributes))

    async def __aenter__(self) -> _StreamWriter[W, WI]:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.aclose(reason="" if exc is None else "aborted")


class TextStreamWriter(_StreamWriter[str, TextStreamInfo]):
    """Incremental text stream; each write is split on UTF-8 boundaries."""

    def _chunks(self, piece: str) -> list[DataPacket]:
        return self._framer.text(piece)

    @property
    def info(self) -> TextStreamInfo:
        f = self._fields
        return TextStreamInfo(
            stream_id=f.stream_id,
            mime_type=f.mime_type,
            topic=f.topic,
            timestamp=f.timestamp_ms,
            size=self._total_size,
            attributes=dict(f.attributes),
            attachments=list(f.text_header.attached_stream_ids) if f.text_header else [],
        )


class ByteStreamWriter(_StreamWriter[bytes, ByteStreamInfo]):
    """Incremental byte stream; each write is cut into 15,000-byte chunks."""

    def _chunks(self, piece: bytes) -> list[DataPacket]:
        return self._framer.data(piece)

    @property
    def info(self) -> ByteStreamInfo:
        return _byte_info(self._fields, self._total_size or 0)
