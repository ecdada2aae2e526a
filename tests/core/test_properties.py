"""Property tests: arbitrary packet sequences never raise and never grow past the limits."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit.protocol import models

from livekit_rpc import ByteStreamReader, RpcEndpoint, StreamLimits, TextStreamReader
from livekit_rpc.streams.assembler import (
    StreamAssembler,
    StreamData,
    StreamEnded,
    StreamEvent,
    StreamFailed,
    StreamOpened,
)
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.compression import compress
from livekit_rpc.wire.packets import DataPacket

from .helpers import V0, V1, V2_ALL, Wire, chunk, directory, header, settle, stamped, trailer

LIMITS = StreamLimits(max_stream_bytes=4096, max_open_streams_per_sender=2, idle_timeout=3600)
SENDERS = ["alice", "bob", "mallory"]
IDS = ["s0", "s1", "s2", "s3"]
TOPICS = ["t", "unwatched", c.RPC_REQUEST_TOPIC, c.RPC_RESPONSE_TOPIC]
DEFLATE, ZSTD = c.COMPRESSION_DEFLATE_RAW, c.COMPRESSION_LKRPC_ZSTD

# Valid compressed streams (some of them bombs), so random sequences also reach the inflaters.
_BLOBS = [
    compress(kind, data)
    for kind in (DEFLATE, ZSTD)
    for data in (bytes(1 << 20), "héllo wörld 😀 ".encode() * 300, b"\xff\xfe" * 100)
]
_SLICES = sorted({blob[i : i + n] for blob in _BLOBS for i in (0, 7, 100) for n in (5, 60, 4000)})

contents = st.one_of(st.binary(max_size=80), st.sampled_from(_SLICES), st.sampled_from(_BLOBS))
compressions = st.one_of(st.sampled_from([0, 0, DEFLATE, ZSTD]), st.integers(-3, 20000))
attributes = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(
            [c.ATTR_REQUEST_ID, c.ATTR_METHOD, c.ATTR_RESPONSE_TIMEOUT_MS, c.ATTR_VERSION, "k"]
        ),
        st.sampled_from(["", "echo", "r1", "2", "1", "8000", "x", "-1", "9" * 30]),
        max_size=5,
    ),
)


@st.composite
def headers(draw: st.DrawFn) -> DataPacket:
    return header(
        draw(st.sampled_from(IDS)),
        sender=draw(st.sampled_from(SENDERS)),
        topic=draw(st.sampled_from(TOPICS)),
        kind=draw(st.sampled_from(["text", "bytes"])),
        total_length=draw(st.one_of(st.none(), st.integers(0, 1 << 21))),
        attributes=draw(attributes),
        compression=draw(compressions),
        inline=draw(st.one_of(st.none(), contents)),
    )


@st.composite
def chunks(draw: st.DrawFn) -> DataPacket:
    packet = chunk(
        draw(st.sampled_from(IDS)),
        draw(st.integers(0, 6)),
        draw(contents),
        sender=draw(st.sampled_from(SENDERS)),
    )
    packet.stream_chunk.version = draw(st.integers(0, 3))
    return packet


@st.composite
def trailers(draw: st.DrawFn) -> DataPacket:
    return trailer(
        draw(st.sampled_from(IDS)),
        reason=draw(st.sampled_from(["", "", "cancelled"])),
        attributes=draw(
            st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.text(max_size=3)))
        ),
        sender=draw(st.sampled_from(SENDERS)),
    )


stream_packets = st.one_of(headers(), chunks(), chunks(), trailers())
encryption = st.sampled_from([0, 0, 0, 1])


@st.composite
def rpc_packets(draw: st.DrawFn) -> DataPacket:
    sender = draw(st.sampled_from(SENDERS))
    request_id = draw(st.sampled_from(["r1", "r2", ""]))
    which = draw(st.sampled_from(["request", "ack", "ok", "error"]))
    packet = DataPacket(destination_identities=["me"])
    if which == "request":
        packet.rpc_request.CopyFrom(
            models.RpcRequest(
                id=request_id,
                method=draw(st.sampled_from(["echo", "nope"])),
                payload=draw(st.text(max_size=20)),
                response_timeout_ms=draw(st.sampled_from([0, 1, 8000])),
                version=draw(st.integers(0, 3)),
            )
        )
    elif which == "ack":
        packet.rpc_ack.request_id = request_id
    elif which == "ok":
        packet.rpc_response.request_id = request_id
        packet.rpc_response.payload = draw(st.text(max_size=10))
    else:
        packet.rpc_response.request_id = request_id
        packet.rpc_response.error.code = draw(st.integers(0, 2000))
    return stamped(packet, sender)


# -- the sans-I/O assembler -------------------------------------------------------------------


class EventProtocol:
    """Checks each stream's events: Opened, then Data*, then exactly one Ended or Failed."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}  # stream id → bytes delivered so far

    def check(self, events: list[StreamEvent]) -> None:
        for event in events:
            sid = event.info.stream_id if isinstance(event, StreamOpened) else event.stream_id
            if isinstance(event, StreamOpened):
                assert sid not in self.open, f"{sid} opened twice"
                self.open[sid] = 0
            elif isinstance(event, StreamData):
                assert sid in self.open, f"data for {sid}, which is not open"
                data = event.data
                self.open[sid] += len(data.encode() if isinstance(data, str) else data)
                assert self.open[sid] <= LIMITS.max_stream_bytes
            else:
                assert isinstance(event, StreamEnded | StreamFailed)
                assert self.open.pop(sid, None) is not None, f"{sid} ended but was not open"


def check_bounds(assembler: StreamAssembler) -> None:
    per_sender: dict[str, int] = {}
    for state in assembler._open.values():
        per_sender[state.sender] = per_sender.get(state.sender, 0) + 1
        assert state.received <= LIMITS.max_stream_bytes
        assert state.wire_bytes <= LIMITS.max_stream_bytes
        if state.decompressor is not None:
            assert state.decompressor.total_out <= LIMITS.max_stream_bytes
    assert all(n <= LIMITS.max_open_streams_per_sender for n in per_sender.values())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(stream_packets, encryption), max_size=40), st.booleans())
def test_assembler_never_raises_and_stays_bounded(
    packets: list[tuple[DataPacket, int]], wants_everything: bool
) -> None:
    wanted = set(TOPICS) if wants_everything else {"t", c.RPC_REQUEST_TOPIC}
    assembler = StreamAssembler(lambda kind, topic: topic in wanted, LIMITS)
    protocol = EventProtocol()
    for now, (packet, encryption_type) in enumerate(packets):
        events = assembler.receive(packet, encryption_type=encryption_type, now=float(now))
        protocol.check(events)
        check_bounds(assembler)
        assert set(assembler._open) <= set(protocol.open)
    protocol.check(assembler.sender_left("alice"))
    protocol.check(assembler.expire(1e9))
    check_bounds(assembler)
    protocol.check(assembler.close())
    assert assembler._open == {}
    assert protocol.open == {}


# -- the whole endpoint -----------------------------------------------------------------------


@contextmanager
def no_errors_logged() -> Iterator[list[logging.LogRecord]]:
    """Bad input may be warned about; an ERROR from the library means a bug was caught."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.ERROR)
    library = logging.getLogger("livekit_rpc")
    library.addHandler(handler)
    try:
        yield records
    finally:
        library.removeHandler(handler)
    assert not records, [r.getMessage() for r in records]


def buffered(reader: TextStreamReader | ByteStreamReader) -> int:
    return sum(len(p.encode() if isinstance(p, str) else p) for p in reader._pieces)


messages = st.one_of(
    stream_packets.map(lambda p: p.SerializeToString()),
    rpc_packets().map(lambda p: p.SerializeToString()),
    st.binary(max_size=60),  # garbage, sometimes still a valid DataPacket
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(messages, encryption), max_size=30))
async def test_endpoint_never_raises_and_stays_bounded(messages: list[tuple[bytes, int]]) -> None:
    wire = Wire()
    me = RpcEndpoint(
        peers=directory(alice=V2_ALL, bob=V1, mallory=V0), send_packet=wire.send, limits=LIMITS
    )
    me.server.register_rpc_method("echo", lambda data: data.payload)
    kept: list[TextStreamReader | ByteStreamReader] = []  # handed out, never read
    me.streams_in.register_text_stream_handler("t", lambda r, s: kept.append(r))
    me.streams_in.register_byte_stream_handler("t", lambda r, s: kept.append(r))
    with no_errors_logged():
        for data, encryption_type in messages:
            me.handle_bytes(data, encryption_type)
            check_bounds(me.streams_in._assembler)
            for reader in [*kept, *me.streams_in._readers.values()]:
                assert buffered(reader) <= LIMITS.max_stream_bytes
            await settle(2)
        me.handle_participant_disconnected("alice")
        await settle()
        await me.aclose()
    assert me.streams_in._assembler._open == {}
    assert all(reader.done for reader in kept)
