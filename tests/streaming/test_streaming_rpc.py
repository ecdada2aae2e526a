"""Streaming RPC between two endpoints of this library, over the in-memory bridge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from livekit_rpc import RpcError, RpcInvocationData
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.packets import DataPacket
from tests.core.bridge import Bridge


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    bridge = Bridge()
    yield bridge
    await bridge.aclose()


def topics_sent_to(bridge: Bridge, identity: str) -> set[str]:
    return {
        p.stream_header.topic
        for _, p in bridge.log
        if p.HasField("stream_header") and identity in p.destination_identities
    }


async def test_async_generator_chunks_arrive_in_order_with_metrics(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("tokens")
    async def tokens(data: RpcInvocationData) -> AsyncIterator[str]:
        for i in range(int(data.payload)):
            yield f"t{i} "

    async with alice.client.stream_rpc(
        destination_identity="bob", method="tokens", payload="50"
    ) as stream:
        chunks = [chunk async for chunk in stream]

    assert chunks == [f"t{i} " for i in range(50)]
    assert stream.streaming
    assert stream.chunk_count == 50
    assert stream.byte_count == sum(len(x) for x in chunks)
    assert stream.time_to_first_chunk is not None and stream.time_to_first_chunk > 0
    assert stream.inter_chunk_p50 is not None and stream.inter_chunk_p99 is not None
    assert stream.inter_chunk_p50 <= stream.inter_chunk_p99
    request = next(p for s, p in bridge.log if s == "alice" and p.HasField("stream_header"))
    assert request.stream_header.attributes[c.ATTR_STREAMING] == "1"
    assert c.STREAM_CHUNK_TOPIC in topics_sent_to(bridge, "alice")
    assert alice.client.pending_calls == 0


async def test_sync_generator_and_bytes_chunks(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("frames")
    def frames(data: RpcInvocationData) -> Iterator[bytes]:
        yield b"\x00\x01"
        yield bytes(40_000)  # larger than one data-stream chunk: still one RPC chunk

    async with alice.client.stream_rpc(
        destination_identity="bob", method="frames", payload=""
    ) as s:
        chunks = [chunk async for chunk in s]
    assert chunks == [b"\x00\x01", bytes(40_000)]


async def test_empty_stream_ends_cleanly(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("nothing")
    async def nothing(data: RpcInvocationData) -> AsyncIterator[str]:
        return
        yield  # pragma: no cover

    async with alice.client.stream_rpc(
        destination_identity="bob", method="nothing", payload=""
    ) as s:
        assert [chunk async for chunk in s] == []
    assert s.chunk_count == 0 and s.time_to_first_chunk is None


async def test_error_after_chunks_raises_after_delivering_them(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("flaky")
    async def flaky(data: RpcInvocationData) -> AsyncIterator[str]:
        yield "a"
        yield "b"
        raise RpcError(4242, "model crashed", '{"at": 2}')

    received: list[str | bytes] = []
    with pytest.raises(RpcError) as caught:
        async with alice.client.stream_rpc(
            destination_identity="bob", method="flaky", payload=""
        ) as stream:
            async for chunk in stream:
                received.append(chunk)
    assert received == ["a", "b"]
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        4242,
        "model crashed",
        '{"at": 2}',
    )


async def test_plain_exception_mid_stream_is_application_error(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("bug")
    def bug(data: RpcInvocationData) -> Iterator[str]:
        yield "x"
        raise ValueError("oops")

    with pytest.raises(RpcError) as caught:
        async with alice.client.stream_rpc(
            destination_identity="bob", method="bug", payload=""
        ) as s:
            async for _ in s:
                pass
    assert caught.value.code == 1500
    assert caught.value.data == "Uncaught error: oops"


def endless_handler(bob_events: dict[str, asyncio.Event]):  # type: ignore[no-untyped-def]
    async def endless(data: RpcInvocationData) -> AsyncIterator[str]:
        bob_events["started"].set()
        try:
            i = 0
            while True:
                yield f"{i}"
                i += 1
                await asyncio.sleep(0)
        except (asyncio.CancelledError, GeneratorExit):
            bob_events["cancelled"].set()
            raise
        finally:
            bob_events["finally"].set()

    return endless


@pytest.mark.parametrize("how", ["leave_block", "cancel_method", "cancel_task"])
async def test_caller_cancel_reaches_the_handler(bridge: Bridge, how: str) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    events = {name: asyncio.Event() for name in ("started", "cancelled", "finally")}
    bob.server.register_rpc_method("endless", endless_handler(events))

    if how == "leave_block":
        async with alice.client.stream_rpc(
            destination_identity="bob", method="endless", payload=""
        ) as stream:
            async for chunk in stream:
                if chunk == "5":
                    break
    elif how == "cancel_method":
        async with alice.client.stream_rpc(
            destination_identity="bob", method="endless", payload=""
        ) as stream:
            await stream.__anext__()
            await stream.cancel()
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()
    else:

        async def consume() -> None:
            async with alice.client.stream_rpc(
                destination_identity="bob", method="endless", payload=""
            ) as stream:
                async for _ in stream:
                    pass

        task = asyncio.create_task(consume())
        await asyncio.wait_for(events["started"].wait(), 2)
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    await asyncio.wait_for(events["finally"].wait(), 2)
    assert events["cancelled"].is_set()
    assert alice.client.pending_calls == 0
    await asyncio.sleep(0)
    assert not bob.server._serving


async def test_slow_consumer_pauses_the_producer(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    produced = 0

    @bob.server.register_rpc_method("burst")
    async def burst(data: RpcInvocationData) -> AsyncIterator[str]:
        nonlocal produced
        for i in range(1000):
            produced += 1
            yield str(i)

    window = 8
    async with alice.client.stream_rpc(
        destination_identity="bob", method="burst", payload="", window=window
    ) as stream:
        await asyncio.sleep(0.1)  # consumer reads nothing for a while
        assert produced <= window + 1  # the producer is parked on its next chunk
        assert len(stream._items) <= window  # caller-side buffer bounded by the window
        chunks = [chunk async for chunk in stream]
    assert chunks == [str(i) for i in range(1000)]
    assert stream.dropped_chunks == 0


async def test_realtime_producer_drops_instead_of_waiting(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    finished = asyncio.Event()

    @bob.server.register_rpc_method("live")
    async def live(data: RpcInvocationData) -> AsyncIterator[str]:
        for i in range(200):
            yield str(i)
            await asyncio.sleep(0)
        finished.set()

    async with alice.client.stream_rpc(
        destination_identity="bob", method="live", payload="", window=4, realtime=True
    ) as stream:
        await asyncio.wait_for(finished.wait(), 2)  # producer never blocked on the consumer
        chunks = [int(chunk) async for chunk in stream]
    assert chunks == sorted(chunks)
    assert 0 < len(chunks) < 200
    assert stream.dropped_chunks == 200 - len(chunks)


async def test_peer_without_extension_answers_in_one_chunk(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    carol = bridge.join("carol", capabilities=(c.CAP_COMPRESSION_DEFLATE_RAW,))

    @carol.server.register_rpc_method("tokens")
    async def tokens(data: RpcInvocationData) -> AsyncIterator[str]:
        for word in ("a ", "b ", "c"):
            yield word

    async with alice.client.stream_rpc(
        destination_identity="carol", method="tokens", payload=""
    ) as s:
        chunks = [chunk async for chunk in s]
    assert chunks == ["a b c"]
    assert not s.streaming
    assert not {c.STREAM_CHUNK_TOPIC, c.STREAM_CONTROL_TOPIC} & topics_sent_to(bridge, "carol")
    request = next(p for s_, p in bridge.log if s_ == "alice" and p.HasField("stream_header"))
    assert c.ATTR_STREAMING not in request.stream_header.attributes


async def test_disconnect_mid_stream_fails_with_1503_after_chunks(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    events = {name: asyncio.Event() for name in ("started", "cancelled", "finally")}
    bob.server.register_rpc_method("endless", endless_handler(events))
    received = 0
    with pytest.raises(RpcError) as caught:
        async with alice.client.stream_rpc(
            destination_identity="bob", method="endless", payload="", window=4
        ) as stream:
            async for _ in stream:
                received += 1
                if received == 3:
                    await bridge.leave("bob")
    assert caught.value.code == 1503
    assert received >= 3


async def test_silent_peer_times_out_between_chunks(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    events = {name: asyncio.Event() for name in ("started", "cancelled", "finally")}
    bob.server.register_rpc_method("endless", endless_handler(events))
    vanished = False

    def drop_after_vanish(sender: str, packet: DataPacket) -> DataPacket | None:
        return None if vanished and sender == "bob" else packet

    bridge.tamper = drop_after_vanish
    with pytest.raises(RpcError) as caught:
        async with alice.client.stream_rpc(
            destination_identity="bob", method="endless", payload="", response_timeout=0.3
        ) as stream:
            async for _ in stream:
                vanished = True
    assert caught.value.code == 1502


async def test_heartbeats_keep_a_slow_stream_alive(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("slow")
    async def slow(data: RpcInvocationData) -> AsyncIterator[str]:
        yield "first"
        await asyncio.sleep(0.8)  # longer than the caller's inter-chunk timeout
        yield "second"

    async with alice.client.stream_rpc(
        destination_identity="bob", method="slow", payload="", response_timeout=0.3
    ) as stream:
        assert [chunk async for chunk in stream] == ["first", "second"]
    heartbeats = [
        p
        for s, p in bridge.log
        if s == "bob"
        and p.HasField("stream_header")
        and p.stream_header.attributes.get(c.ATTR_OP) == c.OP_HEARTBEAT
    ]
    assert heartbeats


async def test_total_deadline_ends_an_endless_stream(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    events = {name: asyncio.Event() for name in ("started", "cancelled", "finally")}
    bob.server.register_rpc_method("endless", endless_handler(events))
    with pytest.raises(RpcError) as caught:
        async with alice.client.stream_rpc(
            destination_identity="bob", method="endless", payload="", deadline=0.2
        ) as stream:
            async for _ in stream:
                pass
    assert caught.value.code == 1502
    await asyncio.wait_for(events["finally"].wait(), 2)


async def test_client_streaming_upload_of_50_mb(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    most_buffered = 0

    @bob.server.register_rpc_method("upload")
    async def upload(data: RpcInvocationData) -> str:
        nonlocal most_buffered
        assert data.request_chunks is not None
        total = 0
        async for chunk in data.request_chunks:
            most_buffered = max(most_buffered, len(data.request_chunks._items))  # type: ignore[attr-defined]
            total += len(chunk)
        return str(total)

    async def source() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"\xab" * 1_000_000

    async with alice.client.stream_rpc(
        destination_identity="bob", method="upload", payload=source(), window=8
    ) as stream:
        assert [chunk async for chunk in stream] == ["50000000"]
    assert most_buffered <= 8


async def test_bidirectional_stream(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("upper")
    async def upper(data: RpcInvocationData) -> AsyncIterator[str]:
        assert data.request_chunks is not None
        async for chunk in data.request_chunks:
            assert isinstance(chunk, str)
            yield chunk.upper()

    async with alice.client.stream_rpc(
        destination_identity="bob", method="upper", payload=iter(["ab", "cd", "é"])
    ) as stream:
        assert [chunk async for chunk in stream] == ["AB", "CD", "É"]


async def test_unary_call_to_streaming_method_gets_joined_reply(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("tokens")
    def tokens(data: RpcInvocationData) -> Iterator[str]:
        yield from ("x", "y", "z")

    assert (
        await alice.client.perform_rpc(destination_identity="bob", method="tokens", payload="")
        == "xyz"
    )


def chunk_messages(bridge: Bridge) -> list[DataPacket]:
    return [
        p
        for _, p in bridge.log
        if p.HasField("stream_header") and p.stream_header.topic == c.STREAM_CHUNK_TOPIC
    ]


async def test_a_burst_leaves_in_batches_and_arrives_item_by_item(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    tokens = [f"tök{i}😀 " for i in range(500)]

    @bob.server.register_rpc_method("burst")
    def burst(data: RpcInvocationData) -> Iterator[str]:
        yield from tokens  # produced faster than they can be sent

    async with alice.client.stream_rpc(
        destination_identity="bob", method="burst", payload="", window=64
    ) as stream:
        assert [chunk async for chunk in stream] == tokens
    messages = chunk_messages(bridge)
    assert len(messages) < len(tokens) / 4
    batched = [m for m in messages if c.ATTR_LENGTHS in m.stream_header.attributes]
    assert batched
    assert stream.chunk_count == 500 and stream.dropped_chunks == 0


async def test_paced_items_leave_one_per_message(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("paced")
    async def paced(data: RpcInvocationData) -> AsyncIterator[bytes]:
        for i in range(5):
            await asyncio.sleep(0.01)
            yield bytes([i])

    async with alice.client.stream_rpc(destination_identity="bob", method="paced", payload="") as s:
        assert [chunk async for chunk in s] == [bytes([i]) for i in range(5)]
    messages = chunk_messages(bridge)
    assert len(messages) == 5
    assert not any(c.ATTR_LENGTHS in m.stream_header.attributes for m in messages)


async def test_malformed_batch_fails_the_call_with_1500(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")

    @bob.server.register_rpc_method("burst")
    def burst(data: RpcInvocationData) -> Iterator[str]:
        yield from ("a", "b", "c")

    def corrupt(sender: str, packet: DataPacket) -> DataPacket | None:
        attributes = packet.stream_header.attributes if packet.HasField("stream_header") else {}
        if c.ATTR_LENGTHS in attributes:
            attributes[c.ATTR_LENGTHS] = "1,99"
        return packet

    bridge.tamper = corrupt
    with pytest.raises(RpcError) as caught:
        async with alice.client.stream_rpc(
            destination_identity="bob", method="burst", payload=""
        ) as stream:
            async for _ in stream:
                pass
    assert caught.value.code == 1500


def kinds_from(bridge: Bridge, identity: str) -> list[str]:
    """What ``identity`` sent, in order: "ack", "chunk" (a stream on the chunk topic),
    "response" or "error" (rpc_response), other stream topics by name."""
    out = []
    for sender, p in bridge.log:
        if sender != identity:
            continue
        if p.HasField("rpc_ack"):
            out.append("ack")
        elif p.HasField("rpc_response"):
            out.append("error" if p.rpc_response.HasField("error") else "response")
        elif p.HasField("stream_header"):
            topic = p.stream_header.topic
            out.append("chunk" if topic == c.STREAM_CHUNK_TOPIC else topic)
    return out


async def wait_for_ack_from(bridge: Bridge, identity: str) -> None:
    async with asyncio.timeout(5):
        while "ack" not in kinds_from(bridge, identity):  # noqa: ASYNC110 - polls the log
            await asyncio.sleep(0.001)


async def test_ack_of_a_streaming_call_leaves_right_before_its_first_chunk(
    bridge: Bridge,
) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    sent_before_first_yield: list[list[str]] = []

    @bob.server.register_rpc_method("tokens")
    async def tokens(data: RpcInvocationData) -> AsyncIterator[str]:
        sent_before_first_yield.append(kinds_from(bridge, "bob"))
        yield "first"
        yield "second"

    async with alice.client.stream_rpc(
        destination_identity="bob", method="tokens", payload=""
    ) as stream:
        assert [chunk async for chunk in stream] == ["first", "second"]
    assert sent_before_first_yield == [[]]  # the ack was held while the handler started
    assert kinds_from(bridge, "bob")[:2] == ["ack", "chunk"]


async def test_held_ack_goes_alone_when_the_first_chunk_is_slow(bridge: Bridge) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    release = asyncio.Event()

    @bob.server.register_rpc_method("slow")
    async def slow(data: RpcInvocationData) -> AsyncIterator[str]:
        await release.wait()
        yield "late"

    async with alice.client.stream_rpc(
        destination_identity="bob", method="slow", payload=""
    ) as stream:
        await wait_for_ack_from(bridge, "bob")
        assert kinds_from(bridge, "bob") == ["ack"]
        release.set()
        assert [chunk async for chunk in stream] == ["late"]


@pytest.mark.parametrize("outcome", ["raises", "yields nothing", "cancelled"])
async def test_held_ack_is_sent_whatever_the_handler_does(bridge: Bridge, outcome: str) -> None:
    alice, bob = bridge.join("alice"), bridge.join("bob")
    started, ended = asyncio.Event(), asyncio.Event()

    @bob.server.register_rpc_method("m")
    async def handler(data: RpcInvocationData) -> AsyncIterator[str]:
        started.set()
        try:
            if outcome == "raises":
                raise RpcError(2001, "nope")
            if outcome == "cancelled":
                await asyncio.Event().wait()
            return
            yield  # pragma: no cover - makes this an async generator
        finally:
            ended.set()

    async with alice.client.stream_rpc(
        destination_identity="bob", method="m", payload=""
    ) as stream:
        if outcome == "cancelled":
            await started.wait()
            await stream.cancel()
        else:
            if outcome == "raises":
                with pytest.raises(RpcError) as caught:
                    _ = [chunk async for chunk in stream]
                assert caught.value.code == 2001
            else:
                assert [chunk async for chunk in stream] == []
    await wait_for_ack_from(bridge, "bob")
    await ended.wait()
    assert kinds_from(bridge, "bob")[0] == "ack"
