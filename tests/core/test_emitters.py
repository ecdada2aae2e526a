"""The managers without a room or a callback: packets come out as pyee events."""

from __future__ import annotations

import asyncio

import pytest

from livekit_rpc import (
    OutgoingDataStreamManager,
    RpcClientManager,
    RpcError,
    RpcServerManager,
    StaticPeerDirectory,
)
from livekit_rpc.wire.packets import DataPacket

from .helpers import settle


def v0_peers() -> StaticPeerDirectory:
    peers = StaticPeerDirectory()
    peers.add("bob", 0)
    peers.add("alice", 0)
    return peers


async def test_client_and_server_talk_through_events_only() -> None:
    peers = v0_peers()
    client = RpcClientManager(streams=OutgoingDataStreamManager(None, peers), peers=peers)
    server = RpcServerManager(streams=OutgoingDataStreamManager(None, peers), peers=peers)
    server.register_rpc_method("double", lambda data: data.payload * 2)
    from_client: list[DataPacket] = []
    from_server: list[DataPacket] = []

    @client.on("send_packet")
    def to_server(packet: DataPacket) -> None:
        from_client.append(packet)
        server.handle_request(packet.rpc_request, "alice")

    @server.on("send_packet")
    def to_client(packet: DataPacket) -> None:
        from_server.append(packet)
        if packet.HasField("rpc_ack"):
            client.handle_ack(packet.rpc_ack.request_id, "bob")
        else:
            client.handle_response(packet.rpc_response, "bob")

    reply = await client.perform_rpc(destination_identity="bob", method="double", payload="ab")
    assert reply == "abab"
    assert [p.WhichOneof("value") for p in from_client] == ["rpc_request"]
    assert [p.WhichOneof("value") for p in from_server] == ["rpc_ack", "rpc_response"]
    await server.aclose()


async def test_a_listener_that_raises_fails_the_call_at_once() -> None:
    peers = v0_peers()
    client = RpcClientManager(streams=OutgoingDataStreamManager(None, peers), peers=peers)

    @client.on("send_packet")
    def broken(packet: DataPacket) -> None:
        raise ConnectionError("link down")

    with pytest.raises(RpcError) as caught:
        await asyncio.wait_for(
            client.perform_rpc(destination_identity="bob", method="m", payload=""), 1
        )
    assert caught.value.code == 1505
    assert caught.value.data == "link down"
    await settle()
    assert client.pending_calls == 0
