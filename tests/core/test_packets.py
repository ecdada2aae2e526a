"""wire/packets.py: the DataPackets RPC and streams put on the wire, down to the bytes."""

from __future__ import annotations

from livekit.protocol import models

from livekit_rpc.streams.framing import text_header
from livekit_rpc.wire.packets import (
    DataPacket,
    rpc_ack_packet,
    rpc_error_packet,
    rpc_request_packet,
    rpc_response_packet,
    stream_chunk_packet,
    stream_header_packet,
    stream_trailer_packet,
)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (payloads here are under 128 bytes)."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_rpc_request_packet_bytes() -> None:
    packet = rpc_request_packet(
        request_id="r1", method="m", payload="p", response_timeout_ms=8000, destination="bob"
    )
    request = (
        field(1, b"r1") + field(2, b"m") + field(3, b"p") + b"\x20\xc0\x3e" + b"\x28\x01"
    )  # response_timeout_ms=8000 (field 4), version=1 (field 5)
    assert packet.SerializeToString() == field(5, b"bob") + field(10, request)
    assert packet.kind == DataPacket.Kind.RELIABLE


def test_rpc_ack_packet_bytes() -> None:
    packet = rpc_ack_packet(request_id="r1", destination="alice")
    assert packet.SerializeToString() == field(5, b"alice") + field(11, field(1, b"r1"))


def test_empty_rpc_response_still_selects_payload() -> None:
    packet = rpc_response_packet(request_id="r1", payload="", destination="alice")
    assert packet.rpc_response.WhichOneof("value") == "payload"
    assert packet.SerializeToString() == field(5, b"alice") + field(
        12, field(1, b"r1") + b"\x12\x00"
    )


def test_rpc_error_packet_bytes() -> None:
    error = models.RpcError(code=1400, message="x", data="")
    packet = rpc_error_packet(request_id="r1", error=error, destination="alice")
    assert packet.rpc_response.WhichOneof("value") == "error"
    inner = b"\x08\xf8\x0a" + field(2, b"x")  # code=1400, message="x", no data
    assert packet.SerializeToString() == field(5, b"alice") + field(
        12, field(1, b"r1") + field(3, inner)
    )


def make_header(**overrides: object) -> DataPacket:
    args: dict[str, object] = dict(
        stream_id="s",
        timestamp_ms=5,
        topic="t",
        mime_type="text/plain",
        total_length=None,
        attributes=None,
        destinations=(),
        compression=0,
        text_header=text_header(),
    )
    args.update(overrides)
    return stream_header_packet(**args)  # type: ignore[arg-type]


def test_header_total_length_zero_is_present_on_the_wire() -> None:
    header = make_header(total_length=0).stream_header
    assert header.HasField("total_length")
    assert b"\x28\x00" in header.SerializeToString()
    assert not make_header().stream_header.HasField("total_length")


def test_header_empty_inline_content_is_present_on_the_wire() -> None:
    header = make_header(inline_content=b"", total_length=0).stream_header
    assert header.HasField("inline_content")
    assert header.SerializeToString().endswith(b"\x5a\x00")
    assert not make_header().stream_header.HasField("inline_content")


def test_header_fields() -> None:
    packet = make_header(
        attributes={"k": "v"}, destinations=("bob", "carol"), compression=10001, total_length=7
    )
    header = packet.stream_header
    assert list(packet.destination_identities) == ["bob", "carol"]
    assert (header.stream_id, header.timestamp, header.topic, header.mime_type) == (
        "s",
        5,
        "t",
        "text/plain",
    )
    assert dict(header.attributes) == {"k": "v"}
    assert header.compression == 10001  # extension values survive the open enum
    assert header.total_length == 7
    assert header.WhichOneof("content_header") == "text_header"
    assert packet.kind == DataPacket.Kind.RELIABLE  # 0: never on the wire
    parsed = DataPacket()
    parsed.ParseFromString(packet.SerializeToString())
    assert parsed.stream_header.compression == 10001


def test_byte_header_name() -> None:
    packet = make_header(text_header=None, byte_name="f.bin")
    assert packet.stream_header.WhichOneof("content_header") == "byte_header"
    assert packet.stream_header.byte_header.name == "f.bin"
    nameless = make_header(text_header=None, byte_name=None)
    assert nameless.stream_header.WhichOneof("content_header") == "byte_header"
    assert nameless.stream_header.byte_header.name == ""


def test_chunk_and_trailer_packets() -> None:
    chunk = stream_chunk_packet(stream_id="s", chunk_index=3, content=b"ab", destinations=["b"])
    assert chunk.SerializeToString() == field(5, b"b") + field(
        14, field(1, b"s") + b"\x10\x03" + field(3, b"ab")
    )
    trailer = stream_trailer_packet(stream_id="s", destinations=[])
    assert trailer.SerializeToString() == field(15, field(1, b"s"))
    aborted = stream_trailer_packet(
        stream_id="s", destinations=[], reason="why", attributes={"a": "b"}
    )
    assert aborted.stream_trailer.reason == "why"
    assert dict(aborted.stream_trailer.attributes) == {"a": "b"}
