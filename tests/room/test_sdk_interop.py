"""Our Room next to the official LiveKit Python SDK (libwebrtc) in one dev-server room.

libwebrtc ignores loopback interfaces, so ICE runs on the test namespace's veth address
(fixture ``netns_address``): the server offers it and our client gathers on it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit import rtc
from livekit.protocol import models

from livekit_rpc.room import (
    DataPacketKind,
    Room,
    RoomOptions,
    RpcError,
    RpcInvocationData,
    RtcConfiguration,
)
from livekit_rpc.server import DevServer, ServerConfig
from livekit_rpc.wire.constants import CAP_COMPRESSION_DEFLATE_RAW

from .conftest import token, wait_until

pytestmark = pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")


ACTIVE = models.ParticipantInfo.State.ACTIVE


def incompressible(size: int) -> str:
    return base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()[:size]


@contextlib.asynccontextmanager
async def joined(
    netns_address: str,
    overrides: dict[str, int] | None = None,
    servers: list[DevServer] | None = None,
) -> AsyncIterator[tuple[Room, rtc.Room]]:
    """alice on this library, bob on the official SDK, both joined; ``overrides`` makes the
    server report another client_protocol for an identity (0: a legacy, RPC v1 peer); the
    server is appended to ``servers`` when given."""
    config = ServerConfig(
        port=0, rtc_hosts=(netns_address,), client_protocol_overrides=overrides or {}
    )
    async with DevServer(config) as server:
        if servers is not None:
            servers.append(server)
        ours = Room()
        sdk = rtc.Room()
        options = RoomOptions(rtc_config=RtcConfiguration(ice_host_addresses=[netns_address]))
        await ours.connect(server.url, token("alice"), options)
        try:
            await sdk.connect(server.url, token("bob"))
            try:
                # Lossy data is forwarded only to participants whose connection is up.
                await wait_until(
                    lambda: (
                        "bob" in ours.remote_participants
                        and ours.remote_participants["bob"].state == ACTIVE
                    )
                )
                yield ours, sdk
            finally:
                await sdk.disconnect()
        finally:
            await ours.disconnect()


@pytest.fixture
async def pair(netns_address: str) -> AsyncIterator[tuple[Room, rtc.Room]]:
    """``(ours, sdk)``: alice on this library, bob on the official SDK, both joined."""
    async with joined(netns_address) as rooms:
        yield rooms


def register_echo(ours: Room, sdk: rtc.Room) -> None:
    @ours.local_participant.register_rpc_method("echo")
    def echo_ours(data: RpcInvocationData) -> str:
        return data.payload

    @sdk.local_participant.register_rpc_method("echo")
    async def echo_sdk(data: rtc.RpcInvocationData) -> str:
        return data.payload


async def test_v1_fallback_when_the_sdk_peer_is_reported_as_protocol_0(
    netns_address: str,
) -> None:
    async with joined(netns_address, {"bob": 0}) as (ours, sdk):
        register_echo(ours, sdk)
        assert ours.remote_participants["bob"].client_protocol == 0
        small = incompressible(10_000)
        got = await ours.local_participant.perform_rpc(
            destination_identity="bob", method="echo", payload=small
        )
        assert got == small
        with pytest.raises(RpcError) as info:
            await ours.local_participant.perform_rpc(
                destination_identity="bob", method="echo", payload=incompressible(20_000)
            )
        assert info.value.code == RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE


async def test_v1_fallback_when_we_are_reported_as_protocol_0(netns_address: str) -> None:
    async with joined(netns_address, {"alice": 0}) as (ours, sdk):
        register_echo(ours, sdk)

        @ours.local_participant.register_rpc_method("big")
        def big(data: RpcInvocationData) -> str:
            return "x" * 20_000

        small = incompressible(10_000)
        got = await sdk.local_participant.perform_rpc(
            destination_identity="alice", method="echo", payload=small
        )
        assert got == small
        with pytest.raises(rtc.RpcError) as too_big_request:
            await sdk.local_participant.perform_rpc(
                destination_identity="alice", method="echo", payload=incompressible(20_000)
            )
        assert too_big_request.value.code == rtc.RpcError.ErrorCode.REQUEST_PAYLOAD_TOO_LARGE
        # The response transport follows the caller's protocol: bob is protocol 2 to us, so a
        # large answer to his v1 request still travels as a data stream.
        got = await sdk.local_participant.perform_rpc(
            destination_identity="alice", method="big", payload=""
        )
        assert got == "x" * 20_000


async def test_streaming_call_to_the_sdk_arrives_as_one_chunk(
    pair: tuple[Room, rtc.Room],
) -> None:
    ours, sdk = pair
    register_echo(ours, sdk)
    async with ours.local_participant.stream_rpc(
        destination_identity="bob", method="echo", payload="whole reply"
    ) as stream:
        chunks = [chunk async for chunk in stream]
    assert chunks == ["whole reply"]
    assert not stream.streaming


async def test_sdk_unary_call_to_our_generator_gets_the_joined_reply(
    pair: tuple[Room, rtc.Room],
) -> None:
    ours, sdk = pair

    @ours.local_participant.register_rpc_method("tokens")
    async def tokens(data: RpcInvocationData) -> AsyncIterator[str]:
        for word in ("to", "ken", "s"):
            yield word

    got = await sdk.local_participant.perform_rpc(
        destination_identity="alice", method="tokens", payload=""
    )
    assert got == "tokens"


async def test_participants_and_attributes(pair: tuple[Room, rtc.Room]) -> None:
    ours, sdk = pair
    bob = ours.remote_participants["bob"]
    assert bob.client_protocol == 2
    assert CAP_COMPRESSION_DEFLATE_RAW in bob.capabilities
    assert sdk.remote_participants["alice"].identity == "alice"
    changed: list[Any] = []
    sdk.on("participant_attributes_changed", lambda attrs, p: changed.append((attrs, p.identity)))
    await ours.local_participant.set_attributes({"k": "v"})
    await wait_until(lambda: changed)
    assert changed[0] == ({"k": "v"}, "alice")
    ours_changed: list[Any] = []
    ours.on("participant_attributes_changed", lambda attrs, p: ours_changed.append(attrs))
    await sdk.local_participant.set_attributes({"x": "1"})
    await wait_until(lambda: ours_changed)
    assert ours.remote_participants["bob"].attributes == {"x": "1"}


@pytest.mark.parametrize("size", [0, 10, 200_000, 2_000_000, 5_000_000])
async def test_rpc_both_ways(pair: tuple[Room, rtc.Room], size: int) -> None:
    ours, sdk = pair
    register_echo(ours, sdk)
    payload = incompressible(size)
    got = await ours.local_participant.perform_rpc(
        destination_identity="bob", method="echo", payload=payload, response_timeout=30
    )
    assert got == payload
    got = await sdk.local_participant.perform_rpc(
        destination_identity="alice", method="echo", payload=payload, response_timeout=30
    )
    assert got == payload


async def test_rpc_errors_cross(pair: tuple[Room, rtc.Room]) -> None:
    ours, sdk = pair

    @sdk.local_participant.register_rpc_method("fail")
    async def fail(data: rtc.RpcInvocationData) -> str:
        raise rtc.RpcError(2001, "custom", "data")

    with pytest.raises(RpcError) as info:
        await ours.local_participant.perform_rpc(
            destination_identity="bob", method="fail", payload=""
        )
    assert (info.value.code, info.value.message, info.value.data) == (2001, "custom", "data")
    with pytest.raises(rtc.RpcError) as sdk_info:
        await sdk.local_participant.perform_rpc(
            destination_identity="alice", method="missing", payload=""
        )
    assert sdk_info.value.code == rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD


async def test_data_and_text_streams_both_ways(pair: tuple[Room, rtc.Room]) -> None:
    ours, sdk = pair
    at_sdk: list[rtc.DataPacket] = []
    at_ours: list[Any] = []
    sdk.on("data_received", at_sdk.append)
    ours.on("data_received", at_ours.append)
    await ours.local_participant.publish_data(b"from-ours", topic="t")
    await sdk.local_participant.publish_data(b"from-sdk", topic="u")
    try:
        await wait_until(lambda: len(at_sdk) == 1 and len(at_ours) == 1)
    except TimeoutError:
        raise AssertionError(f"sdk got {[p.data for p in at_sdk]}, ours {at_ours}") from None
    # Lossy packets may be dropped (e.g. before the receiver's lossy channel opens): retry.
    for _ in range(50):
        await ours.local_participant.publish_data(b"lossy", reliable=False)
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: len(at_sdk) > 1, within=0.1)
            break
    by_data = {p.data: p for p in at_sdk}
    assert by_data[b"from-ours"].topic == "t"
    assert by_data[b"from-ours"].participant.identity == "alice"
    assert by_data[b"lossy"].kind == rtc.DataPacketKind.KIND_LOSSY
    assert at_ours[0].data == b"from-sdk"
    assert at_ours[0].kind == DataPacketKind.KIND_RELIABLE
    assert at_ours[0].participant is ours.remote_participants["bob"]

    texts_sdk: list[str] = []
    texts_ours: list[str] = []

    async def sdk_handler(reader: rtc.TextStreamReader, identity: str) -> None:
        texts_sdk.append(await reader.read_all())

    tasks: list[asyncio.Task[None]] = []

    def on_sdk_text(reader: rtc.TextStreamReader, identity: str) -> None:
        tasks.append(asyncio.ensure_future(sdk_handler(reader, identity)))

    async def ours_handler(reader: Any, identity: str) -> None:
        texts_ours.append(await reader.read_all())

    sdk.register_text_stream_handler("chat", on_sdk_text)
    ours.register_text_stream_handler("chat", ours_handler)
    long_text = incompressible(100_000)
    await ours.local_participant.send_text("hello sdk", topic="chat")
    await ours.local_participant.send_text(long_text, topic="chat")
    await sdk.local_participant.send_text("hello ours", topic="chat")
    await wait_until(lambda: len(texts_sdk) == 2 and texts_ours)
    await asyncio.gather(*tasks)
    assert texts_sdk == ["hello sdk", long_text]
    assert texts_ours == ["hello ours"]


async def test_sdk_sees_our_room_come_back_after_a_rejoin(netns_address: str) -> None:
    servers: list[DevServer] = []
    async with joined(netns_address, servers=servers) as (ours, sdk):
        register_echo(ours, sdk)
        reconnected = asyncio.Event()
        ours.on("reconnected", reconnected.set)
        old_sid = sdk.remote_participants["alice"].sid
        session = next(
            s for s in servers[0].rooms()["r1"].sessions() if s.participant.identity == "alice"
        )
        await session._ws.close()  # the signal connection drops, no leave
        await asyncio.wait_for(reconnected.wait(), 20)
        await wait_until(
            lambda: (
                "alice" in sdk.remote_participants
                and sdk.remote_participants["alice"].sid != old_sid
            )
        )
        payload = incompressible(50_000)
        got = await sdk.local_participant.perform_rpc(
            destination_identity="alice", method="echo", payload=payload, response_timeout=15
        )
        assert got == payload
        got = await ours.local_participant.perform_rpc(
            destination_identity="bob", method="echo", payload=payload, response_timeout=15
        )
        assert got == payload
