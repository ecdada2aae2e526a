"""endpoint.py: routing, and bad input from the wire — logged, contained, reported to callers."""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable

import pytest

from livekit_rpc import RpcEndpoint, RpcError, RpcInvocationData, StreamLimits
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.packets import DataPacket, rpc_ack_packet

from .bridge import Bridge
from .helpers import V1, V2_ALL, Wire, chunk, directory, header, settle, stamped, trailer

E = RpcError.ErrorCode
MB = 1 << 20


def echo(data: RpcInvocationData) -> str:
    return data.payload


@pytest.fixture
async def bridge():  # type: ignore[no-untyped-def]
    room = Bridge()
    yield room
    await room.aclose()


def request_of(packet: DataPacket, method: str) -> bool:
    return (
        packet.WhichOneof("value") == "stream_header"
        and packet.stream_header.topic == c.RPC_REQUEST_TOPIC
        and packet.stream_header.attributes.get(c.ATTR_METHOD) == method
    )


def mangle_attribute(key: str, value: str | None) -> Callable[[DataPacket], None]:
    def apply(packet: DataPacket) -> None:
        if value is None:
            del packet.stream_header.attributes[key]
        else:
            packet.stream_header.attributes[key] = value

    return apply


def mangle_content(compression: int, content: bytes) -> Callable[[DataPacket], None]:
    def apply(packet: DataPacket) -> None:
        packet.stream_header.compression = compression  # type: ignore[assignment]
        packet.stream_header.inline_content = content
        packet.stream_header.total_length = 10

    return apply


MALFORMED = "RPC data stream malformed"
UNREADABLE = "Error reading RPC request payload"


@pytest.mark.parametrize(
    ("mangle", "data", "warning"),
    [
        (mangle_attribute(c.ATTR_RESPONSE_TIMEOUT_MS, "soon"), MALFORMED, "malformed RPC request"),
        (mangle_attribute(c.ATTR_VERSION, None), MALFORMED, "malformed RPC request"),
        (mangle_attribute(c.ATTR_METHOD, None), MALFORMED, "malformed RPC request"),
        (mangle_content(99, b"??"), UNREADABLE, "unknown compression 99"),
        (mangle_content(c.COMPRESSION_DEFLATE_RAW, b"\xff" * 9), UNREADABLE, "corrupt deflate"),
        (mangle_content(c.COMPRESSION_LKRPC_ZSTD, b"\xff" * 9), UNREADABLE, "corrupt zstd"),
        (mangle_content(c.COMPRESSION_NONE, b"bad \xff utf8"), UNREADABLE, "invalid start byte"),
    ],
    ids=[
        "non-numeric-timeout",
        "missing-version",
        "missing-method",
        "unknown-compression",
        "corrupt-deflate",
        "corrupt-zstd",
        "invalid-utf8",
    ],
)
async def test_bad_request_reaches_the_caller_as_1500_and_spares_other_calls(
    bridge: Bridge,
    caplog: pytest.LogCaptureFixture,
    mangle: Callable[[DataPacket], None],
    data: str,
    warning: str,
) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    bob.server.register_rpc_method("victim", echo)
    gate = asyncio.Event()

    async def slow_echo(data: RpcInvocationData) -> str:
        await gate.wait()
        return data.payload

    bob.server.register_rpc_method("echo", slow_echo)

    def tamper(sender: str, packet: DataPacket) -> DataPacket:
        if request_of(packet, "victim"):
            mangle(packet)
        return packet

    bridge.tamper = tamper
    other = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="bob", method="echo", payload="unharmed")
    )
    await settle()
    with caplog.at_level(logging.WARNING):
        with pytest.raises(RpcError) as caught:
            await alice.client.perform_rpc(
                destination_identity="bob", method="victim", payload="x" * 100
            )
    assert (caught.value.code, caught.value.data) == (E.APPLICATION_ERROR, data)
    assert warning in caplog.text
    gate.set()
    assert await other == "unharmed"


async def test_decompression_bomb_reaches_the_caller_as_1500(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", limits=StreamLimits(max_stream_bytes=64 * 1024))
    bob.server.register_rpc_method("echo", echo)
    assert await alice.client.perform_rpc(destination_identity="bob", method="echo", payload="ok")
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(destination_identity="bob", method="echo", payload="0" * MB)
    assert (caught.value.code, caught.value.data) == (E.APPLICATION_ERROR, UNREADABLE)
    first = bridge.sent_by("alice")[-1]
    assert first.stream_header.compression == c.COMPRESSION_LKRPC_ZSTD  # a small inline bomb


def gigabyte_bomb() -> bytes:
    codec = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MB)
    block = codec.compress(zeros) + codec.flush(zlib.Z_FULL_FLUSH)
    return block * 1023 + codec.compress(zeros) + codec.flush()


async def test_gigabyte_deflate_bomb_in_a_request_stream(caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    bob = RpcEndpoint(
        peers=directory(alice=V2_ALL),
        send_packet=wire.send,
        limits=StreamLimits(max_stream_bytes=MB),
    )
    bob.server.register_rpc_method("echo", echo)
    attributes = {
        c.ATTR_REQUEST_ID: "bomb",
        c.ATTR_METHOD: "echo",
        c.ATTR_RESPONSE_TIMEOUT_MS: "10000",
        c.ATTR_VERSION: "2",
    }
    bob.handle_bytes(
        header(
            "s",
            topic=c.RPC_REQUEST_TOPIC,
            attributes=attributes,
            compression=c.COMPRESSION_DEFLATE_RAW,
        ).SerializeToString()
    )
    bomb = gigabyte_bomb()
    for index, start in enumerate(range(0, len(bomb), 15000)):
        bob.handle_bytes(chunk("s", index, bomb[start : start + 15000]).SerializeToString())
    bob.handle_bytes(trailer("s").SerializeToString())
    await settle(20)
    kinds = [
        (p.WhichOneof("value"), p.rpc_response.error.code if p.HasField("rpc_response") else 0)
        for p in wire.packets
    ]
    assert kinds == [("rpc_ack", 0), ("rpc_response", E.APPLICATION_ERROR)]
    assert "maximum payload size" in caplog.text
    assert bob.streams_in._assembler.open_stream_ids == []
    await bob.aclose()


async def test_malformed_bytes_are_dropped_with_a_warning(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    gate = asyncio.Event()

    async def slow_echo(data: RpcInvocationData) -> str:
        await gate.wait()
        return data.payload

    bob.server.register_rpc_method("echo", slow_echo)
    call = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="bob", method="echo", payload="fine")
    )
    await settle()
    for garbage in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x62\x80", b"\x08"):
        alice.handle_bytes(garbage)
        bob.handle_bytes(garbage)
    assert caplog.text.count("malformed DataPacket") == 8
    gate.set()
    assert await call == "fine"


async def test_encrypted_and_empty_packets_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    bob = RpcEndpoint(peers=directory(), send_packet=wire.send)
    packet = DataPacket()
    packet.encrypted_packet.encrypted_value = b"\x01"
    bob.handle_packet(stamped(packet, "alice"))
    bob.handle_bytes(b"")  # a DataPacket with nothing set
    assert "E2EE is not set up" in caplog.text
    assert wire.packets == []
    await bob.aclose()


async def test_routing_errors_never_escape(caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    bob = RpcEndpoint(peers=directory(), send_packet=wire.send)

    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    bob.client.handle_ack = broken  # type: ignore[method-assign]
    bob.handle_packet(stamped(rpc_ack_packet(request_id="x", destination="bob"), "alice"))
    assert "unexpected error while routing a rpc_ack packet" in caplog.text
    await bob.aclose()


async def test_second_header_for_an_open_request_stream(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wire = Wire()
    bob = RpcEndpoint(peers=directory(alice=V1), send_packet=wire.send)
    seen: list[str] = []
    bob.server.register_rpc_method("m", lambda data: seen.append(data.payload) or "ok")  # type: ignore[func-returns-value]
    attributes = {
        c.ATTR_REQUEST_ID: "r1",
        c.ATTR_METHOD: "m",
        c.ATTR_RESPONSE_TIMEOUT_MS: "8000",
        c.ATTR_VERSION: "2",
    }
    first = header("s", topic=c.RPC_REQUEST_TOPIC, attributes=attributes)
    bob.handle_bytes(first.SerializeToString())
    await settle()
    bob.handle_bytes(first.SerializeToString())
    bob.handle_bytes(chunk("s", 0, b"payload").SerializeToString())
    bob.handle_bytes(trailer("s").SerializeToString())
    await settle(20)
    assert "already in progress" in caplog.text
    assert seen == ["payload"]
    assert [p.WhichOneof("value") for p in wire.packets].count("rpc_ack") == 1
    await bob.aclose()


async def test_chunks_and_trailers_for_unknown_streams(caplog: pytest.LogCaptureFixture) -> None:
    # Logged at debug level: a sender keeps sending after a stream failed here, and one
    # warning per chunk would flood the log.
    wire = Wire()
    bob = RpcEndpoint(peers=directory(), send_packet=wire.send)
    with caplog.at_level(logging.DEBUG, logger="livekit_rpc"):
        bob.handle_bytes(chunk("nobody", 0, b"x").SerializeToString())
        bob.handle_bytes(trailer("nobody").SerializeToString())
    assert "chunk for unknown stream nobody" in caplog.text
    assert "trailer for unknown stream nobody" in caplog.text
    assert wire.packets == []
    await bob.aclose()


async def test_response_from_the_wrong_sender_is_logged(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", client_protocol=0, capabilities=())
    mallory = bridge.join("mallory")
    gate = asyncio.Event()

    async def slow(data: RpcInvocationData) -> str:
        await gate.wait()
        return "real"

    bob.server.register_rpc_method("m", slow)
    call = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="bob", method="m", payload="")
    )
    await settle()
    (request_id,) = alice.client._calls
    await mallory.streams_out.send_text(
        "forged",
        topic=c.RPC_RESPONSE_TOPIC,
        destination_identities=["alice"],
        attributes={c.ATTR_REQUEST_ID: request_id},
    )
    await settle()
    assert "from mallory, but the call went to bob" in caplog.text
    gate.set()
    assert await call == "real"


async def test_too_many_open_request_streams(caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    bob = RpcEndpoint(
        peers=directory(alice=V1),
        send_packet=wire.send,
        limits=StreamLimits(max_open_streams_per_sender=2),
    )
    bob.server.register_rpc_method("m", echo)
    for n in range(3):
        attributes = {
            c.ATTR_REQUEST_ID: f"r{n}",
            c.ATTR_METHOD: "m",
            c.ATTR_RESPONSE_TIMEOUT_MS: "8000",
            c.ATTR_VERSION: "2",
        }
        bob.handle_bytes(
            header(f"s{n}", topic=c.RPC_REQUEST_TOPIC, attributes=attributes).SerializeToString()
        )
    await settle(20)
    errors = [p.rpc_response for p in wire.packets if p.WhichOneof("value") == "rpc_response"]
    assert [(e.request_id, e.error.code, e.error.data) for e in errors] == [
        ("r2", E.APPLICATION_ERROR, UNREADABLE)
    ]
    assert "too many open streams from alice" in caplog.text
    # The first two are still open and complete normally.
    for n in range(2):
        bob.handle_bytes(chunk(f"s{n}", 0, b"ok").SerializeToString())
        bob.handle_bytes(trailer(f"s{n}").SerializeToString())
    await settle(20)
    assert len([p for p in wire.packets if p.WhichOneof("value") == "stream_header"]) == 2
    await bob.aclose()


async def test_idle_request_stream_times_out(caplog: pytest.LogCaptureFixture) -> None:
    wire = Wire()
    bob = RpcEndpoint(
        peers=directory(alice=V1),
        send_packet=wire.send,
        limits=StreamLimits(idle_timeout=0.05),
    )
    bob.server.register_rpc_method("m", echo)
    attributes = {
        c.ATTR_REQUEST_ID: "r1",
        c.ATTR_METHOD: "m",
        c.ATTR_RESPONSE_TIMEOUT_MS: "8000",
        c.ATTR_VERSION: "2",
    }
    bob.handle_bytes(
        header("s", topic=c.RPC_REQUEST_TOPIC, attributes=attributes).SerializeToString()
    )
    bob.handle_bytes(chunk("s", 0, b"half").SerializeToString())
    await asyncio.sleep(0.05)
    for _ in range(100):
        if wire.of_kind("rpc_response"):
            break
        await asyncio.sleep(0.01)
    errors = [p.rpc_response for p in wire.packets if p.WhichOneof("value") == "rpc_response"]
    assert [(e.request_id, e.error.code, e.error.data) for e in errors] == [
        ("r1", E.APPLICATION_ERROR, UNREADABLE)
    ]
    assert "stream abandoned" in caplog.text
    await bob.aclose()


async def test_participant_leaving_fails_its_streams_then_its_calls(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", client_protocol=1, capabilities=())
    gate = asyncio.Event()
    readers = []

    async def slow(data: RpcInvocationData) -> str:
        await gate.wait()
        return ""

    bob.server.register_rpc_method("m", slow)
    alice.streams_in.register_byte_stream_handler("files", lambda r, s: readers.append(r))
    writer = await bob.streams_out.stream_bytes(destination_identities=["alice"], topic="files")
    await writer.write(b"partial")
    call = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="bob", method="m", payload="")
    )
    await settle()
    await bridge.leave("bob")
    with pytest.raises(RpcError) as caught:
        await call
    assert caught.value.code == E.RECIPIENT_DISCONNECTED
    with pytest.raises(Exception, match="unexpectedly disconnected"):
        await readers[0].read_all()
