"""Numbers and names that travel on the wire, shared with LiveKit's SDKs."""

from __future__ import annotations

from typing import Final

# Protocol levels advertised in ClientInfo.client_protocol / ParticipantInfo.client_protocol.
CLIENT_PROTOCOL_DEFAULT: Final = 0
CLIENT_PROTOCOL_DATA_STREAM_RPC: Final = 1
CLIENT_PROTOCOL_DATA_STREAM_V2: Final = 2
CLIENT_PROTOCOL: Final = CLIENT_PROTOCOL_DATA_STREAM_V2
"""The level this library advertises."""

SIGNAL_PROTOCOL_VERSION: Final = 17

# ClientInfo.Capability values.
CAP_PACKET_TRAILER: Final = 1
CAP_COMPRESSION_DEFLATE_RAW: Final = 2
# Extension capabilities (spec/spec.md §Extensions). Chosen far above LiveKit's enum range.
CAP_LKRPC_COMPRESSION_ZSTD: Final = 10001
CAP_LKRPC_STREAMING_RPC: Final = 10002

LOCAL_CAPABILITIES: Final[tuple[int, ...]] = (
    CAP_COMPRESSION_DEFLATE_RAW,
    CAP_LKRPC_COMPRESSION_ZSTD,
    CAP_LKRPC_STREAMING_RPC,
)
"""Capabilities this library advertises in its join request."""

# DataStream.CompressionType values.
COMPRESSION_NONE: Final = 0
COMPRESSION_DEFLATE_RAW: Final = 1
COMPRESSION_LKRPC_ZSTD: Final = 10001
"""Extension value, sent only to peers that advertise CAP_LKRPC_COMPRESSION_ZSTD."""

# Encryption types (packet level).
ENCRYPTION_NONE: Final = 0

# RPC.
RPC_VERSION_V1: Final = 1
RPC_VERSION_V2: Final = 2
RPC_REQUEST_TOPIC: Final = "lk.rpc_request"
RPC_RESPONSE_TOPIC: Final = "lk.rpc_response"
ATTR_REQUEST_ID: Final = "lk.rpc_request_id"
ATTR_METHOD: Final = "lk.rpc_request_method"
ATTR_RESPONSE_TIMEOUT_MS: Final = "lk.rpc_request_response_timeout_ms"
ATTR_VERSION: Final = "lk.rpc_request_version"

MAX_V1_PAYLOAD_BYTES: Final = 15360
MAX_ERROR_MESSAGE_BYTES: Final = 256
MAX_ERROR_DATA_BYTES: Final = 15360
ACK_TIMEOUT_S: Final = 7.0
MIN_WIRE_TIMEOUT_MS: Final = 8000
DEFAULT_RESPONSE_TIMEOUT_S: Final = 15.0

# Data streams.
STREAM_CHUNK_SIZE: Final = 15000
"""Maximum Chunk.content length, and the budget for a serialized header packet."""
MAX_DATA_PACKET_BYTES: Final = 64000
TEXT_MIME_TYPE: Final = "text/plain"
BYTES_MIME_TYPE: Final = "application/octet-stream"
DEFAULT_BYTE_STREAM_NAME: Final = "unknown"

# Streaming RPC extension (spec/spec.md, "Streaming RPC"); used only with peers that
# advertise CAP_LKRPC_STREAMING_RPC.
STREAM_CHUNK_TOPIC: Final = "lkrpc.rpc_chunk"
STREAM_CONTROL_TOPIC: Final = "lkrpc.rpc_control"
ATTR_STREAMING: Final = "lkrpc.streaming"
ATTR_WINDOW: Final = "lkrpc.window"
ATTR_REALTIME: Final = "lkrpc.realtime"
ATTR_HEARTBEAT_MS: Final = "lkrpc.heartbeat_ms"
ATTR_DEADLINE_MS: Final = "lkrpc.deadline_ms"
ATTR_SEQ: Final = "lkrpc.seq"
ATTR_OP: Final = "lkrpc.op"
ATTR_CREDIT: Final = "lkrpc.credit"
OP_CREDIT: Final = "credit"
OP_CANCEL: Final = "cancel"
OP_HEARTBEAT: Final = "heartbeat"
DEFAULT_STREAM_WINDOW: Final = 32
DEFAULT_HEARTBEAT_S: Final = 2.0
ATTR_CLIENT_STREAMING: Final = "lkrpc.client_streaming"
OP_END: Final = "end"
OP_ABORT: Final = "abort"
MAX_STREAM_WINDOW: Final = 1024
ATTR_LENGTHS: Final = "lkrpc.lengths"
"""On a chunk message carrying several items: their sizes in bytes, comma-separated."""
