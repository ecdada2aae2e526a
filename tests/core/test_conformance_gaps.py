"""Spec requirements not covered elsewhere: R2, C5, C8, P7, P9, P15, P16, P24."""

from __future__ import annotations

import asyncio
import random

import pytest

from livekit_rpc import DataStreamError, DataStreamErrorReason, RpcError, StreamLimits
from livekit_rpc.rpc.types import RpcInvocationData
from livekit_rpc.streams.assembler import StreamAssembler, StreamFailed
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.compression import compress
from livekit_rpc.wire.packets import DataPacket, rpc_ack_packet, rpc_response_packet

from .helpers import V2_ALL, chunk, endpoint, header, settle, stamped, trailer

RPC_ATTRS = {
    c.ATTR_REQUEST_ID: "req-1",
    c.ATTR_METHOD: "m",
    c.ATTR_RESPONSE_TIMEOUT_MS: "10000",
    c.ATTR_VERSION: "2",
}


async def test_r2_pre_connect_buffer_is_discarded_on_local_disconnect() -> None:
    ep, _ = endpoint(bob=V2_ALL)
    received: list[str] = []
    ep.streams_in.register_text_stream_handler("t", lambda reader, sender: received.append(sender))
    ep.streams_in.set_connected(False)
    ep.handle_packet(header(inline=b"hi", total_length=2, sender="bob"))
    await ep.aclose()
    ep.streams_in.set_connected(True)
    await settle()
    assert received == []


def test_c5_zstd_checksum_mismatch_fails_the_stream() -> None:
    data = compress(c.COMPRESSION_LKRPC_ZSTD, b"sensor reading " * 2000)
    corrupt = bytearray(data)
    corrupt[len(corrupt) // 2] ^= 0x55
    assembler = StreamAssembler(lambda kind, topic: True)
    events = assembler.receive(
        header(
            compression=c.COMPRESSION_LKRPC_ZSTD,
            total_length=30_000,
            inline=bytes(corrupt),
        )
    )
    failure = events[-1]
    assert isinstance(failure, StreamFailed)
    assert failure.error.reason is DataStreamErrorReason.CORRUPT_COMPRESSION


def test_c8_compressed_input_counts_against_the_stream_limit() -> None:
    limits = StreamLimits(max_stream_bytes=20_000)
    assembler = StreamAssembler(lambda kind, topic: True, limits)
    wire = compress(c.COMPRESSION_DEFLATE_RAW, random.Random(7).randbytes(30_000))
    assembler.receive(header(compression=c.COMPRESSION_DEFLATE_RAW, kind="bytes"))
    events = []
    for index, start in enumerate(range(0, len(wire), 15_000)):
        events += assembler.receive(chunk(index=index, content=wire[start : start + 15_000]))
    failures = [e for e in events if isinstance(e, StreamFailed)]
    assert [f.error.reason for f in failures] == [DataStreamErrorReason.PAYLOAD_TOO_LARGE]
    assert assembler.open_stream_ids == []


async def test_p7_response_stream_without_pending_call_is_not_read() -> None:
    ep, _ = endpoint(bob=V2_ALL)
    reads: list[str] = []
    reader_seen = asyncio.Event()

    original = ep.client.handle_response_stream

    async def spy(reader, sender):  # type: ignore[no-untyped-def]
        reader_seen.set()
        original(reader, sender)
        reads.append("done" if reader._pieces else "unread")

    ep.streams_in.unregister_text_stream_handler(c.RPC_RESPONSE_TOPIC)
    ep.streams_in.register_text_stream_handler(c.RPC_RESPONSE_TOPIC, spy)
    ep.handle_packet(
        header(
            topic=c.RPC_RESPONSE_TOPIC,
            attributes={c.ATTR_REQUEST_ID: "nobody-asked"},
            inline=b"payload",
            total_length=7,
            sender="bob",
        )
    )
    await asyncio.wait_for(reader_seen.wait(), 1)
    await settle()
    assert reads == ["done"]  # the content is left in the reader: nothing consumed it
    await ep.aclose()


async def test_p9_response_before_ack_completes_the_call() -> None:
    ep, wire = endpoint(bob=(c.CLIENT_PROTOCOL_DEFAULT, ()))
    call = asyncio.create_task(
        ep.client.perform_rpc(destination_identity="bob", method="m", payload="x")
    )
    await settle()
    request_id = wire.of_kind("rpc_request")[0].rpc_request.id
    ep.handle_packet(
        stamped(rpc_response_packet(request_id=request_id, payload="ok", destination=""), "bob")
    )
    assert await asyncio.wait_for(call, 1) == "ok"
    ep.handle_packet(stamped(rpc_ack_packet(request_id=request_id, destination=""), "bob"))
    assert ep.client.pending_calls == 0
    await ep.aclose()


async def test_p15_unknown_v2_method_is_answered_before_the_payload_arrives() -> None:
    ep, wire = endpoint(bob=V2_ALL)
    ep.handle_packet(header(topic=c.RPC_REQUEST_TOPIC, attributes=RPC_ATTRS, sender="bob"))
    await settle()
    # Only the header has arrived (no chunk, no trailer): the error is already out.
    errors = [p.rpc_response.error for p in wire.of_kind("rpc_response")]
    assert [e.code for e in errors] == [1400]
    assert wire.kinds()[0] == "rpc_ack"
    ep.handle_packet(trailer(sender="bob"))
    await ep.aclose()


async def test_p16_method_unregistered_while_payload_arrives_gets_1400() -> None:
    ep, wire = endpoint(bob=V2_ALL)
    called: list[RpcInvocationData] = []
    ep.server.register_rpc_method("m", called.append)  # type: ignore[arg-type]
    ep.handle_packet(header(topic=c.RPC_REQUEST_TOPIC, attributes=RPC_ATTRS, sender="bob"))
    await settle()
    ep.server.unregister_rpc_method("m")
    ep.handle_packet(chunk(content=b"payload", sender="bob"))
    ep.handle_packet(trailer(sender="bob"))
    await settle()
    assert called == []
    assert [p.rpc_response.error.code for p in wire.of_kind("rpc_response")] == [1400]
    await ep.aclose()


@pytest.mark.parametrize("topic", [c.RPC_REQUEST_TOPIC, c.RPC_RESPONSE_TOPIC])
async def test_p24_rpc_topics_are_reserved(topic: str) -> None:
    ep, _ = endpoint()
    with pytest.raises(DataStreamError) as caught:
        ep.streams_in.register_text_stream_handler(topic, lambda reader, sender: None)
    assert caught.value.reason is DataStreamErrorReason.HANDLER_ALREADY_REGISTERED
    await ep.aclose()


async def test_acks_and_responses_without_a_sender_are_ignored() -> None:
    ep, wire = endpoint(bob=(c.CLIENT_PROTOCOL_DEFAULT, ()))
    call = asyncio.create_task(
        ep.client.perform_rpc(
            destination_identity="bob", method="m", payload="x", response_timeout=0.2
        )
    )
    await settle()
    request_id = wire.of_kind("rpc_request")[0].rpc_request.id
    unsigned = DataPacket()
    unsigned.rpc_response.request_id = request_id
    unsigned.rpc_response.payload = "forged"
    ep.handle_packet(unsigned)
    with pytest.raises(RpcError) as caught:
        await call
    assert caught.value.code == 1502
    await ep.aclose()


@pytest.mark.parametrize("failed", [False, True])
async def test_v2_response_stream_settles_the_call_in_the_turn_it_ends(failed: bool) -> None:
    """No task reads a response stream: the call is settled while its last packet is handled."""
    from livekit_rpc.rpc.client import CallState

    ep, wire = endpoint(bob=V2_ALL)
    task = asyncio.create_task(
        ep.client.perform_rpc(destination_identity="bob", method="m", payload="x")
    )
    await settle()
    request_id = wire.of_kind("stream_header")[0].stream_header.attributes[c.ATTR_REQUEST_ID]
    ep.handle_packet(stamped(rpc_ack_packet(request_id=request_id, destination=""), "bob"))
    attributes = {c.ATTR_REQUEST_ID: request_id}
    ep.handle_packet(header(topic=c.RPC_RESPONSE_TOPIC, attributes=attributes, sender="bob"))
    ep.handle_packet(chunk(content=b"he", sender="bob"))
    call = ep.client._calls[request_id]
    assert call.state is not CallState.DONE  # the stream has not ended yet
    if failed:
        ep.handle_packet(chunk(content=b"llo", index=5, sender="bob"))  # a gap fails it
    else:
        ep.handle_packet(chunk(content=b"llo", index=1, sender="bob"))
        ep.handle_packet(trailer(sender="bob"))
    assert call.state is CallState.DONE  # no turn of the event loop in between
    if failed:
        with pytest.raises(RpcError) as caught:
            await task
        assert caught.value.code == 1500
    else:
        assert await task == "hello"
    await ep.aclose()
