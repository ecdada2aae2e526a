"""rpc/server.py: acks, handler invocation, errors and the choice of response transport."""

from __future__ import annotations

import asyncio

import pytest
from livekit.protocol import models

from livekit_rpc import (
    OutgoingDataStreamManager,
    RpcEndpoint,
    RpcError,
    RpcInvocationData,
    RpcServerManager,
    StreamLimits,
)
from livekit_rpc.rpc.server import parse_int_leniently
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.packets import DataPacket, rpc_request_packet

from .helpers import (
    V0,
    V1,
    V2_ALL,
    V2_DEFLATE,
    Wire,
    chunk,
    directory,
    endpoint,
    header,
    settle,
    stamped,
    trailer,
)

E = RpcError.ErrorCode


def v1_request(
    request_id: str = "r1",
    method: str = "m",
    payload: str = "p",
    *,
    timeout_ms: int = 8000,
    version: int = 1,
    caller: str = "alice",
) -> DataPacket:
    return stamped(
        DataPacket(
            kind=DataPacket.Kind.RELIABLE,
            destination_identities=["bob"],
            rpc_request=models.RpcRequest(
                id=request_id,
                method=method,
                payload=payload,
                response_timeout_ms=timeout_ms,
                version=version,
            ),
        ),
        caller,
    )


def v2_attributes(
    request_id: str = "r1", method: str = "m", timeout: str = "8000", version: str = "2"
):
    return {
        c.ATTR_REQUEST_ID: request_id,
        c.ATTR_METHOD: method,
        c.ATTR_RESPONSE_TIMEOUT_MS: timeout,
        c.ATTR_VERSION: version,
    }


def v2_request(
    payload: bytes = b"p", attributes: dict[str, str] | None = None, caller: str = "alice"
):
    return header(
        "req-stream",
        sender=caller,
        topic=c.RPC_REQUEST_TOPIC,
        inline=payload,
        total_length=len(payload),
        attributes=v2_attributes() if attributes is None else attributes,
    )


def summary(wire: Wire) -> list[tuple[str, ...]]:
    """Packets as ("ack", id), ("ok", id, payload), ("error", id, code) or ("stream", topic)."""
    out: list[tuple[str, ...]] = []
    for p in wire.packets:
        which = p.WhichOneof("value")
        if which == "rpc_ack":
            out.append(("ack", p.rpc_ack.request_id))
        elif which == "rpc_response":
            r = p.rpc_response
            if r.WhichOneof("value") == "error":
                out.append(("error", r.request_id, str(r.error.code)))
            else:
                out.append(("ok", r.request_id, r.payload))
        elif which == "stream_header":
            out.append(("stream", p.stream_header.topic))
    return out


def error_of(wire: Wire) -> models.RpcError:
    (packet,) = [p for p in wire.packets if p.WhichOneof("value") == "rpc_response"]
    assert packet.rpc_response.WhichOneof("value") == "error"
    return packet.rpc_response.error


async def serve(bob: RpcEndpoint, *packets: DataPacket, rounds: int = 20) -> None:
    for packet in packets:
        bob.handle_packet(packet)
    await settle(rounds)


# -- v1 ---------------------------------------------------------------------------------------


async def test_v1_ack_first_then_payload_response() -> None:
    bob, wire = endpoint(alice=V0)
    bob.server.register_rpc_method("m", lambda data: "result")
    await serve(bob, v1_request())
    assert summary(wire) == [("ack", "r1"), ("ok", "r1", "result")]
    assert all(list(p.destination_identities) == ["alice"] for p in wire.packets)
    await bob.aclose()


async def test_handler_receives_exact_invocation_data() -> None:
    bob, _ = endpoint(alice=V0)
    seen: list[RpcInvocationData] = []

    def record(data: RpcInvocationData) -> str:
        seen.append(data)
        return ""

    bob.server.register_rpc_method("m", record)
    await serve(bob, v1_request("id-1", payload="héllo", timeout_ms=12345))
    await serve(bob, v2_request("wörld".encode(), v2_attributes("id-2", timeout="9000")))
    assert seen == [
        RpcInvocationData("id-1", "alice", "héllo", 12.345),
        RpcInvocationData("id-2", "alice", "wörld", 9.0),
    ]
    await bob.aclose()


@pytest.mark.parametrize("version", [0, 2, 7])
async def test_v1_version_mismatch(version: int) -> None:
    bob, wire = endpoint(alice=V0)
    bob.server.register_rpc_method("m", lambda data: "never")
    await serve(bob, v1_request(version=version))
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "1404")]
    assert error_of(wire).message == "Unsupported RPC version"
    await bob.aclose()


@pytest.mark.parametrize("transport", ["v1", "v2"])
async def test_unknown_method_is_1400(transport: str) -> None:
    bob, wire = endpoint(alice=V2_ALL)
    request = (
        v1_request(method="nope")
        if transport == "v1"
        else v2_request(attributes=v2_attributes(method="nope"))
    )
    await serve(bob, request)
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "1400")]
    assert error_of(wire).message == "Method not supported at destination"
    await bob.aclose()


@pytest.mark.parametrize("transport", ["v1", "v2"])
async def test_plain_exception_is_1500_with_uncaught_error_data(transport: str) -> None:
    bob, wire = endpoint(alice=V2_ALL)

    def boom(data: RpcInvocationData) -> str:
        raise ValueError("boom")

    bob.server.register_rpc_method("m", boom)
    await serve(bob, v1_request() if transport == "v1" else v2_request())
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "1500")]
    error = error_of(wire)
    assert (error.message, error.data) == (
        "Application error in method handler",
        "Uncaught error: boom",
    )
    await bob.aclose()


@pytest.mark.parametrize("transport", ["v1", "v2"])
async def test_rpc_error_passes_through_as_a_packet(transport: str) -> None:
    bob, wire = endpoint(alice=V2_ALL)

    async def fail(data: RpcInvocationData) -> str:
        raise RpcError(101, "some-error-message", "details")

    bob.server.register_rpc_method("m", fail)
    await serve(bob, v1_request() if transport == "v1" else v2_request())
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "101")]
    error = error_of(wire)
    assert (error.message, error.data) == ("some-error-message", "details")
    assert wire.of_kind("stream_header") == []  # errors never travel as streams
    await bob.aclose()


async def test_handler_returning_none_or_a_non_string() -> None:
    bob, wire = endpoint(alice=V0)
    bob.server.register_rpc_method("none", lambda data: None)  # type: ignore[arg-type,return-value]
    bob.server.register_rpc_method("int", lambda data: 5)  # type: ignore[arg-type,return-value]
    await serve(bob, v1_request("a", "none"), v1_request("b", "int"))
    assert ("ok", "a", "") in summary(wire)
    assert ("error", "b", "1500") in summary(wire)
    await bob.aclose()


# -- response transport -----------------------------------------------------------------------


async def test_v1_caller_gets_a_packet_and_1504_when_too_large() -> None:
    bob, wire = endpoint(alice=V0)
    bob.server.register_rpc_method("fits", lambda data: "é" * 7680)
    bob.server.register_rpc_method("big", lambda data: "é" * 7681)
    await serve(bob, v1_request("a", "fits"), v1_request("b", "big"))
    assert ("ok", "a", "é" * 7680) in summary(wire)
    assert ("error", "b", "1504") in summary(wire)
    assert wire.of_kind("stream_header") == []
    await bob.aclose()


@pytest.mark.parametrize("caller", [V1, V2_DEFLATE])
async def test_v1_request_from_a_stream_capable_caller_is_answered_with_a_stream(caller) -> None:  # type: ignore[no-untyped-def]
    bob, wire = endpoint(alice=caller)
    bob.server.register_rpc_method("m", lambda data: "x" * 20000)
    await serve(bob, v1_request())
    (response,) = wire.of_kind("stream_header")
    assert response.stream_header.topic == c.RPC_RESPONSE_TOPIC
    assert list(response.destination_identities) == ["alice"]
    assert dict(response.stream_header.attributes) == {c.ATTR_REQUEST_ID: "r1"}
    assert wire.of_kind("rpc_response") == []
    assert summary(wire)[0] == ("ack", "r1")
    await bob.aclose()


async def test_v2_request_from_an_unknown_caller_is_answered_with_a_stream() -> None:
    # This library's choice: a caller that sent a stream reads streams (LiveKit's SDKs
    # would answer with a v1 packet because the caller is not in their participant table).
    bob, wire = endpoint()
    bob.server.register_rpc_method("m", lambda data: "hello")
    await serve(bob, v2_request(caller="stranger"))
    (response,) = wire.of_kind("stream_header")
    assert response.stream_header.topic == c.RPC_RESPONSE_TOPIC
    assert list(response.destination_identities) == ["stranger"]
    assert response.stream_header.compression == c.COMPRESSION_NONE  # nothing known about it
    assert not response.stream_header.HasField("inline_content")
    await bob.aclose()


async def test_response_stream_send_failure_becomes_1505() -> None:
    bob, wire = endpoint(alice=V2_ALL)
    bob.server.register_rpc_method("m", lambda data: "x")
    original = wire.send

    async def fail_streams(packet: DataPacket) -> None:
        if packet.WhichOneof("value") == "stream_header":
            raise ConnectionError("stream refused")
        await original(packet)

    bob.streams_out._send = fail_streams
    await serve(bob, v2_request())
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "1505")]
    assert error_of(wire).data == "stream refused"
    await bob.aclose()


# -- v2 request parsing -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "error_id"),
    [
        ({c.ATTR_METHOD: "m", c.ATTR_RESPONSE_TIMEOUT_MS: "8000", c.ATTR_VERSION: "2"}, ""),
        (v2_attributes(method=""), "r1"),
        (v2_attributes(timeout="abc"), "r1"),
        (v2_attributes(version="two"), "r1"),
        ({c.ATTR_REQUEST_ID: "r1", c.ATTR_METHOD: "m", c.ATTR_VERSION: "2"}, "r1"),
        ({c.ATTR_REQUEST_ID: "r1", c.ATTR_METHOD: "m", c.ATTR_RESPONSE_TIMEOUT_MS: "1"}, "r1"),
    ],
)
async def test_malformed_v2_attributes_get_no_ack_and_1500(
    attributes: dict[str, str], error_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    bob, wire = endpoint(alice=V2_ALL)
    bob.server.register_rpc_method("m", lambda data: "never")
    await serve(bob, v2_request(attributes=attributes))
    assert summary(wire) == [("error", error_id, "1500")]
    assert error_of(wire).data == "RPC data stream malformed"
    assert "malformed RPC request stream" in caplog.text
    await bob.aclose()


@pytest.mark.parametrize(
    ("timeout_ms", "seconds"), [("8000.7", 8.0), ("12abc", 0.012), (" +9000", 9.0)]
)
async def test_v2_numbers_are_read_leniently(timeout_ms: str, seconds: float) -> None:
    bob, _ = endpoint(alice=V2_ALL)
    seen: list[float] = []

    def record(data: RpcInvocationData) -> str:
        seen.append(data.response_timeout)
        return "ok"

    bob.server.register_rpc_method("m", record)
    await serve(bob, v2_request(attributes=v2_attributes(timeout=timeout_ms, version="2.0")))
    assert seen == [seconds]
    await bob.aclose()


async def test_v2_huge_timeout_still_gets_an_answer() -> None:
    bob, wire = endpoint(alice=V2_ALL)
    seen: list[float] = []

    def record(data: RpcInvocationData) -> str:
        seen.append(data.response_timeout)
        return "ok"

    bob.server.register_rpc_method("m", record)
    await serve(bob, v2_request(attributes=v2_attributes(timeout="9" * 60)))
    assert summary(wire) == [("ack", "r1"), ("stream", c.RPC_RESPONSE_TOPIC)]
    assert seen == [(2**32 - 1) / 1000]  # capped at the largest v1 timeout
    await bob.aclose()


async def test_v2_absurdly_long_number_is_malformed() -> None:
    bob, wire = endpoint(alice=V2_ALL)
    bob.server.register_rpc_method("m", lambda data: "never")
    await serve(bob, v2_request(attributes=v2_attributes(timeout="9" * 5000)))
    assert summary(wire) == [("error", "r1", "1500")]
    await bob.aclose()


async def test_v2_version_mismatch() -> None:
    bob, wire = endpoint(alice=V2_ALL)
    bob.server.register_rpc_method("m", lambda data: "never")
    await serve(bob, v2_request(attributes=v2_attributes(version="3")))
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "1404")]
    await bob.aclose()


async def test_v2_unreadable_payload_is_1500() -> None:
    bob, wire = endpoint(alice=V2_ALL)
    bob.server.register_rpc_method("m", lambda data: "never")
    bob.handle_packet(
        header("s", sender="alice", topic=c.RPC_REQUEST_TOPIC, attributes=v2_attributes())
    )
    bob.handle_packet(chunk("s", 0, b"part", sender="alice"))
    await serve(bob, trailer("s", reason="cancelled", sender="alice"))
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "1500")]
    assert error_of(wire).data == "Error reading RPC request payload"
    await bob.aclose()


async def test_v2_ack_is_sent_before_the_payload_arrives() -> None:
    bob, wire = endpoint(alice=V1)
    bob.server.register_rpc_method("m", lambda data: data.payload.upper())
    bob.handle_packet(
        header("s", sender="alice", topic=c.RPC_REQUEST_TOPIC, attributes=v2_attributes())
    )
    await settle()
    assert summary(wire) == [("ack", "r1")]
    bob.handle_packet(chunk("s", 0, b"chunked", sender="alice"))
    await serve(bob, trailer("s", sender="alice"))
    assert summary(wire)[1] == ("stream", c.RPC_RESPONSE_TOPIC)
    assert [p.stream_chunk.content for p in wire.of_kind("stream_chunk")] == [b"CHUNKED"]
    await bob.aclose()


async def test_v2_request_stream_too_large_for_the_limits_is_1500() -> None:
    wire = Wire()
    from .helpers import directory

    bob = RpcEndpoint(
        peers=directory(alice=V1), send_packet=wire.send, limits=StreamLimits(max_stream_bytes=10)
    )
    bob.server.register_rpc_method("m", lambda data: "never")
    bob.handle_packet(
        header("s", sender="alice", topic=c.RPC_REQUEST_TOPIC, attributes=v2_attributes())
    )
    await serve(bob, chunk("s", 0, b"x" * 11, sender="alice"))
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "1500")]
    await bob.aclose()


# -- handler lifetime -------------------------------------------------------------------------


async def test_handler_is_cancelled_at_its_timeout() -> None:
    bob, wire = endpoint(alice=V0)
    cleaned_up = asyncio.Event()

    async def forever(data: RpcInvocationData) -> str:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up.set()
        return "never"

    bob.server.register_rpc_method("m", forever)
    bob.handle_packet(v1_request(timeout_ms=50))
    await asyncio.wait_for(cleaned_up.wait(), 1)
    await settle()
    assert summary(wire) == [("ack", "r1"), ("error", "r1", "1502")]
    await bob.aclose()


async def test_aclose_cancels_running_handlers() -> None:
    bob, wire = endpoint(alice=V0)
    cleaned_up = asyncio.Event()

    async def forever(data: RpcInvocationData) -> str:
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up.set()
        return "never"

    bob.server.register_rpc_method("m", forever)
    await serve(bob, v1_request())
    await bob.aclose()
    assert cleaned_up.is_set()
    assert summary(wire) == [("ack", "r1")]


async def test_requests_run_concurrently() -> None:
    bob, wire = endpoint(alice=V0)
    both_running = asyncio.Event()
    running = 0

    async def meet(data: RpcInvocationData) -> str:
        nonlocal running
        running += 1
        if running == 2:
            both_running.set()
        await asyncio.wait_for(both_running.wait(), 1)
        return data.payload

    bob.server.register_rpc_method("m", meet)
    await serve(bob, v1_request("a", payload="1"), v1_request("b", payload="2"))
    assert sorted(s for s in summary(wire) if s[0] == "ok") == [("ok", "a", "1"), ("ok", "b", "2")]
    await bob.aclose()


# -- registry ---------------------------------------------------------------------------------


async def test_sync_async_and_decorator_registration() -> None:
    bob, wire = endpoint(alice=V0)

    @bob.server.register_rpc_method("decorated")
    async def decorated(data: RpcInvocationData) -> str:
        return "async:" + data.payload

    assert decorated.__name__ == "decorated"  # the decorator returns the function
    returned = bob.server.register_rpc_method("plain", lambda data: "sync:" + data.payload)
    assert returned(RpcInvocationData("i", "c", "x", 1.0)) == "sync:x"
    await serve(bob, v1_request("a", "decorated", "1"), v1_request("b", "plain", "2"))
    assert ("ok", "a", "async:1") in summary(wire)
    assert ("ok", "b", "sync:2") in summary(wire)
    await bob.aclose()


async def test_duplicate_registration_raises_and_unregister() -> None:
    bob, wire = endpoint(alice=V0)
    bob.server.register_rpc_method("m", lambda data: "first")
    with pytest.raises(ValueError, match="already registered"):
        bob.server.register_rpc_method("m", lambda data: "second")
    bob.server.unregister_rpc_method("m")
    bob.server.unregister_rpc_method("m")  # no-op
    await serve(bob, v1_request())
    assert ("error", "r1", "1400") in summary(wire)
    bob.server.register_rpc_method("m", lambda data: "again")
    await serve(bob, v1_request("r2"))
    assert ("ok", "r2", "again") in summary(wire)
    await bob.aclose()


async def test_ack_send_failure_does_not_stop_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    bob, wire = endpoint(alice=V0)
    ran = asyncio.Event()

    def handler(data: RpcInvocationData) -> str:
        ran.set()
        return "x"

    bob.server.register_rpc_method("m", handler)
    wire.fail = ConnectionError("down")
    await serve(bob, v1_request())
    assert ran.is_set()
    assert "could not be sent" in caplog.text
    await bob.aclose()


# -- parse_int_leniently ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("8000", 8000),
        ("8000.7", 8000),
        ("12abc", 12),
        ("  42", 42),
        ("\u00a07", 7),
        ("\ufeff7", 7),
        ("+5", 5),
        ("-5", -5),
        ("0x10", 0),
        ("", None),
        ("abc", None),
        ("+", None),
        (None, None),
        ("٣", None),  # JavaScript's parseInt reads ASCII digits only
        ("\x1c5", None),  # … and this is not JavaScript whitespace
        ("0" * 5000 + "5", 5),
        ("9" * 100, int("9" * 100)),
        ("9" * 101, None),  # absurdly long: refused (int() itself refuses 4300+ digits)
        ("-" + "9" * 5000, None),
    ],
)
def test_parse_int_leniently_matches_javascript_parse_int(
    text: str | None, value: int | None
) -> None:
    assert parse_int_leniently(text) == value


async def test_requests_in_progress_per_caller_are_bounded() -> None:
    peers = directory(bob=V0)
    server = RpcServerManager(
        streams=OutgoingDataStreamManager(None, peers), peers=peers, max_requests_per_caller=2
    )
    sent: list[DataPacket] = []
    server.on("send_packet", sent.append)
    release = asyncio.Event()

    async def slow(data: RpcInvocationData) -> str:
        await release.wait()
        return data.payload

    server.register_rpc_method("slow", slow)

    def request(request_id: str) -> None:
        packet = rpc_request_packet(
            request_id=request_id,
            method="slow",
            payload=request_id,
            response_timeout_ms=10_000,
            destination="alice",
        )
        server.handle_request(packet.rpc_request, "bob")

    for request_id in ("r1", "r2", "r3"):
        request(request_id)
    await settle()
    refused = [p.rpc_response for p in sent if p.HasField("rpc_response")]
    assert [(r.request_id, r.error.code) for r in refused] == [("r3", 1500)]
    assert "too many requests in progress" in refused[0].error.data
    assert {p.rpc_ack.request_id for p in sent if p.HasField("rpc_ack")} == {"r1", "r2", "r3"}

    release.set()
    await settle()
    request("r4")  # room again once the first two are answered
    await settle()
    answers = {
        p.rpc_response.request_id: p.rpc_response for p in sent if p.HasField("rpc_response")
    }
    assert answers["r4"].payload == "r4"
    assert answers["r1"].payload == "r1" and answers["r2"].payload == "r2"
    await server.aclose()
