"""The data-channel send queue and candidate parsing, with a fake channel and in-process PCs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pyee.asyncio import AsyncIOEventEmitter

from livekit_rpc.room.transport import (
    DataChannelSendQueue,
    PeerTransport,
    TransportClosedError,
    TransportOptions,
    build_configuration,
    parse_candidate_init,
)

from .conftest import wait_until


class FakeChannel(AsyncIOEventEmitter):  # type: ignore[misc]
    """Enough of ``RTCDataChannel``: a buffer drained by hand."""

    def __init__(self, state: str = "open") -> None:
        super().__init__()
        self.label = "_reliable"
        self.readyState = state
        self.bufferedAmount = 0
        self.bufferedAmountLowThreshold = 0
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> None:
        if self.readyState != "open":
            raise RuntimeError("InvalidStateError")
        self.sent.append(data)
        self.bufferedAmount += len(data)

    def drain(self, amount: int) -> None:
        before = self.bufferedAmount
        self.bufferedAmount = max(0, before - amount)
        low = self.bufferedAmountLowThreshold
        if before > low >= self.bufferedAmount:
            self.emit("bufferedamountlow")

    def set_state(self, state: str) -> None:
        self.readyState = state
        self.emit(state if state != "closed" else "close")


async def test_send_waits_for_buffer_space_and_keeps_order() -> None:
    channel = FakeChannel()
    queue = DataChannelSendQueue(channel, high_water=100, low_water=40, max_message_size=1000)
    assert channel.bufferedAmountLowThreshold == 40
    await queue.send(b"a" * 60)
    await queue.send(b"b" * 60)  # 60 <= 100: goes straight out
    assert channel.bufferedAmount == 120
    waiting = [asyncio.ensure_future(queue.send(bytes([i]) * 30)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert not any(t.done() for t in waiting)  # backpressure reaches the callers' awaits
    assert len(channel.sent) == 2
    channel.drain(90)  # 30 left, crosses the low threshold
    await asyncio.sleep(0.01)
    # Sends resume until the buffer is above high water again: 30+30+30+30 = 120 > 100.
    assert all(t.done() for t in waiting)
    assert [m[:1] for m in channel.sent[2:]] == [b"\x00", b"\x01", b"\x02"]
    assert queue.peak_buffered == 120
    assert queue.peak_buffered <= 100 + 30


async def test_lazy_payload_is_built_in_wire_order() -> None:
    channel = FakeChannel()
    queue = DataChannelSendQueue(channel, high_water=10, low_water=0)
    counter = iter(range(1, 100))
    channel.bufferedAmount = 50  # full: every send waits
    tasks = [asyncio.ensure_future(queue.send(lambda: str(next(counter)).encode())) for _ in "abc"]
    await asyncio.sleep(0)
    for _ in range(3):
        channel.drain(1000)
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert channel.sent == [b"1", b"2", b"3"]


async def test_close_fails_waiting_senders() -> None:
    channel = FakeChannel()
    queue = DataChannelSendQueue(channel, high_water=10, low_water=0)
    await queue.send(b"x" * 20)
    waiter = asyncio.ensure_future(queue.send(b"y"))
    await asyncio.sleep(0.01)
    channel.set_state("closed")
    with pytest.raises(TransportClosedError):
        await waiter
    with pytest.raises(TransportClosedError):
        await queue.send(b"z")


async def test_send_waits_for_open_and_rejects_oversize() -> None:
    channel = FakeChannel(state="connecting")
    queue = DataChannelSendQueue(channel, max_message_size=64_000)
    with pytest.raises(ValueError):
        await queue.send(b"x" * 64_001)
    sender = asyncio.ensure_future(queue.send(b"hello"))
    await asyncio.sleep(0.01)
    assert not sender.done()
    channel.set_state("open")
    await sender
    assert channel.sent == [b"hello"]


def test_parse_candidate_init() -> None:
    line = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host"
    candidate = parse_candidate_init(json.dumps({"candidate": line, "sdpMid": "0"}))
    assert (candidate.ip, candidate.port, candidate.sdpMid) == ("127.0.0.1", 5000, "0")
    candidate = parse_candidate_init(
        json.dumps({"candidate": line[10:], "sdpMLineIndex": 0, "usernameFragment": None})
    )
    assert candidate.sdpMLineIndex == 0
    assert parse_candidate_init(json.dumps({"candidate": ""})) is None
    for bad in ("{", "[]", json.dumps({"candidate": 5})):
        with pytest.raises(ValueError):
            parse_candidate_init(bad)


async def test_two_transports_in_process() -> None:
    """Publisher offers, a bare subscriber-side transport answers; loopback only."""
    from livekit_rpc import ice

    got: list[tuple[str, bytes]] = []
    options = TransportOptions()

    def transport(name: str) -> PeerTransport:
        return PeerTransport(
            name,
            build_configuration([]),
            on_message=lambda label, data: got.append((label, data)),
            on_state=lambda state: None,
            options=options,
        )

    offerer, answerer = transport("publisher"), transport("subscriber")
    try:
        offerer.create_data_channels()
        with ice.use_host_addresses(["127.0.0.1"]):
            offer = await offerer.create_offer()
            answer = await answerer.answer_offer(offer)
        await offerer.set_answer(answer)
        async with asyncio.timeout(10):
            await offerer.wait_connected()
            await answerer.wait_connected()
            await offerer.queues["_reliable"].wait_open()
        for i in range(100):
            await offerer.queues["_reliable"].send(b"%d" % i)
        await offerer.queues["_lossy"].send(b"lossy")
        await wait_until(lambda: len(got) >= 101)
        reliable = [data for label, data in got if label == "_reliable"]
        assert reliable == [b"%d" % i for i in range(100)]
        assert ("_lossy", b"lossy") in got
        # The answerer adopted the offerer's channels and can send back on them.
        await answerer.queues["_reliable"].send(b"back")
        await wait_until(lambda: ("_reliable", b"back") in got)
    finally:
        await offerer.close()
        await answerer.close()
    with pytest.raises(TransportClosedError):
        await offerer.queues["_reliable"].send(b"after close")


def test_no_ice_server_unless_named() -> None:
    from livekit_rpc.room import IceServer, RoomOptions, RtcConfiguration

    assert build_configuration([]).iceServers == []
    assert RtcConfiguration().ice_servers == []
    assert RoomOptions().rtc_config is None
    config = build_configuration([IceServer(urls=["stun:stun.example.test:3478"])])
    assert [s.urls for s in config.iceServers] == [["stun:stun.example.test:3478"]]


async def test_loopback_option_restricts_host_candidates(connect_room: Any) -> None:
    room = await connect_room("alice")
    engine = room._engine
    assert engine is not None and engine.publisher is not None
    sdp = engine.publisher.pc.localDescription.sdp
    hosts = {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")}
    assert hosts == {"127.0.0.1"}
