"""The zstd extension: used only between peers that advertise it, and bounded when received."""

from __future__ import annotations

import os
import random

import pytest

from livekit_rpc import DataStreamError, RpcInvocationData, StreamLimits, TextStreamReader
from livekit_rpc.streams.types import DataStreamErrorReason as R
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.compression import compress
from livekit_rpc.wire.packets import DataPacket

from .bridge import Bridge
from .helpers import V2_ALL, endpoint, settle
from .helpers import chunk as stream_chunk
from .helpers import header as stream_header
from .helpers import trailer as stream_trailer

NONE, DEFLATE, ZSTD = c.COMPRESSION_NONE, c.COMPRESSION_DEFLATE_RAW, c.COMPRESSION_LKRPC_ZSTD
DEFLATE_ONLY = (c.CAP_COMPRESSION_DEFLATE_RAW,)
ZSTD_CAPS = (c.CAP_COMPRESSION_DEFLATE_RAW, c.CAP_LKRPC_COMPRESSION_ZSTD)
TEXT = "zstd-compressible text " * 200


@pytest.fixture
async def bridge():  # type: ignore[no-untyped-def]
    room = Bridge()
    yield room
    await room.aclose()


def headers(room: Bridge, sender: str, topic: str | None = None) -> list[DataPacket]:
    return [
        p
        for p in room.sent_by(sender)
        if p.WhichOneof("value") == "stream_header"
        and (topic is None or p.stream_header.topic == topic)
    ]


def semi_compressible(size: int) -> str:
    rng = random.Random(5)
    return "".join(rng.choices("abcdefghij ", k=size))


def collect(received: list[str]):  # type: ignore[no-untyped-def]
    async def handler(reader: TextStreamReader, sender: str) -> None:
        received.append(await reader.read_all())

    return handler


async def test_rpc_between_zstd_peers_uses_zstd_both_ways(bridge: Bridge) -> None:
    alice = bridge.join("alice", capabilities=ZSTD_CAPS)
    bob = bridge.join("bob", capabilities=ZSTD_CAPS)
    bob.server.register_rpc_method("echo", lambda data: data.payload)
    assert (
        await alice.client.perform_rpc(destination_identity="bob", method="echo", payload=TEXT)
        == TEXT
    )
    (request,) = headers(bridge, "alice", c.RPC_REQUEST_TOPIC)
    (response,) = headers(bridge, "bob", c.RPC_RESPONSE_TOPIC)
    assert request.stream_header.compression == ZSTD
    assert response.stream_header.compression == ZSTD
    assert request.stream_header.HasField("inline_content")
    assert request.stream_header.total_length == len(TEXT)


async def test_large_chunked_zstd_round_trip(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    bob.server.register_rpc_method("echo", lambda data: data.payload)
    payload = semi_compressible(400_000)
    assert (
        await alice.client.perform_rpc(destination_identity="bob", method="echo", payload=payload)
        == payload
    )
    (request,) = headers(bridge, "alice", c.RPC_REQUEST_TOPIC)
    assert request.stream_header.compression == ZSTD
    assert not request.stream_header.HasField("inline_content")
    chunks = [p for p in bridge.sent_by("alice") if p.WhichOneof("value") == "stream_chunk"]
    assert len(chunks) > 1
    assert all(len(p.stream_chunk.content) <= 15000 for p in chunks)


async def test_broadcast_never_uses_zstd(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    received: list[str] = []
    for name in ("bob", "carol"):
        bridge.join(name).streams_in.register_text_stream_handler("news", collect(received))
    await alice.streams_out.send_text(TEXT, topic="news")
    await settle()
    (header,) = headers(bridge, "alice")
    assert header.stream_header.compression == DEFLATE
    assert received == [TEXT, TEXT]


@pytest.mark.parametrize(
    ("carol_protocol", "carol_caps", "expected"),
    [
        (2, DEFLATE_ONLY, DEFLATE),
        (2, (), NONE),
        (1, ZSTD_CAPS, NONE),  # capabilities count only from protocol 2
        (0, ZSTD_CAPS, NONE),
    ],
)
async def test_any_recipient_without_zstd_means_no_zstd(
    bridge: Bridge, carol_protocol: int, carol_caps: tuple[int, ...], expected: int
) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    carol = bridge.join("carol", client_protocol=carol_protocol, capabilities=carol_caps)
    received: list[str] = []
    for peer in (bob, carol):
        peer.streams_in.register_text_stream_handler("t", collect(received))
    await alice.streams_out.send_text(TEXT, topic="t", destination_identities=["bob", "carol"])
    await alice.streams_out.send_text(TEXT, topic="t", destination_identities=["carol"])
    await alice.streams_out.send_text(TEXT, topic="t", destination_identities=["bob"])
    await settle()
    compressions = [h.stream_header.compression for h in headers(bridge, "alice")]
    assert compressions == [expected, expected, ZSTD]
    assert received == [TEXT] * 4


async def test_rpc_to_a_deflate_only_peer_never_uses_zstd(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", capabilities=DEFLATE_ONLY)
    bob.server.register_rpc_method("echo", lambda data: data.payload)
    assert (
        await alice.client.perform_rpc(destination_identity="bob", method="echo", payload=TEXT)
        == TEXT
    )
    assert [h.stream_header.compression for h in headers(bridge, "alice")] == [DEFLATE]
    assert [h.stream_header.compression for h in headers(bridge, "bob")] == [ZSTD]  # bob→alice


async def test_send_file_with_zstd(bridge: Bridge, tmp_path) -> None:  # type: ignore[no-untyped-def]
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    got: list[bytes] = []

    async def files(reader, sender: str) -> None:  # type: ignore[no-untyped-def]
        got.append(await reader.read_all())

    bob.streams_in.register_byte_stream_handler("f", files)
    path = tmp_path / "data.bin"
    data = os.urandom(1000) * 100
    path.write_bytes(data)
    await alice.streams_out.send_file(str(path), topic="f", destination_identities=["bob"])
    await settle()
    assert headers(bridge, "alice")[0].stream_header.compression == ZSTD
    assert got == [data]


async def test_corrupt_zstd_fails_the_stream_clearly(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    readers: list[TextStreamReader] = []
    bob.streams_in.register_text_stream_handler("t", lambda r, s: readers.append(r))

    def corrupt(sender: str, packet: DataPacket) -> DataPacket:
        if packet.WhichOneof("value") == "stream_chunk":
            packet.stream_chunk.content = b"\x00" * len(packet.stream_chunk.content)
        return packet

    bridge.tamper = corrupt
    await alice.streams_out.send_text(
        semi_compressible(100_000), topic="t", destination_identities=["bob"]
    )
    with pytest.raises(DataStreamError) as caught:
        await readers[0].read_all()
    assert caught.value.reason == R.CORRUPT_COMPRESSION
    assert "corrupt zstd data" in caught.value.message


async def test_zstd_bomb_is_stopped_at_the_cap(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", limits=StreamLimits(max_stream_bytes=100_000))
    readers: list = []  # type: ignore[type-arg]
    bob.streams_in.register_byte_stream_handler("t", lambda r, s: readers.append(r))
    bomb = bytes(50 << 20)  # 50 MiB of zeros, a few KB compressed
    assert len(compress(ZSTD, bomb)) < 15000
    await alice.streams_out.send_bytes(bomb, topic="t", destination_identities=["bob"])
    (header,) = headers(bridge, "alice")
    assert header.stream_header.compression == ZSTD
    assert header.stream_header.HasField("inline_content")
    with pytest.raises(DataStreamError) as caught:
        await readers[0].read_all()
    assert caught.value.reason == R.PAYLOAD_TOO_LARGE


async def test_chunked_zstd_bomb_is_stopped_at_the_cap() -> None:
    bob, _ = endpoint(StreamLimits(max_stream_bytes=100_000), alice=V2_ALL)
    readers: list = []  # type: ignore[type-arg]
    bob.streams_in.register_byte_stream_handler("t", lambda r, s: readers.append(r))
    packed = compress(ZSTD, bytes(50 << 20))
    bob.handle_bytes(
        stream_header(
            "z", kind="bytes", compression=ZSTD, total_length=50 << 20
        ).SerializeToString()
    )
    for index, start in enumerate(range(0, len(packed), 100)):
        bob.handle_bytes(stream_chunk("z", index, packed[start : start + 100]).SerializeToString())
    bob.handle_bytes(stream_trailer("z").SerializeToString())
    with pytest.raises(DataStreamError) as caught:
        await readers[0].read_all()
    assert caught.value.reason == R.PAYLOAD_TOO_LARGE
    assert bob.streams_in._assembler.open_stream_ids == []
    await bob.aclose()


async def test_zstd_request_payload_over_the_cap_is_1500(bridge: Bridge) -> None:
    from livekit_rpc import RpcError

    alice = bridge.join("alice")
    bob = bridge.join("bob", limits=StreamLimits(max_stream_bytes=10_000))

    def echo(data: RpcInvocationData) -> str:
        return data.payload

    bob.server.register_rpc_method("echo", echo)
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(
            destination_identity="bob", method="echo", payload="a" * 20_000
        )
    assert caught.value.data == "Error reading RPC request payload"
    assert headers(bridge, "alice")[0].stream_header.compression == ZSTD
