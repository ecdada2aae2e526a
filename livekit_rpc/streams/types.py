"""Stream descriptions, limits and errors shared by the sending and receiving sides."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class DataStreamErrorReason(enum.IntEnum):
    """Why a data stream failed. Values 0–10 match LiveKit's SDKs; 100+ are local to us."""

    ALREADY_OPENED = 0
    ABNORMAL_END = 1
    DECODE_FAILED = 2
    LENGTH_EXCEEDED = 3
    INCOMPLETE = 4
    HANDLER_ALREADY_REGISTERED = 7
    ENCRYPTION_TYPE_MISMATCH = 8
    HEADER_TOO_LARGE = 9
    PAYLOAD_TOO_LARGE = 10
    UNSUPPORTED_COMPRESSION = 100
    CORRUPT_COMPRESSION = 101
    IDLE_TIMEOUT = 102
    TOO_MANY_STREAMS = 103


class DataStreamError(Exception):
    """A data stream could not be sent or received."""

    def __init__(self, reason: DataStreamErrorReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"DataStreamError({self.reason.name}, {self.message!r})"


@dataclass(frozen=True)
class BaseStreamInfo:
    """What a stream header says about a stream."""

    stream_id: str
    mime_type: str
    topic: str
    timestamp: int
    """Milliseconds since the Unix epoch when the sender opened the stream."""
    size: int | None
    """Uncompressed length in bytes when the sender knew it (and it is non-zero)."""
    attributes: dict[str, str] = field(default_factory=dict)
    encryption_type: int = 0


@dataclass(frozen=True)
class TextStreamInfo(BaseStreamInfo):
    """Description of a text stream."""

    attachments: list[str] = field(default_factory=list)
    """Ids of byte streams attached to this text (``attached_stream_ids``)."""
    reply_to_id: str = ""
    version: int = 0
    operation_type: int = 0
    generated: bool = False


@dataclass(frozen=True)
class ByteStreamInfo(BaseStreamInfo):
    """Description of a byte stream."""

    name: str = ""


@dataclass(frozen=True)
class StreamLimits:
    """Bounds on what a remote peer can make the receiving side hold.

    LiveKit's SDKs cap only the decompressed size of compressed streams (5 GB by default);
    this library bounds every stream, compressed or not.
    """

    max_stream_bytes: int = 512 * 1024 * 1024
    """Largest payload of one incoming stream, after decompression; also caps compressed input."""
    max_open_streams_per_sender: int = 64
    """Unfinished chunked streams one sender may have open at once."""
    idle_timeout: float = 60.0
    """Seconds an unfinished stream may go without a packet before it is failed."""
    max_pending_packets: int = 10_000
    """Stream packets buffered while the room is not yet connected."""
