"""Sans-I/O assembly of incoming data streams: packets in, stream events out.

The assembler owns every per-stream buffer a remote peer can grow and bounds each of them
(:class:`~livekit_rpc.streams.types.StreamLimits`). It never raises on bad input: problems
become :class:`StreamFailed` events or are dropped with a logged warning.
"""

from __future__ import annotations

import codecs
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

from ..wire import constants as c
from ..wire.compression import (
    SUPPORTED_COMPRESSIONS,
    CompressionError,
    DecompressedTooLargeError,
    Decompressor,
    decompress_whole,
)
from ..wire.packets import DataPacket, DataStream
from .types import (
    ByteStreamInfo,
    DataStreamError,
    DataStreamErrorReason,
    StreamLimits,
    TextStreamInfo,
)

logger = logging.getLogger(__name__)

StreamKind = Literal["text", "bytes"]
StreamInfo = TextStreamInfo | ByteStreamInfo
R = DataStreamErrorReason
_TOO_LARGE = "Stream exceeds the maximum payload size"


@dataclass(frozen=True)
class StreamOpened:
    """A stream for a topic with a handler has started; data and an end will follow."""

    kind: StreamKind
    info: StreamInfo
    sender_identity: str


@dataclass(frozen=True)
class StreamData:
    """The next piece of a stream's content: ``str`` for text streams, ``bytes`` otherwise."""

    stream_id: str
    data: str | bytes


@dataclass(frozen=True)
class StreamEnded:
    """The stream finished normally; ``attributes`` are the header's merged with the trailer's."""

    stream_id: str
    attributes: dict[str, str]


@dataclass(frozen=True)
class StreamFailed:
    """The stream ended with an error; no more events follow for it."""

    stream_id: str
    error: DataStreamError


StreamEvent = StreamOpened | StreamData | StreamEnded | StreamFailed


@dataclass
class _OpenStream:
    kind: StreamKind
    info: StreamInfo
    sender: str
    encryption_type: int
    total_length: int | None
    last_activity: float
    next_index: int = 0
    wire_bytes: int = 0
    received: int = 0
    decompressor: Decompressor | None = None
    decoder: codecs.IncrementalDecoder | None = field(default=None)


class StreamAssembler:
    """Turns stream header/chunk/trailer packets into ordered, validated stream events.

    ``wants(kind, topic)`` tells whether anything listens for a topic; streams nobody wants
    are dropped at the header and cost nothing afterwards.
    """

    def __init__(
        self,
        wants: Callable[[StreamKind, str], bool],
        limits: StreamLimits | None = None,
    ) -> None:
        self._wants = wants
        self.limits = limits or StreamLimits()
        self._open: dict[str, _OpenStream] = {}

    # -- queries ---------------------------------------------------------------------------

    @property
    def open_stream_ids(self) -> list[str]:
        return list(self._open)

    def next_deadline(self) -> float | None:
        """Monotonic time at which the oldest idle stream expires, if any stream is open."""
        if not self._open:
            return None
        return min(s.last_activity for s in self._open.values()) + self.limits.idle_timeout

    # -- inputs ----------------------------------------------------------------------------

    def receive(
        self, packet: DataPacket, *, encryption_type: int = 0, now: float = 0.0
    ) -> list[StreamEvent]:
        """Feed one header, chunk or trailer sent by ``packet.participant_identity``."""
        which = packet.WhichOneof("value")
        sender = packet.participant_identity
        if which == "stream_header":
            return self._on_header(packet.stream_header, sender, encryption_type, now)
        if which == "stream_chunk":
            return self._on_chunk(packet.stream_chunk, sender, encryption_type, now)
        if which == "stream_trailer":
            return self._on_trailer(packet.stream_trailer, sender, encryption_type)
        return []

    def sender_left(self, identity: str) -> list[StreamEvent]:
        """Fail every unfinished stream from a participant who left."""
        message = f"Participant {identity} unexpectedly disconnected in the middle of sending data"
        ids = [sid for sid, s in self._open.items() if s.sender == identity]
        return [self._fail(sid, R.ABNORMAL_END, message) for sid in ids]

    def expire(self, now: float) -> list[StreamEvent]:
        """Fail streams that have gone ``idle_timeout`` seconds without a packet."""
        limit = self.limits.idle_timeout
        ids = [sid for sid, s in self._open.items() if now - s.last_activity >= limit]
        return [
            self._fail(sid, R.IDLE_TIMEOUT, f"no data for {limit:g} s; stream abandoned")
            for sid in ids
        ]

    def close(self) -> list[StreamEvent]:
        """Fail every unfinished stream: the local side is disconnecting."""
        message = "Room disconnected in the middle of receiving data"
        return [self._fail(sid, R.ABNORMAL_END, message) for sid in list(self._open)]

    # -- header ----------------------------------------------------------------------------

    def _on_header(
        self, header: DataStream.Header, sender: str, encryption_type: int, now: float
    ) -> list[StreamEvent]:
        content = header.WhichOneof("content_header")
        if content is None:
            logger.warning("stream %s: header has neither text nor byte header", header.stream_id)
            return []
        kind: StreamKind = "text" if content == "text_header" else "bytes"
        if not self._wants(kind, header.topic):
            logger.debug("no %s stream handler for topic %r; dropped", kind, header.topic)
            return []
        if not header.stream_id:
            logger.warning("stream header from %s without a stream id; dropped", sender)
            return []
        if header.stream_id in self._open:
            # Checked first: events are keyed by stream id, so no other stream (inline or
            # refused) may reuse the id of one still open.
            logger.warning(
                "stream %s from %s is already in progress; second header dropped",
                header.stream_id,
                sender,
            )
            return []
        info = _info(header, kind, encryption_type)
        total = header.total_length if header.HasField("total_length") else None
        opened = StreamOpened(kind, info, sender)

        unsupported = _unsupported_compression(header.compression, total)
        if unsupported is not None:
            logger.warning("stream %s: %s", info.stream_id, unsupported)
            error = DataStreamError(R.UNSUPPORTED_COMPRESSION, unsupported)
            return [opened, StreamFailed(info.stream_id, error)]
        if header.HasField("inline_content"):
            return [opened, *self._inline(header, kind, info, total)]

        if sum(1 for s in self._open.values() if s.sender == sender) >= (
            self.limits.max_open_streams_per_sender
        ):
            logger.warning(
                "too many open streams from %s; stream %s refused", sender, header.stream_id
            )
            error = DataStreamError(
                R.TOO_MANY_STREAMS,
                f"sender has {self.limits.max_open_streams_per_sender} unfinished streams",
            )
            return [opened, StreamFailed(info.stream_id, error)]

        state = _OpenStream(kind, info, sender, encryption_type, total, now)
        if header.compression != c.COMPRESSION_NONE:
            state.decompressor = Decompressor(header.compression, self.limits.max_stream_bytes)
        if kind == "text":
            state.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._open[info.stream_id] = state
        return [opened]

    def _inline(
        self, header: DataStream.Header, kind: StreamKind, info: StreamInfo, total: int | None
    ) -> list[StreamEvent]:
        sid = info.stream_id
        data = header.inline_content
        try:
            if header.compression != c.COMPRESSION_NONE:
                data = decompress_whole(header.compression, data, self.limits.max_stream_bytes)
            elif len(data) > self.limits.max_stream_bytes:
                raise DecompressedTooLargeError("inline payload over the stream cap")
        except DecompressedTooLargeError as exc:
            return [StreamFailed(sid, DataStreamError(R.PAYLOAD_TOO_LARGE, _too_large(exc)))]
        except CompressionError as exc:
            return [StreamFailed(sid, DataStreamError(R.CORRUPT_COMPRESSION, str(exc)))]
        if total:
            if len(data) > total:
                return [StreamFailed(sid, _length_exceeded(len(data), total))]
            if len(data) < total:
                return [StreamFailed(sid, _incomplete(len(data), total))]
        content: str | bytes = data
        if kind == "text":
            try:
                content = data.decode()
            except UnicodeDecodeError as exc:
                return [StreamFailed(sid, DataStreamError(R.DECODE_FAILED, str(exc)))]
        return [StreamData(sid, content), StreamEnded(sid, dict(info.attributes))]

    # -- chunk -----------------------------------------------------------------------------

    def _on_chunk(
        self, chunk: DataStream.Chunk, sender: str, encryption_type: int, now: float
    ) -> list[StreamEvent]:
        sid = chunk.stream_id
        state = self._open.get(sid)
        if state is None:
            logger.debug("chunk for unknown stream %s; dropped", sid)
            return []
        if sender != state.sender:
            logger.warning("chunk for stream %s from %s, not its sender; dropped", sid, sender)
            return []
        if encryption_type != state.encryption_type:
            return [self._fail(sid, R.ENCRYPTION_TYPE_MISMATCH, "Encryption type mismatch")]
        index = chunk.chunk_index
        if index < state.next_index:  # a replay is not progress: it does not reset idleness
            logger.warning("stream %s: duplicate chunk %d dropped", sid, index)
            return []
        state.last_activity = now
        if index > state.next_index:
            return [
                self._fail(sid, R.INCOMPLETE, f"Missing chunk(s) {state.next_index}..{index - 1}")
            ]
        state.next_index += 1
        content = chunk.content
        if not content:
            return []
        state.wire_bytes += len(content)
        if state.wire_bytes > self.limits.max_stream_bytes:
            return [self._fail(sid, R.PAYLOAD_TOO_LARGE, _TOO_LARGE)]
        if state.decompressor is None:
            return self._deliver(state, [content])
        try:
            pieces = state.decompressor.feed(content)
        except DecompressedTooLargeError as exc:
            return [self._fail(sid, R.PAYLOAD_TOO_LARGE, _too_large(exc))]
        except CompressionError as exc:
            return [self._fail(sid, R.CORRUPT_COMPRESSION, str(exc))]
        return self._deliver(state, pieces)

    def _deliver(self, state: _OpenStream, pieces: list[bytes]) -> list[StreamEvent]:
        sid = state.info.stream_id
        events: list[StreamEvent] = []
        for piece in pieces:
            state.received += len(piece)
            if state.total_length and state.received > state.total_length:
                return [self._fail_error(sid, _length_exceeded(state.received, state.total_length))]
            if state.received > self.limits.max_stream_bytes:
                return [self._fail(sid, R.PAYLOAD_TOO_LARGE, _TOO_LARGE)]
            if state.decoder is None:
                events.append(StreamData(sid, piece))
                continue
            try:
                text = state.decoder.decode(piece)
            except UnicodeDecodeError as exc:
                return [self._fail(sid, R.DECODE_FAILED, f"invalid UTF-8: {exc.reason}")]
            if text:
                events.append(StreamData(sid, text))
        return events

    # -- trailer ---------------------------------------------------------------------------

    def _on_trailer(
        self, trailer: DataStream.Trailer, sender: str, encryption_type: int
    ) -> list[StreamEvent]:
        sid = trailer.stream_id
        state = self._open.get(sid)
        if state is None:
            logger.debug("trailer for unknown stream %s; dropped", sid)
            return []
        if sender != state.sender:
            logger.warning("trailer for stream %s from %s, not its sender; dropped", sid, sender)
            return []
        if encryption_type != state.encryption_type:
            return [self._fail(sid, R.ENCRYPTION_TYPE_MISMATCH, "Encryption type mismatch")]
        attributes = {**state.info.attributes, **trailer.attributes}
        state.info = replace(state.info, attributes=attributes)
        if trailer.reason:
            return [self._fail(sid, R.ABNORMAL_END, f"Stream closed abnormally: {trailer.reason}")]
        events: list[StreamEvent] = []
        if state.decompressor is not None:
            try:
                state.decompressor.finish()
            except CompressionError as exc:
                return [self._fail(sid, R.CORRUPT_COMPRESSION, str(exc))]
        if state.decoder is not None:
            try:
                state.decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                return [self._fail(sid, R.DECODE_FAILED, "stream ends inside a UTF-8 character")]
        if state.total_length and state.received < state.total_length:
            return [self._fail_error(sid, _incomplete(state.received, state.total_length))]
        del self._open[sid]
        events.append(StreamEnded(sid, attributes))
        return events

    # -- helpers ---------------------------------------------------------------------------

    def _fail(self, sid: str, reason: DataStreamErrorReason, message: str) -> StreamFailed:
        return self._fail_error(sid, DataStreamError(reason, message))

    def _fail_error(self, sid: str, error: DataStreamError) -> StreamFailed:
        self._open.pop(sid, None)
        logger.warning("stream %s failed: %s", sid, error.message)
        return StreamFailed(sid, error)


def _info(header: DataStream.Header, kind: StreamKind, encryption_type: int) -> StreamInfo:
    common = dict(
        stream_id=header.stream_id,
        mime_type=header.mime_type,
        topic=header.topic,
        timestamp=header.timestamp,
        size=header.total_length or None,
        attributes=dict(header.attributes),
        encryption_type=encryption_type,
    )
    if kind == "text":
        th = header.text_header
        return TextStreamInfo(
            **common,  # type: ignore[arg-type]
            attachments=list(th.attached_stream_ids),
            reply_to_id=th.reply_to_stream_id,
            version=th.version,
            operation_type=th.operation_type,
            generated=th.generated,
        )
    return ByteStreamInfo(**common, name=header.byte_header.name)  # type: ignore[arg-type]


def _unsupported_compression(compression: int, total_length: int | None) -> str | None:
    """Why a header's compression cannot be read, or None if it can."""
    if compression not in SUPPORTED_COMPRESSIONS:
        return f"unknown compression {compression}"
    if compression == c.COMPRESSION_LKRPC_ZSTD and total_length is None:
        # Truncation of a zstd stream shows only against total_length, so it is required.
        return "zstd stream without total_length"
    return None


def _too_large(exc: Exception) -> str:
    return f"Stream exceeds the maximum payload size ({exc})"


def _length_exceeded(received: int, total: int) -> DataStreamError:
    return DataStreamError(
        R.LENGTH_EXCEEDED, f"Extra chunk(s) received: {received} bytes of {total} expected"
    )


def _incomplete(received: int, total: int) -> DataStreamError:
    return DataStreamError(
        R.INCOMPLETE, f"Not enough chunk(s) received: {received} bytes of {total} expected"
    )
