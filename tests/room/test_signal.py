"""Signalling paths the dev server does not exercise, against a scripted server (real WebRTC)."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

import pytest

from livekit_rpc.room import (
    ConnectError,
    ConnectionState,
    DataPacketKind,
    DisconnectReason,
    Room,
)
from livekit_rpc.room.signal_client import ClientDescription, capability_names, signal_url
from livekit_rpc.wire.constants import CAP_COMPRESSION_DEFLATE_RAW

from .conftest import room_options, token, wait_until
from .fake_server import FakeServer

pytestmark = pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")


def test_signal_url_and_capabilities() -> None:
    client = ClientDescription(version="1.2.3", capabilities=(CAP_COMPRESSION_DEFLATE_RAW, 10001))
    url = signal_url("https://example.test/prefix/", "tok", client=client, auto_subscribe=False)
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "example.test", "/prefix/rtc")
    query = dict(urllib.parse.parse_qsl(parts.query))
    assert query["access_token"] == "tok"
    assert query["protocol"] == "17"
    assert query["client_protocol"] == "2"
    assert query["auto_subscribe"] == "0"
    assert query["sdk"] == "python"
    assert query["version"] == "1.2.3"
    assert query["capabilities"] == "CAP_COMPRESSION_DEFLATE_RAW,10001"
    assert capability_names([1, 2, 99]) == "CAP_PACKET_TRAILER,CAP_COMPRESSION_DEFLATE_RAW,99"
    with pytest.raises(ValueError):
        signal_url("ftp://x", "t", client=client, auto_subscribe=True)


async def test_subscriber_primary_join_data_and_metadata() -> None:
    async with FakeServer(subscriber_primary=True) as server:
        room = Room()
        await room.connect(server.url, token("alice"), room_options())
        try:
            # What the client told the server.
            assert server.query["access_token"] == server.headers["Authorization"][7:]
            assert server.query["protocol"] == "17"
            assert server.query["client_protocol"] == "2"
            assert server.query["sdk"] == "python"
            assert "CAP_COMPRESSION_DEFLATE_RAW" in server.query["capabilities"].split(",")
            # Participants from the join response, no event.
            assert list(room.remote_participants) == ["echo"]
            assert room.client_protocol("echo") == 2
            engine = room._engine
            assert engine is not None and engine.subscriber_primary
            assert engine.subscriber is not None
            assert engine.subscriber.connection_state == "connected"
            # The server's trickled candidates (with final) were used: no candidate in the SDP.
            assert server.subscriber is not None

            received = []
            room.on("data_received", received.append)
            await room.local_participant.publish_data(b"ping", topic="t")
            await room.local_participant.publish_data(b"lossy", reliable=False)
            await wait_until(lambda: len(received) == 2)
            await asyncio.sleep(0.2)
            # The server sent the reliable packet twice: the copy is dropped by sequence.
            assert sorted(p.data for p in received) == [b"lossy", b"ping"]
            by_data = {p.data: p for p in received}
            assert by_data[b"ping"].participant is room.remote_participants["echo"]
            assert by_data[b"ping"].kind == DataPacketKind.KIND_RELIABLE
            assert by_data[b"lossy"].kind == DataPacketKind.KIND_LOSSY
            # Upstream went over the client's own publisher connection, downstream over the
            # server-created subscriber channels.
            assert {p.user.payload for p in server.received} == {b"ping", b"lossy"}
            assert [p.sequence for p in server.received if p.kind == 0] == [1]

            await room.local_participant.set_attributes({"a": "1"})
            metadata = [r.update_metadata for r in server.requests if r.HasField("update_metadata")]
            assert [m.request_id for m in metadata] == [1]
            assert dict(metadata[0].attributes) == {"a": "1"}
        finally:
            await room.disconnect()
        await wait_until(lambda: any(r.HasField("leave") for r in server.requests))


async def test_server_leave_disconnects() -> None:
    async with FakeServer(subscriber_primary=False) as server:
        room = Room()
        seen: list[Any] = []
        room.on("disconnected", seen.append)
        await room.connect(server.url, token("alice"), room_options(reconnect_timeout=0))
        await server.leave(DisconnectReason.DUPLICATE_IDENTITY)
        await wait_until(lambda: seen)
        assert seen == [DisconnectReason.DUPLICATE_IDENTITY]
        assert room.connection_state == ConnectionState.CONN_DISCONNECTED
        await room.disconnect()


async def test_pings_keep_the_session_and_silence_ends_it() -> None:
    async with FakeServer(subscriber_primary=False, ping_interval=1, ping_timeout=2) as server:
        room = Room()
        await room.connect(server.url, token("alice"), room_options())
        await asyncio.sleep(2.5)
        assert room.isconnected()
        assert server.pings >= 2
        await room.disconnect()

    async with FakeServer(
        subscriber_primary=False, ping_interval=1, ping_timeout=2, answer_pings=False
    ) as server:
        room = Room()
        seen: list[Any] = []
        room.on("disconnected", seen.append)
        await room.connect(server.url, token("alice"), room_options(reconnect_timeout=0))
        started = time.monotonic()
        await wait_until(lambda: seen, within=8)
        # Timeout 2 s after the last message, checked once per 1 s ping interval.
        assert 1.5 < time.monotonic() - started < 6
        assert seen == [DisconnectReason.SIGNAL_CLOSE]
        await room.disconnect()


async def test_first_message_must_be_join() -> None:
    async with FakeServer(first_message="update") as server:
        with pytest.raises(ConnectError, match="join"):
            await Room().connect(server.url, token("alice"), room_options())


async def test_join_must_arrive_within_5_seconds() -> None:
    async with FakeServer(first_message="none") as server:
        started = time.monotonic()
        with pytest.raises(ConnectError, match="join"):
            await Room().connect(server.url, token("alice"), room_options())
        assert 4.5 < time.monotonic() - started < 7
