"""rpc/client.py: perform_rpc over v1 packets and v2 streams, timers, and response routing."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from livekit.protocol import models

from livekit_rpc import RpcEndpoint, RpcError, RpcInvocationData
from livekit_rpc.rpc import client as client_module
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.packets import (
    DataPacket,
    rpc_ack_packet,
    rpc_error_packet,
    rpc_response_packet,
)

from .bridge import Bridge
from .helpers import V0, V1, V2_ALL, endpoint, header, settle, stamped

E = RpcError.ErrorCode


def rpc_timers(rpc: RpcEndpoint) -> list[asyncio.TimerHandle]:
    """Timers of ``rpc``'s client still armed on the running loop."""
    loop = asyncio.get_running_loop()
    return [
        handle
        for handle in loop._scheduled  # type: ignore[attr-defined]
        if not handle.cancelled() and getattr(handle._callback, "__self__", None) is rpc.client
    ]


@pytest.fixture
async def bridge():  # type: ignore[no-untyped-def]
    room = Bridge()
    yield room
    await room.aclose()


def requests_from(room: Bridge, identity: str) -> list[DataPacket]:
    return [
        p
        for p in room.sent_by(identity)
        if p.WhichOneof("value") == "rpc_request"
        or (
            p.WhichOneof("value") == "stream_header"
            and p.stream_header.topic == c.RPC_REQUEST_TOPIC
        )
    ]


def echo(data: RpcInvocationData) -> str:
    return data.payload


# -- v1 ---------------------------------------------------------------------------------------


async def test_v1_request_packet_and_resolution(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    carol = bridge.join("carol", client_protocol=0, capabilities=())
    carol.server.register_rpc_method("echo", echo)
    result = await alice.client.perform_rpc(
        destination_identity="carol", method="echo", payload="hi", response_timeout=20
    )
    assert result == "hi"
    (packet,) = requests_from(bridge, "alice")
    assert list(packet.destination_identities) == ["carol"]
    assert packet.kind == DataPacket.Kind.RELIABLE
    request = packet.rpc_request
    assert (request.method, request.payload, request.response_timeout_ms, request.version) == (
        "echo",
        "hi",
        20000,
        1,
    )
    assert str(uuid.UUID(request.id, version=4)) == request.id
    assert [p.WhichOneof("value") for p in bridge.sent_by("alice")] == ["rpc_request"]
    # Carol answers by what alice advertised (protocol 2), so with a stream.
    assert [p.WhichOneof("value") for p in bridge.sent_by("carol")] == ["rpc_ack", "stream_header"]
    assert alice.client.pending_calls == 0


async def test_v1_wire_timeout_is_at_least_8000(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    carol = bridge.join("carol", client_protocol=0, capabilities=())
    carol.server.register_rpc_method("echo", echo)
    await alice.client.perform_rpc(destination_identity="carol", method="echo", payload="")
    await alice.client.perform_rpc(
        destination_identity="carol", method="echo", payload="", response_timeout=1
    )
    assert [p.rpc_request.response_timeout_ms for p in requests_from(bridge, "alice")] == [
        15000,
        8000,
    ]


@pytest.mark.parametrize("protocol", [0, None])  # a v0 peer, or an unknown identity
async def test_v1_payload_over_15360_bytes_is_refused_before_sending(
    bridge: Bridge, protocol: int | None
) -> None:
    alice = bridge.join("alice")
    target = "carol"
    if protocol is not None:
        bridge.join(target, client_protocol=protocol, capabilities=())
    else:
        target = "stranger"
    for payload in ("A" * 20000, "é" * 7681):
        with pytest.raises(RpcError) as caught:
            await alice.client.perform_rpc(destination_identity=target, method="m", payload=payload)
        assert caught.value.code == E.REQUEST_PAYLOAD_TOO_LARGE
        assert caught.value.message == "Request payload too large"
    assert bridge.log == []
    assert alice.client.pending_calls == 0
    assert rpc_timers(alice) == []


async def test_v1_payload_of_exactly_15360_bytes_is_sent(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    carol = bridge.join("carol", client_protocol=0, capabilities=())
    carol.server.register_rpc_method("echo", echo)
    payload = "é" * 7680
    assert (
        await alice.client.perform_rpc(destination_identity="carol", method="echo", payload=payload)
        == payload
    )


@pytest.mark.parametrize("protocol", [0, 1, 2])
async def test_response_timeout_uses_the_callers_value_not_the_wire_minimum(
    bridge: Bridge, protocol: int
) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", client_protocol=protocol, capabilities=())
    release = asyncio.Event()

    async def slow(data: RpcInvocationData) -> str:
        await release.wait()
        return "late"

    bob.server.register_rpc_method("slow", slow)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(
            destination_identity="bob", method="slow", payload="", response_timeout=0.05
        )
    assert caught.value.code == E.RESPONSE_TIMEOUT
    assert caught.value.message == "Response timeout"
    assert 0.04 < loop.time() - started < 1.0
    if protocol == 0:
        assert requests_from(bridge, "alice")[0].rpc_request.response_timeout_ms == 8000
    else:
        header = requests_from(bridge, "alice")[0].stream_header
        assert header.attributes[c.ATTR_RESPONSE_TIMEOUT_MS] == "8000"
    assert rpc_timers(alice) == []
    # The late response is ignored without a trace.
    release.set()
    await settle(20)
    assert alice.client.pending_calls == 0


@pytest.mark.parametrize("protocol", [0, 2])
async def test_error_passes_through_with_code_message_and_data(
    bridge: Bridge, protocol: int
) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", client_protocol=protocol, capabilities=())

    def fail(data: RpcInvocationData) -> str:
        raise RpcError(101, "Test error message", "some data")

    bob.server.register_rpc_method("fail", fail)
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(destination_identity="bob", method="fail", payload="")
    assert (caught.value.code, caught.value.message, caught.value.data) == (
        101,
        "Test error message",
        "some data",
    )


@pytest.mark.parametrize("protocol", [0, 2])
async def test_destination_leaving_fails_its_calls_with_1503(bridge: Bridge, protocol: int) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", client_protocol=protocol, capabilities=())
    carol = bridge.join("carol")
    hold = asyncio.Event()

    async def wait(data: RpcInvocationData) -> str:
        await hold.wait()
        return "carol answered"

    bob.server.register_rpc_method("wait", wait)
    carol.server.register_rpc_method("wait", wait)
    to_bob = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="bob", method="wait", payload="")
    )
    to_carol = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="carol", method="wait", payload="")
    )
    await settle(20)
    await bridge.leave("bob")
    with pytest.raises(RpcError) as caught:
        await to_bob
    assert caught.value.code == E.RECIPIENT_DISCONNECTED
    assert caught.value.message == "Recipient disconnected"
    assert not to_carol.done()
    hold.set()
    assert await to_carol == "carol answered"


# -- v2 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [1, 2])
async def test_v2_request_attributes(bridge: Bridge, protocol: int) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob", client_protocol=protocol, capabilities=())
    bob.server.register_rpc_method("echo", echo)
    payload = "x" * 20000  # no size limit for v2
    assert (
        await alice.client.perform_rpc(
            destination_identity="bob", method="echo", payload=payload, response_timeout=9.5
        )
        == payload
    )
    (packet,) = requests_from(bridge, "alice")
    header = packet.stream_header
    assert list(packet.destination_identities) == ["bob"]
    assert header.topic == c.RPC_REQUEST_TOPIC
    assert dict(header.attributes) == {
        c.ATTR_REQUEST_ID: header.attributes[c.ATTR_REQUEST_ID],
        c.ATTR_METHOD: "echo",
        c.ATTR_RESPONSE_TIMEOUT_MS: "9500",
        c.ATTR_VERSION: "2",
    }
    assert (
        str(uuid.UUID(header.attributes[c.ATTR_REQUEST_ID], version=4))
        == (header.attributes[c.ATTR_REQUEST_ID])
    )
    assert not any(p.WhichOneof("value") == "rpc_request" for p in bridge.sent_by("alice"))
    if protocol == 1:
        assert not header.HasField("inline_content")  # legacy framing for protocol 1


@pytest.mark.parametrize("protocol", [0, 1, 2])
async def test_send_failure_fails_at_once_and_leaves_nothing(bridge: Bridge, protocol: int) -> None:
    alice = bridge.join("alice")
    bridge.join("bob", client_protocol=protocol, capabilities=())
    bridge.fail_sends_from.add("alice")
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(destination_identity="bob", method="m", payload="p")
    assert caught.value.code == E.SEND_FAILED
    assert caught.value.message == "Failed to send"
    assert caught.value.data == "transport closed"
    assert isinstance(caught.value.__cause__, ConnectionError)
    assert alice.client.pending_calls == 0
    assert rpc_timers(alice) == []


async def test_oversized_method_name_fails_as_send_failure(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bridge.join("bob")
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(destination_identity="bob", method="m" * 20000, payload="")
    assert caught.value.code == E.SEND_FAILED
    assert bridge.log == []
    assert alice.client.pending_calls == 0


async def test_ack_timeout(bridge: Bridge, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module.c, "ACK_TIMEOUT_S", 0.05)
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    bob.server.register_rpc_method("echo", echo)
    held: list[DataPacket] = []

    def hold_bobs_packets(sender: str, packet: DataPacket) -> DataPacket | None:
        if sender == "bob":
            held.append(packet)
            return None
        return packet

    bridge.tamper = hold_bobs_packets
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(destination_identity="bob", method="echo", payload="x")
    assert caught.value.code == E.CONNECTION_TIMEOUT
    assert caught.value.message == "Connection timeout"
    assert alice.client.pending_calls == 0
    assert rpc_timers(alice) == []
    # The late ack and the late response stream are ignored silently.
    await settle(20)
    assert [p.WhichOneof("value") for p in held] == ["rpc_ack", "stream_header"]
    for packet in held:
        alice.handle_bytes(packet.SerializeToString())
    await settle()
    assert alice.client.pending_calls == 0


async def test_ack_timeout_while_the_request_is_still_being_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module.c, "ACK_TIMEOUT_S", 0.05)
    alice, wire = endpoint(bob=V2_ALL)
    wire.gate = asyncio.Event()
    call = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="bob", method="m", payload="p")
    )
    await asyncio.sleep(0.1)
    assert not call.done()  # the send is still pending
    wire.gate.set()
    with pytest.raises(RpcError) as caught:
        await call
    assert caught.value.code == E.CONNECTION_TIMEOUT
    assert alice.client.pending_calls == 0
    assert rpc_timers(alice) == []
    await alice.aclose()


async def test_ack_and_response_arriving_while_the_request_is_still_being_sent() -> None:
    alice, wire = endpoint(bob=V0)
    wire.gate = asyncio.Event()
    call = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="bob", method="m", payload="p")
    )
    await settle()
    (request_id,) = alice.client._calls
    alice.handle_packet(stamped(rpc_ack_packet(request_id=request_id, destination="alice"), "bob"))
    alice.handle_packet(
        stamped(
            rpc_response_packet(request_id=request_id, payload="fast", destination="alice"), "bob"
        )
    )
    await settle()
    assert not call.done()
    wire.gate.set()
    assert await call == "fast"
    assert rpc_timers(alice) == []
    await alice.aclose()


async def test_request_ids_are_distinct(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    bob.server.register_rpc_method("echo", echo)
    for _ in range(5):
        await alice.client.perform_rpc(destination_identity="bob", method="echo", payload="")
    ids = {p.stream_header.attributes[c.ATTR_REQUEST_ID] for p in requests_from(bridge, "alice")}
    assert len(ids) == 5


async def test_fifty_concurrent_calls_are_never_crossed(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    peers = [
        bridge.join("v0", client_protocol=0, capabilities=()),
        bridge.join("v1", client_protocol=1, capabilities=()),
        bridge.join("v2"),
    ]

    async def jittery_echo(data: RpcInvocationData) -> str:
        await asyncio.sleep((hash(data.payload) % 7) / 1000)
        return f"{data.caller_identity}:{data.payload}"

    for peer in peers:
        peer.server.register_rpc_method("echo", jittery_echo)
    targets = ["v0", "v1", "v2"]
    payloads = [f"payload-{i}-" + "é" * (i * 97 % 500) for i in range(50)]
    results = await asyncio.gather(
        *(
            alice.client.perform_rpc(
                destination_identity=targets[i % 3], method="echo", payload=payload
            )
            for i, payload in enumerate(payloads)
        )
    )
    assert results == [f"alice:{p}" for p in payloads]
    assert alice.client.pending_calls == 0


# -- responses that must not settle a call ------------------------------------------------------


async def call_pending(rpc: RpcEndpoint, destination: str = "bob") -> tuple[asyncio.Task[str], str]:
    call = asyncio.create_task(
        rpc.client.perform_rpc(destination_identity=destination, method="m", payload="p")
    )
    await settle()
    (request_id,) = rpc.client._calls
    return call, request_id


async def test_ack_or_response_for_another_id_leaves_the_call_pending() -> None:
    alice, _ = endpoint(bob=V2_ALL)
    call, request_id = await call_pending(alice)
    alice.handle_packet(stamped(rpc_ack_packet(request_id="other", destination="alice"), "bob"))
    alice.handle_packet(
        stamped(rpc_response_packet(request_id="other", payload="x", destination="alice"), "bob")
    )
    alice.handle_packet(
        header(
            "other-stream",
            sender="bob",
            topic=c.RPC_RESPONSE_TOPIC,
            inline=b"x",
            attributes={c.ATTR_REQUEST_ID: "other"},
        )
    )
    await settle()
    assert not call.done()
    alice.handle_packet(
        stamped(
            rpc_response_packet(request_id=request_id, payload="ok", destination="alice"), "bob"
        )
    )
    assert await call == "ok"  # a v2 caller also accepts a v1 payload packet
    await alice.aclose()


async def test_response_stream_from_the_wrong_sender_is_ignored(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    mallory = bridge.join("mallory")
    go = asyncio.Event()

    async def answer(data: RpcInvocationData) -> str:
        await go.wait()
        return "from bob"

    bob.server.register_rpc_method("m", answer)
    call = asyncio.create_task(
        alice.client.perform_rpc(destination_identity="bob", method="m", payload="")
    )
    await settle(20)
    (request,) = requests_from(bridge, "alice")
    request_id = request.stream_header.attributes[c.ATTR_REQUEST_ID]
    await mallory.streams_out.send_text(
        "forged",
        topic=c.RPC_RESPONSE_TOPIC,
        destination_identities=["alice"],
        attributes={c.ATTR_REQUEST_ID: request_id},
    )
    await settle(20)
    assert not call.done()
    go.set()
    assert await call == "from bob"


async def test_v1_ack_and_response_from_the_wrong_sender_are_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Stricter than LiveKit's SDKs, which check only v2 response streams.
    alice, _ = endpoint(bob=V0)
    call, request_id = await call_pending(alice)
    alice.handle_packet(
        stamped(
            rpc_response_packet(request_id=request_id, payload="forged", destination="alice"),
            "mallory",
        )
    )
    error = RpcError(1, "forged").to_proto()
    alice.handle_packet(
        stamped(
            rpc_error_packet(request_id=request_id, error=error, destination="alice"), "mallory"
        )
    )
    await settle()
    assert not call.done()
    assert "from mallory, but the call went to bob" in caplog.text
    alice.handle_packet(
        stamped(
            rpc_response_packet(request_id=request_id, payload="real", destination="alice"), "bob"
        )
    )
    assert await call == "real"
    await alice.aclose()


async def test_response_with_compressed_payload_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice, _ = endpoint(bob=V0)
    call, request_id = await call_pending(alice)
    response = models.RpcResponse(request_id=request_id, compressed_payload=b"\x00")
    alice.handle_packet(
        stamped(DataPacket(destination_identities=["alice"], rpc_response=response), "bob")
    )
    await settle()
    assert not call.done()
    assert "without payload or error" in caplog.text
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert alice.client.pending_calls == 0
    await alice.aclose()


async def test_failed_response_stream_fails_the_call_with_1500(bridge: Bridge) -> None:
    alice = bridge.join("alice")
    bob = bridge.join("bob")
    bob.server.register_rpc_method("echo", echo)

    def abort_response(sender: str, packet: DataPacket) -> DataPacket:
        if packet.WhichOneof("value") == "stream_header" and packet.stream_header.topic == (
            c.RPC_RESPONSE_TOPIC
        ):
            packet.stream_header.compression = c.COMPRESSION_DEFLATE_RAW
            packet.stream_header.inline_content = b"\xffnot deflate"
        return packet

    bridge.tamper = abort_response
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(destination_identity="bob", method="echo", payload="x")
    assert (caught.value.code, caught.value.data) == (
        E.APPLICATION_ERROR,
        "Error reading RPC response payload",
    )


async def test_response_stream_without_request_id_is_ignored(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    alice = bridge.join("alice")
    mallory = bridge.join("mallory")
    await mallory.streams_out.send_text("x", topic=c.RPC_RESPONSE_TOPIC)
    await settle()
    assert alice.client.pending_calls == 0
    assert "without a request id" in caplog.text


# -- local disconnect -------------------------------------------------------------------------


async def test_local_close_fails_pending_calls_and_refuses_new_ones() -> None:
    # This library's choice: LiveKit's SDKs leave pending calls to their timers.
    alice, _ = endpoint(bob=V1)
    call, _ = await call_pending(alice)
    await alice.aclose()
    with pytest.raises(RpcError) as caught:
        await call
    assert caught.value.code == E.RECIPIENT_DISCONNECTED
    with pytest.raises(RpcError) as caught:
        await alice.client.perform_rpc(destination_identity="bob", method="m", payload="")
    assert caught.value.code == E.SEND_FAILED
    assert rpc_timers(alice) == []


async def test_cancelled_call_is_forgotten() -> None:
    alice, _ = endpoint(bob=V0)
    call, _ = await call_pending(alice)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert alice.client.pending_calls == 0
    assert rpc_timers(alice) == []
    await alice.aclose()
