"""Builders for the DataPackets that RPC and data streams put on the wire.

Every message is a ``livekit.protocol.models.DataPacket``; nothing here hand-writes protobuf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from livekit.protocol import models

DataPacket = models.DataPacket
DataStream = models.DataStream


def rpc_request_packet(
    *, request_id: str, method: str, payload: str, response_timeout_ms: int, destination: str
) -> DataPacket:
    """A v1 ``RpcRequest`` addressed to one participant."""
    return DataPacket(
        kind=DataPacket.Kind.RELIABLE,
        destination_identities=[destination],
        rpc_request=models.RpcRequest(
            id=request_id,
            method=method,
            payload=payload,
            response_timeout_ms=response_timeout_ms,
            version=1,
        ),
    )


def rpc_ack_packet(*, request_id: str, destination: str) -> DataPacket:
    """The acknowledgement a server sends as soon as it sees a request."""
    return DataPacket(
        kind=DataPacket.Kind.RELIABLE,
        destination_identities=[destination],
        rpc_ack=models.RpcAck(request_id=request_id),
    )


def rpc_response_packet(*, request_id: str, payload: str, destination: str) -> DataPacket:
    """A successful v1 response; an empty payload still selects the ``payload`` case."""
    response = models.RpcResponse(request_id=request_id)
    response.payload = payload
    return DataPacket(
        kind=DataPacket.Kind.RELIABLE, destination_identities=[destination], rpc_response=response
    )


def rpc_error_packet(*, request_id: str, error: models.RpcError, destination: str) -> DataPacket:
    """An error response. Errors always travel as packets, never as streams."""
    return DataPacket(
        kind=DataPacket.Kind.RELIABLE,
        destination_identities=[destination],
        rpc_response=models.RpcResponse(request_id=request_id, error=error),
    )


def stream_header_packet(
    *,
    stream_id: str,
    timestamp_ms: int,
    topic: str,
    mime_type: str,
    total_length: int | None,
    attributes: Mapping[str, str] | None,
    destinations: Iterable[str],
    compression: int,
    text_header: DataStream.TextHeader | None = None,
    byte_name: str | None = None,
    inline_content: bytes | None = None,
) -> DataPacket:
    """A stream header; exactly one of ``text_header`` / ``byte_name`` must be given."""
    header = DataStream.Header(
        stream_id=stream_id,
        timestamp=timestamp_ms,
        topic=topic,
        mime_type=mime_type,
        attributes=dict(attributes or {}),
        compression=compression,  # type: ignore[arg-type]  # extension values are open enums
    )
    if total_length is not None:
        header.total_length = total_length
    if text_header is not None:
        header.text_header.CopyFrom(text_header)
    else:
        header.byte_header.name = byte_name or ""
    if inline_content is not None:
        header.inline_content = inline_content
    return DataPacket(destination_identities=list(destinations), stream_header=header)


def stream_chunk_packet(
    *, stream_id: str, chunk_index: int, content: bytes, destinations: Iterable[str]
) -> DataPacket:
    """One chunk of a stream."""
    packet = DataPacket(destination_identities=list(destinations))
    # Set in place: building a Chunk first would copy the content a second time.
    chunk = packet.stream_chunk
    chunk.SetInParent()
    chunk.stream_id = stream_id
    chunk.chunk_index = chunk_index
    chunk.content = content
    return packet


def stream_trailer_packet(
    *,
    stream_id: str,
    destinations: Iterable[str],
    reason: str = "",
    attributes: Mapping[str, str] | None = None,
) -> DataPacket:
    """The end of a stream; a non-empty ``reason`` marks an abnormal end."""
    return DataPacket(
        destination_identities=list(destinations),
        stream_trailer=DataStream.Trailer(
            stream_id=stream_id, reason=reason, attributes=dict(attributes or {})
        ),
    )
