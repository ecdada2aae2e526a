"""SCTP bundling and same-host large packets (livekit_rpc.sctp) over real aiortc connections."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
from types import SimpleNamespace
from typing import Any

import pytest
from aiortc import rtcsctptransport
from aiortc.rtcsctptransport import DataChunk, RTCSctpTransport, SackChunk, parse_packet

from livekit_rpc import ice
from livekit_rpc.room.transport import PeerTransport, TransportOptions, build_configuration
from livekit_rpc.sctp import (
    _SIZED_METHODS,
    LARGE_PACKET_SIZE,
    PACKET_SIZE_ATTRIBUTE,
    STANDARD_PACKET_SIZE,
    SctpTuner,
    advertised_packet_size,
    is_same_host,
    with_packet_size_attribute,
)

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a\r\n"
    "m=application 9 DTLS/SCTP 5000\r\na=mid:0\r\na=sctp-port:5000\r\n"
    "a=max-message-size:65536\r\n"
)


def test_attribute_goes_into_the_application_section_once() -> None:
    sdp = with_packet_size_attribute(SDP, 16000)
    lines = sdp.split("\r\n")
    assert lines.index(f"a={PACKET_SIZE_ATTRIBUTE}:16000") == lines.index("a=sctp-port:5000") + 1
    assert lines.index("m=application 9 DTLS/SCTP 5000") < lines.index("a=sctp-port:5000")
    again = with_packet_size_attribute(sdp, 9000)
    assert again.count(PACKET_SIZE_ATTRIBUTE) == 1
    assert advertised_packet_size(again) == 9000
    assert with_packet_size_attribute("v=0\r\n", 9000) == "v=0\r\n"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"a={PACKET_SIZE_ATTRIBUTE}:16000", 16000),
        (f"a={PACKET_SIZE_ATTRIBUTE}:{STANDARD_PACKET_SIZE}", STANDARD_PACKET_SIZE),
        (f"a={PACKET_SIZE_ATTRIBUTE}:100", None),  # below what any SCTP stack sends
        (f"a={PACKET_SIZE_ATTRIBUTE}:70000", None),  # above a UDP datagram
        (f"a={PACKET_SIZE_ATTRIBUTE}:big", None),
        ("a=max-message-size:65536", None),
    ],
)
def test_advertised_size_is_parsed_and_bounded(line: str, expected: int | None) -> None:
    assert advertised_packet_size(SDP + line + "\r\n") == expected


def test_same_host_means_loopback_or_one_of_our_addresses() -> None:
    assert is_same_host("10.0.0.5", "127.0.0.1")
    assert is_same_host("10.0.0.5", "::1")
    assert is_same_host("10.0.0.5", "10.0.0.5")
    assert is_same_host("10.0.0.5", "10.0.0.6", ["10.0.0.6"])
    assert not is_same_host("10.0.0.5", "10.0.0.6", ["10.0.0.7"])
    assert not is_same_host("10.0.0.5", "host.example.test")


def _tuner_with_path(
    local: str,
    remote: str,
    remote_size: int | None,
    types: tuple[str, str] = ("host", "host"),
) -> tuple[SctpTuner, Any]:
    pc: Any = SimpleNamespace(sctp=None)
    tuner = SctpTuner(pc)
    if remote_size is not None:
        tuner.remote_description(with_packet_size_attribute(SDP, remote_size))
    pair = SimpleNamespace(
        local_candidate=SimpleNamespace(host=local, type=types[0]),
        remote_candidate=SimpleNamespace(host=remote, type=types[1]),
        protocol=SimpleNamespace(transport=None),
    )
    connection = SimpleNamespace(_nominated={1: pair}, local_candidates=[])
    return tuner, SimpleNamespace(transport=SimpleNamespace(_connection=connection))


def test_large_packets_need_the_remote_offer_and_a_same_host_path() -> None:
    tuner, dtls = _tuner_with_path("10.0.0.5", "10.0.0.5", 9000)
    assert tuner._choose_packet_size(dtls) == 9000
    tuner, dtls = _tuner_with_path("10.0.0.5", "10.0.0.5", 60000)
    assert tuner._choose_packet_size(dtls) == LARGE_PACKET_SIZE
    tuner, dtls = _tuner_with_path("10.0.0.5", "10.0.0.9", 16000)  # another machine
    assert tuner._choose_packet_size(dtls) is None
    tuner, dtls = _tuner_with_path("10.0.0.5", "127.0.0.1", None)  # peer did not offer
    assert tuner._choose_packet_size(dtls) is None
    tuner, dtls = _tuner_with_path("10.0.0.5", "10.0.0.5", 16000, ("host", "prflx"))
    assert tuner._choose_packet_size(dtls) == LARGE_PACKET_SIZE
    for types in (("relay", "host"), ("host", "relay"), ("host", "srflx")):
        tuner, dtls = _tuner_with_path("10.0.0.5", "10.0.0.5", 16000, types)
        assert tuner._choose_packet_size(dtls) is None, types


def test_every_aiortc_method_reading_the_chunk_size_is_rebound() -> None:
    """Guards an aiortc upgrade: a new reader of the constant would keep 1,160-byte steps."""
    readers = {
        name
        for name, value in vars(RTCSctpTransport).items()
        if inspect.isfunction(value) and "USERDATA_MAX_LENGTH" in value.__code__.co_names
    }
    assert readers == {*_SIZED_METHODS, "__init__"}
    assert rtcsctptransport.USERDATA_MAX_LENGTH == 1160  # the module constant is never changed


class Link:
    """Two PeerTransports connected over loopback, recording the SCTP packets each sends."""

    def __init__(self, *, offerer_large: bool = True, answerer_large: bool = True) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._arrived = asyncio.Event()
        self.sent: dict[str, list[bytes]] = {"offerer": [], "answerer": []}
        self.offerer = self._transport("publisher", offerer_large)
        self.answerer = self._transport("subscriber", answerer_large)
        self.offer_sdp = ""
        self.answer_sdp = ""

    def _transport(self, name: str, large: bool) -> PeerTransport:
        return PeerTransport(
            name,
            build_configuration([]),
            on_message=self._on_message,
            on_state=lambda state: None,
            options=TransportOptions(large_sctp_packets=large),
        )

    def _on_message(self, label: str, data: bytes) -> None:
        self.received.append((label, data))
        self._arrived.set()

    def _record(self, side: str, transport: PeerTransport) -> None:
        dtls = transport.pc.sctp.transport
        original = dtls._send_data

        async def send_data(data: bytes) -> None:
            self.sent[side].append(data)
            await original(data)

        dtls._send_data = send_data

    async def __aenter__(self) -> Link:
        self.offerer.create_data_channels()
        with ice.use_host_addresses(["127.0.0.1"]):
            self.offer_sdp = await self.offerer.create_offer()
            self.answer_sdp = await self.answerer.answer_offer(self.offer_sdp)
        await self.offerer.set_answer(self.answer_sdp)
        self._record("offerer", self.offerer)
        self._record("answerer", self.answerer)
        async with asyncio.timeout(10):
            await self.offerer.wait_connected()
            await self.answerer.wait_connected()
            await self.offerer.queues["_reliable"].wait_open()
            await self.answerer.queues["_reliable"].wait_open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.offerer.close()
        await self.answerer.close()

    async def wait_received(self, count: int) -> None:
        async with asyncio.timeout(20):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def chunks(self, side: str) -> list[list[Any]]:
        return [parse_packet(packet)[3] for packet in self.sent[side]]


async def test_same_host_peers_that_both_offer_use_large_packets() -> None:
    payload = os.urandom(3_000_000)
    async with Link() as link:
        assert advertised_packet_size(link.offer_sdp) == LARGE_PACKET_SIZE
        assert advertised_packet_size(link.answer_sdp) == LARGE_PACKET_SIZE
        for part in range(0, len(payload), 60_000):
            await link.offerer.queues["_reliable"].send(payload[part : part + 60_000])
        await link.wait_received(50)
        got = b"".join(data for _, data in link.received)
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
        sizes = [len(packet) for packet in link.sent["offerer"]]
        assert max(sizes) > 10 * STANDARD_PACKET_SIZE
        assert max(sizes) <= LARGE_PACKET_SIZE
        data_packets = sum(
            1 for chunks in link.chunks("offerer") if any(isinstance(c, DataChunk) for c in chunks)
        )
        assert data_packets < len(payload) // 10_000  # standard packets would need 2,587


@pytest.mark.parametrize("large_side", ["offerer", "answerer"])
async def test_a_peer_that_does_not_offer_gets_standard_packets(large_side: str) -> None:
    payload = os.urandom(500_000)
    offerer_large = large_side == "offerer"
    async with Link(offerer_large=offerer_large, answerer_large=not offerer_large) as link:
        sdp = link.answer_sdp if large_side == "offerer" else link.offer_sdp
        assert PACKET_SIZE_ATTRIBUTE not in sdp
        for part in range(0, len(payload), 50_000):
            await link.offerer.queues["_reliable"].send(payload[part : part + 50_000])
            await link.answerer.queues["_reliable"].send(payload[part : part + 50_000])
        await link.wait_received(20)
        for side in ("offerer", "answerer"):
            assert max(len(packet) for packet in link.sent[side]) <= STANDARD_PACKET_SIZE
        got = b"".join(data for label, data in link.received if label == "_reliable")
        assert len(got) == 2 * len(payload)


@pytest.mark.parametrize("large", [True, False])
async def test_small_messages_sent_together_share_packets(large: bool) -> None:
    async with Link(offerer_large=large, answerer_large=large) as link:
        queue = link.offerer.queues["_reliable"]
        before = len(link.sent["offerer"])
        messages = [b"message %03d" % i for i in range(60)]
        await asyncio.gather(*(queue.send(m) for m in messages))
        await link.wait_received(len(messages))
        assert [data for _, data in link.received] == messages
        data_chunks = [
            sum(isinstance(c, DataChunk) for c in chunks)
            for chunks in link.chunks("offerer")[before:]
        ]
        assert sum(data_chunks) == len(messages)
        assert max(data_chunks) > 1
        assert len([n for n in data_chunks if n]) < len(messages) // 2
        for packet in link.sent["offerer"][before:]:
            assert len(packet) <= (LARGE_PACKET_SIZE if large else STANDARD_PACKET_SIZE)


async def test_sack_goes_first_when_bundled_with_data() -> None:
    async with Link() as link:
        # Both directions busy at once: SACKs for one direction ride with the other's data.
        payload = b"x" * 60_000
        for _ in range(20):
            await asyncio.gather(
                link.offerer.queues["_reliable"].send(payload),
                link.answerer.queues["_reliable"].send(payload),
            )
        await link.wait_received(40)
        mixed = 0
        for side in ("offerer", "answerer"):
            for chunks in link.chunks(side):
                kinds = [type(c) for c in chunks]
                if SackChunk in kinds and DataChunk in kinds:
                    mixed += 1
                    assert kinds.index(SackChunk) < kinds.index(DataChunk)
        assert mixed > 0


@pytest.mark.parametrize("think", [0.0, 0.002])
async def test_a_reply_carries_the_sack_of_the_message_it_answers(think: float) -> None:
    """Answered at once or a little later (well within SACK_DELAY), the pong carries the
    ping's SACK instead of the SACK leaving on its own."""
    async with Link() as link:
        answerer_queue = link.answerer.queues["_reliable"]
        replies: list[asyncio.Task[None]] = []

        async def reply(data: bytes) -> None:
            if think:
                await asyncio.sleep(think)
            await answerer_queue.send(b"pong" + data[4:])

        def answer(label: str, data: bytes) -> None:
            link.received.append((label, data))
            link._arrived.set()
            if data.startswith(b"ping"):
                replies.append(asyncio.ensure_future(reply(data)))

        link.answerer._on_message = answer
        before = len(link.sent["answerer"])
        for i in range(20):
            await link.offerer.queues["_reliable"].send(b"ping %d" % i)
            await link.wait_received(2 * (i + 1))
        await asyncio.gather(*replies)
        answered = link.chunks("answerer")[before:]
        with_both = [c for c in answered if any(isinstance(x, SackChunk) for x in c) and len(c) > 1]
        # Most pings are acknowledged in the packet carrying their pong, not on their own.
        assert len(with_both) >= 15
        assert sorted(d for _, d in link.received if d.startswith(b"pong")) == sorted(
            b"pong %d" % i for i in range(20)
        )


async def test_a_lone_message_is_still_acknowledged() -> None:
    async with Link() as link:
        sctp = link.offerer.pc.sctp
        await link.offerer.queues["_reliable"].send(b"alone")
        await link.wait_received(1)
        async with asyncio.timeout(5):
            while sctp._flight_size:  # noqa: ASYNC110 - aiortc's counter; 0 once SACKed
                await asyncio.sleep(0.005)
        sacks = [c for c in link.chunks("answerer") if any(isinstance(x, SackChunk) for x in c)]
        assert sacks
