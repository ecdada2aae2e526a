"""Interop: RPC between our ``RpcEndpoint`` ("py") and livekit-client 2.23.0's own RPC
managers running in Node ("js"), through the fake SFU, in both directions.

Each side's view of the other's ``client_protocol`` picks the transport: 0 = v1 packets,
1 = v2 request/response data streams (chunked, uncompressed), 2 = v2 with inline packets and
deflate-raw (both sides advertise the capability). Assertions are on what the other side
observed (results, invocations, error code/message/data) and on the packets that crossed.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from livekit.protocol import models

from livekit_rpc import RpcError, RpcInvocationData
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.packets import stream_header_packet

from .conftest import (
    JS_CAPABILITIES,
    NONE,
    PY_CAPABILITIES,
    MakePair,
    Pair,
    expected_form,
    mixed_text,
    normalized,
    streams_on_wire,
)
from .node_peer import (
    RemotePeer,
    gen_json,
    gen_random,
    gen_repeat,
    generate_text,
    sha256_hex,
)
from .sfu import Crossing

DataPacket = models.DataPacket
DEFLATE_CAP = c.CAP_COMPRESSION_DEFLATE_RAW
V1_LIMIT = c.MAX_V1_PAYLOAD_BYTES


# ---- payloads ---------------------------------------------------------------------------------


@functools.cache
def _generated(spec_items: tuple[tuple[str, Any], ...]) -> str:
    return generate_text(dict(spec_items))


@dataclass(frozen=True)
class Payload:
    """A request/response text: a literal, or a harness generator spec (so that large
    payloads need not cross the Node pipe; both languages generate identical text)."""

    name: str
    literal: str | None = None
    spec: tuple[tuple[str, Any], ...] | None = None

    @staticmethod
    def gen(name: str, spec: dict[str, Any]) -> Payload:
        return Payload(name, spec=tuple(sorted(spec.items())))

    @property
    def text(self) -> str:
        if self.literal is not None:
            return self.literal
        assert self.spec is not None
        return _generated(self.spec)

    @property
    def size(self) -> int:
        return len(self.text.encode())

    def js_payload(self) -> dict[str, Any]:
        """``perform_rpc`` keyword arguments for the JS side."""
        if self.literal is not None:
            return {"payload": self.literal}
        return {"payload_gen": dict(self.spec or ())}

    def js_return(self) -> dict[str, Any]:
        """A JS handler behaviour that returns this text."""
        if self.literal is not None:
            return {"kind": "return", "value": self.literal}
        return {"kind": "return", "value_gen": dict(self.spec or ())}


ASCII_0 = Payload("ascii-0B", literal="")
ASCII_1 = Payload("ascii-1B", literal="x")
ASCII_15360 = Payload.gen("ascii-15360B", gen_random(15_360, seed=3))
ASCII_15361 = Payload.gen("ascii-15361B", gen_random(15_361, seed=4))
JSON_15360 = Payload.gen("json-15360B", gen_json(15_360))
JSON_15361 = Payload.gen("json-15361B", gen_json(15_361))
E_ACUTE_15360 = Payload.gen("e-acute-15360B", gen_repeat("é", 7_680))
CJK_15361 = Payload("cjk-15361B", literal="世" * 5_120 + "x")
EMOJI_AT_15000 = Payload("emoji-at-15000", literal="a" * 14_999 + "😀" + "b" * 10)
JSON_1MB = Payload.gen("json-1MB", gen_json(1_000_000))
MIXED_1MB = Payload("multibyte-1MB", literal=mixed_text(1_000_000, seed=7))
RANDOM_5MB = Payload.gen("ascii-5MB", gen_random(5_000_000, seed=5))

ALL_PROTOCOLS = (0, 1, 2)
STREAM_PROTOCOLS = (1, 2)
MATRIX = [
    *((p, proto) for p in (ASCII_0, ASCII_1, ASCII_15360, ASCII_15361) for proto in ALL_PROTOCOLS),
    *(
        (p, proto)
        for p in (JSON_15360, JSON_15361, E_ACUTE_15360, CJK_15361, EMOJI_AT_15000)
        for proto in ALL_PROTOCOLS
    ),
    *((p, proto) for p in (JSON_1MB, MIXED_1MB, RANDOM_5MB) for proto in STREAM_PROTOCOLS),
]
MATRIX_PARAMS = [pytest.param(p, proto, id=f"p{proto}-{p.name}") for p, proto in MATRIX]


# ---- wire checks ------------------------------------------------------------------------------


def _only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def check_request_on_wire(
    pair: Pair,
    *,
    caller: str,
    request_id: str,
    method: str,
    payload: str,
    protocol: int,
    timeout_ms: int = 15_000,
) -> Crossing:
    """The caller's request crossed as v1 (protocol 0) or as a v2 stream (1, 2), exactly as
    livekit-client frames it; returns the request's first packet."""
    callee = "js" if caller == "py" else "py"
    requests = [
        x for x in pair.sent_by(caller, "rpc_request") if x.packet.rpc_request.id == request_id
    ]
    streams = [
        s
        for s in streams_on_wire(pair.sfu, caller, c.RPC_REQUEST_TOPIC)
        if s.info.attributes.get(c.ATTR_REQUEST_ID) == request_id
    ]
    if protocol == 0:
        assert streams == []
        crossing: Crossing = _only(requests)
        assert list(crossing.packet.destination_identities) == [callee]
        request = crossing.packet.rpc_request
        assert (request.method, request.payload, request.version) == (method, payload, 1)
        assert request.response_timeout_ms == timeout_ms
        assert not request.compressed_payload
        return crossing
    assert requests == []
    stream = _only(streams)
    assert list(stream.header.packet.destination_identities) == [callee]
    assert dict(stream.info.attributes) == {
        c.ATTR_REQUEST_ID: request_id,
        c.ATTR_METHOD: method,
        c.ATTR_RESPONSE_TIMEOUT_MS: str(timeout_ms),
        c.ATTR_VERSION: "2",
    }
    _check_text_stream(pair, stream, payload, protocol, callee)
    return stream.header


def check_response_on_wire(
    pair: Pair, *, callee: str, request_id: str, payload: str, protocol: int
) -> None:
    """The callee acked first (v1 packet, whatever the version), then answered with a v1
    payload packet (caller seen as protocol 0) or a v2 stream on ``lk.rpc_response``."""
    caller = "js" if callee == "py" else "py"
    acks = [x for x in pair.sent_by(callee, "rpc_ack") if x.packet.rpc_ack.request_id == request_id]
    ack = _only(acks)
    assert list(ack.packet.destination_identities) == [caller]
    responses = [
        x
        for x in pair.sent_by(callee, "rpc_response")
        if x.packet.rpc_response.request_id == request_id
    ]
    streams = [
        s
        for s in streams_on_wire(pair.sfu, callee, c.RPC_RESPONSE_TOPIC)
        if s.info.attributes.get(c.ATTR_REQUEST_ID) == request_id
    ]
    if protocol == 0:
        assert streams == []
        response = _only(responses)
        assert response.index > ack.index
        assert list(response.packet.destination_identities) == [caller]
        assert response.packet.rpc_response.WhichOneof("value") == "payload"
        assert response.packet.rpc_response.payload == payload
        return
    assert responses == []
    stream = _only(streams)
    assert stream.header.index > ack.index
    assert list(stream.header.packet.destination_identities) == [caller]
    assert dict(stream.info.attributes) == {c.ATTR_REQUEST_ID: request_id}
    _check_text_stream(pair, stream, payload, protocol, caller)


def _check_text_stream(pair: Pair, stream: Any, payload: str, protocol: int, to: str) -> None:
    data = payload.encode()
    info = stream.info
    assert info.WhichOneof("content_header") == "text_header"
    assert info.mime_type == "text/plain"
    assert info.HasField("total_length") and info.total_length == len(data)
    assert stream.content() == data
    # Both sides compress only to a v2 peer that advertises deflate-raw.
    deflate = protocol >= 2 and (
        DEFLATE_CAP in (pair.py_sees_js[1] if to == "js" else pair.js_sees_py.capabilities)
    )
    form, compression = expected_form(
        data, v2=protocol >= 2, deflate=deflate, observed=stream.header
    )
    assert ("inline" if stream.inline else "chunked", info.compression) == (form, compression)
    if not stream.inline:
        assert stream.trailer is not None and stream.trailer.packet.stream_trailer.reason == ""
        assert [x.packet.stream_chunk.chunk_index for x in stream.chunks] == list(
            range(len(stream.chunks))
        )
        assert all(0 < size <= c.STREAM_CHUNK_SIZE for size in stream.chunk_sizes)
        if compression == NONE:  # split on UTF-8 boundaries, each chunk valid on its own
            for x in stream.chunks:
                x.packet.stream_chunk.content.decode()
            assert all(size > c.STREAM_CHUNK_SIZE - 4 for size in stream.chunk_sizes[:-1])
        else:  # compressed bytes re-cut into exact 15,000-byte chunks
            assert all(size == c.STREAM_CHUNK_SIZE for size in stream.chunk_sizes[:-1])


# ---- unary round trips: the size/encoding/protocol matrix -------------------------------------


@pytest.mark.parametrize(("payload", "protocol"), MATRIX_PARAMS)
async def test_py_calls_js(make_pair: MakePair, payload: Payload, protocol: int) -> None:
    pair = await make_pair(protocol)
    await pair.js.register_rpc("echo")
    await pair.js.register_rpc("give", payload.js_return())
    text = payload.text

    if protocol == 0 and payload.size > V1_LIMIT:
        # Caller side: refused locally, nothing is sent.
        with pytest.raises(RpcError) as refused:
            await pair.py.client.perform_rpc(destination_identity="js", method="echo", payload=text)
        assert (refused.value.code, refused.value.message) == (1402, "Request payload too large")
        assert refused.value.data is None
        await pair.settle()
        assert pair.sent_by("py") == []
        # Callee side: livekit-client refuses a v1 response over the limit.
        with pytest.raises(RpcError) as too_large:
            await pair.py.client.perform_rpc(destination_identity="js", method="give", payload="")
        assert (too_large.value.code, too_large.value.message) == (
            1504,
            "Response payload too large",
        )
        assert too_large.value.data is None
        await pair.settle()
        (error,) = pair.sent_by("js", "rpc_response")
        assert error.packet.rpc_response.WhichOneof("value") == "error"
        assert [x.case for x in pair.sent_by("js")] == ["rpc_ack", "rpc_response"]
        return

    result = await pair.py.client.perform_rpc(
        destination_identity="js", method="echo", payload=text
    )

    assert result == text
    invoked = await pair.js.next_event("rpc_invoked", method="echo")
    assert invoked["caller_identity"] == "py"
    assert invoked["response_timeout_ms"] == 15_000
    assert (invoked["payload_len"], invoked["payload_sha256"]) == (payload.size, sha256_hex(text))
    handled = await pair.js.next_event("rpc_handled", method="echo")
    assert handled["ok"] and handled["response_sha256"] == sha256_hex(text)
    await pair.settle()
    request_id = invoked["request_id"]
    check_request_on_wire(
        pair, caller="py", request_id=request_id, method="echo", payload=text, protocol=protocol
    )
    check_response_on_wire(
        pair, callee="js", request_id=request_id, payload=text, protocol=protocol
    )
    assert pair.py.client.pending_calls == 0


@pytest.mark.parametrize(("payload", "protocol"), MATRIX_PARAMS)
async def test_js_calls_py(make_pair: MakePair, payload: Payload, protocol: int) -> None:
    pair = await make_pair(protocol)
    pair.serve_echo()
    text = payload.text
    pair.serve("give", lambda _: text)

    if protocol == 0 and payload.size > V1_LIMIT:
        refused = await pair.js.call_rpc("py", "echo", **payload.js_payload())
        assert refused["ok"] is False and refused["request_id"] is None
        assert (refused["code"], refused["message"]) == (1402, "Request payload too large")
        await pair.settle()
        assert pair.sent_by("js") == [] and pair.invocations == []
        # Callee side: we refuse a v1 response over the limit, as livekit-client does.
        too_large = await pair.js.call_rpc("py", "give", "")
        assert too_large["ok"] is False
        assert (too_large["code"], too_large["message"], too_large["data"]) == (
            1504,
            "Response payload too large",
            None,
        )
        await pair.settle()
        assert [x.case for x in pair.sent_by("py")] == ["rpc_ack", "rpc_response"]
        (error,) = pair.sent_by("py", "rpc_response")
        assert error.packet.rpc_response.WhichOneof("value") == "error"
        return

    result = await pair.js.call_rpc("py", "echo", **payload.js_payload())

    assert result["ok"], result
    assert (result["payload_len"], result["payload_sha256"]) == (payload.size, sha256_hex(text))
    (invocation,) = pair.invocations
    assert invocation.payload == text
    assert invocation.caller_identity == "js"
    assert invocation.request_id == result["request_id"]
    assert invocation.response_timeout == 15.0
    await pair.settle()
    request_id = result["request_id"]
    check_request_on_wire(
        pair, caller="js", request_id=request_id, method="echo", payload=text, protocol=protocol
    )
    check_response_on_wire(
        pair, callee="py", request_id=request_id, payload=text, protocol=protocol
    )


# ---- errors -----------------------------------------------------------------------------------


def _error_of(crossing: Crossing) -> tuple[int, str, str]:
    response = crossing.packet.rpc_response
    assert response.WhichOneof("value") == "error"
    return response.error.code, response.error.message, response.error.data


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_js_handler_errors_reach_py(make_pair: MakePair, protocol: int) -> None:
    pair = await make_pair(protocol)
    await pair.js.register_rpc(
        "fail", {"kind": "error", "code": 4242, "message": "nope ✗", "data": "détails ✓ 😀"}
    )
    await pair.js.register_rpc("fail-no-data", {"kind": "error", "code": 101, "message": "m"})
    await pair.js.register_rpc(
        "fail-huge",
        {"kind": "error", "code": 2001, "message": "😀" * 100, "data": "é" * 10_000},
    )
    await pair.js.register_rpc("boom", {"kind": "throw", "message": "kaput"})
    await pair.js.register_rpc("boom-value", {"kind": "throw_value", "value": "a string"})
    await pair.js.register_rpc("nothing", "return_undefined")

    async def call(method: str) -> RpcError:
        with pytest.raises(RpcError) as raised:
            await pair.py.client.perform_rpc(destination_identity="js", method=method, payload="x")
        return raised.value

    fail = await call("fail")
    assert (fail.code, fail.message, fail.data) == (4242, "nope ✗", "détails ✓ 😀")
    no_data = await call("fail-no-data")
    assert (no_data.code, no_data.message, no_data.data) == (101, "m", None)
    # livekit-client truncates on whole characters before sending; we keep what arrives.
    huge = await call("fail-huge")
    assert (huge.code, huge.message, huge.data) == (2001, "😀" * 64, "é" * 7_680)
    # A plain exception: APPLICATION_ERROR; livekit-client puts its message in data on v1 only.
    boom = await call("boom")
    assert (boom.code, boom.message) == (1500, "Application error in method handler")
    assert boom.data == ("Uncaught error: kaput" if protocol == 0 else None)
    boom_value = await call("boom-value")
    assert boom_value.code == 1500
    assert boom_value.data == ("Uncaught error: a string" if protocol == 0 else None)
    missing = await call("missing")
    assert (missing.code, missing.message, missing.data) == (
        1400,
        "Method not supported at destination",
        None,
    )
    # undefined from the handler is an empty success, not an error.
    assert (
        await pair.py.client.perform_rpc(destination_identity="js", method="nothing", payload="")
        == ""
    )

    await pair.settle()
    errors = [
        _error_of(x)
        for x in pair.sent_by("js", "rpc_response")
        if x.packet.rpc_response.HasField("error")
    ]
    uncaught = "Uncaught error: kaput" if protocol == 0 else ""
    uncaught_value = "Uncaught error: a string" if protocol == 0 else ""
    assert errors == [
        (4242, "nope ✗", "détails ✓ 😀"),
        (101, "m", ""),
        (2001, "😀" * 64, "é" * 7_680),
        (1500, "Application error in method handler", uncaught),
        (1500, "Application error in method handler", uncaught_value),
        (1400, "Method not supported at destination", ""),
    ]
    # Errors travel as packets, never as streams: JS's only stream is the empty success (v2).
    nothing_id = _only(pair.js.take_events("rpc_invoked", method="nothing"))["request_id"]
    response_streams = [
        s.info.attributes[c.ATTR_REQUEST_ID] for s in streams_on_wire(pair.sfu, "js")
    ]
    assert response_streams == ([] if protocol == 0 else [nothing_id])
    assert pair.py.client.pending_calls == 0


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_py_handler_errors_reach_js(make_pair: MakePair, protocol: int) -> None:
    pair = await make_pair(protocol)

    def fail(_: RpcInvocationData) -> str:
        raise RpcError(4243, "non ✗", "ünïcode data 😀")

    def fail_huge(_: RpcInvocationData) -> str:
        raise RpcError(2002, "😀" * 100, "é" * 10_000)

    def boom(_: RpcInvocationData) -> str:
        raise ValueError("kaput")

    pair.serve("fail", fail)
    pair.serve("fail-no-data", lambda _: (_ for _ in ()).throw(RpcError(101, "m")))
    pair.serve("fail-huge", fail_huge)
    pair.serve("boom", boom)
    pair.serve("nothing", lambda _: None)

    fail_result = await pair.js.call_rpc("py", "fail", "x")
    assert fail_result["ok"] is False and fail_result["error_name"] == "RpcError"
    assert (fail_result["code"], fail_result["message"], fail_result["data"]) == (
        4243,
        "non ✗",
        "ünïcode data 😀",
    )
    no_data = await pair.js.call_rpc("py", "fail-no-data", "x")
    assert (no_data["code"], no_data["message"], no_data["data"]) == (101, "m", None)
    huge = await pair.js.call_rpc("py", "fail-huge", "x")
    assert (huge["code"], huge["message"], huge["data"]) == (2002, "😀" * 64, "é" * 7_680)
    # A plain exception: APPLICATION_ERROR; we send its message as data on v1 and v2 alike.
    boom_result = await pair.js.call_rpc("py", "boom", "x")
    assert (boom_result["code"], boom_result["message"], boom_result["data"]) == (
        1500,
        "Application error in method handler",
        "Uncaught error: kaput",
    )
    missing = await pair.js.call_rpc("py", "missing", "x")
    assert (missing["code"], missing["message"], missing["data"]) == (
        1400,
        "Method not supported at destination",
        None,
    )
    nothing = await pair.js.call_rpc("py", "nothing", "")
    assert nothing["ok"] and nothing["payload"] == ""

    await pair.settle()
    errors = [
        _error_of(x)
        for x in pair.sent_by("py", "rpc_response")
        if x.packet.rpc_response.HasField("error")
    ]
    assert errors == [
        (4243, "non ✗", "ünïcode data 😀"),
        (101, "m", ""),
        (2002, "😀" * 64, "é" * 7_680),
        (1500, "Application error in method handler", "Uncaught error: kaput"),
        (1400, "Method not supported at destination", ""),
    ]
    # Every request was acknowledged, before its answer.
    assert len(pair.sent_by("py", "rpc_ack")) == 6


# ---- timeouts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_response_timeout_py_caller(make_pair: MakePair, protocol: int) -> None:
    pair = await make_pair(protocol)
    await pair.js.register_rpc("hang", "never")
    await pair.js.register_rpc("slow", {"kind": "sleep_ms", "ms": 400})

    started = time.monotonic()
    with pytest.raises(RpcError) as hung:
        await pair.py.client.perform_rpc(
            destination_identity="js", method="hang", payload="p", response_timeout=0.3
        )
    elapsed = time.monotonic() - started
    assert (hung.value.code, hung.value.message) == (1502, "Response timeout")
    assert 0.29 <= elapsed < 3
    # The wire carries at least 8000 ms; the local timer uses the caller's value.
    invoked = await pair.js.next_event("rpc_invoked", method="hang")
    assert invoked["response_timeout_ms"] == 8_000
    await pair.settle()
    check_request_on_wire(
        pair,
        caller="py",
        request_id=invoked["request_id"],
        method="hang",
        payload="p",
        protocol=protocol,
        timeout_ms=8_000,
    )

    # A response that arrives after the timeout is dropped quietly.
    with pytest.raises(RpcError) as slow:
        await pair.py.client.perform_rpc(
            destination_identity="js", method="slow", payload="late", response_timeout=0.15
        )
    assert slow.value.code == 1502
    await pair.js.next_event("rpc_handled", method="slow")
    await pair.settle()
    assert pair.py.client.pending_calls == 0


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_response_timeout_js_caller(make_pair: MakePair, protocol: int) -> None:
    pair = await make_pair(protocol)
    forever = asyncio.Event()
    pair.serve("hang", lambda _: forever.wait())

    async def slow(data: RpcInvocationData) -> str:
        await asyncio.sleep(0.4)
        return data.payload

    pair.serve("slow", slow)

    hung = await pair.js.call_rpc("py", "hang", "p", response_timeout_ms=300)
    assert (hung["code"], hung["message"]) == (1502, "Response timeout")
    assert 290 <= hung["elapsed_ms"] < 3_000
    (invocation,) = pair.invocations
    assert invocation.response_timeout == 8.0  # what the wire said
    await pair.settle()
    check_request_on_wire(
        pair,
        caller="js",
        request_id=hung["request_id"],
        method="hang",
        payload="p",
        protocol=protocol,
        timeout_ms=8_000,
    )

    late = await pair.js.call_rpc("py", "slow", "late", response_timeout_ms=150)
    assert late["code"] == 1502
    await asyncio.sleep(0.4)
    await pair.settle()  # our late answer reaches JS, which ignores it
    assert len(pair.sent_by("py", "rpc_ack")) == 2


@pytest.fixture
def short_ack_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(c, "ACK_TIMEOUT_S", 0.3)
    return 0.3


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_ack_timeout_py_caller(
    make_pair: MakePair, protocol: int, short_ack_timeout: float
) -> None:
    pair = await make_pair(protocol)
    await pair.js.register_rpc("slow", {"kind": "sleep_ms", "ms": 500})

    # livekit-client's ack (a v1 packet, for v2 requests too) stops our ack timer: a
    # response later than the ack timeout is still accepted.
    assert (
        await pair.py.client.perform_rpc(destination_identity="js", method="slow", payload="ok")
        == "ok"
    )
    await pair.js.next_event("rpc_handled", method="slow")

    # The ack is lost: CONNECTION_TIMEOUT once the ack timeout passes.
    pair.sfu.interceptor = lambda x: None if x.case == "rpc_ack" else x.packet
    started = time.monotonic()
    with pytest.raises(RpcError) as no_ack:
        await pair.py.client.perform_rpc(destination_identity="js", method="slow", payload="x")
    assert (no_ack.value.code, no_ack.value.message) == (1501, "Connection timeout")
    assert short_ack_timeout * 0.9 <= time.monotonic() - started < 3  # not 7 s
    # Its response still comes, late, and is dropped quietly.
    await pair.js.next_event("rpc_handled", method="slow", timeout=3)
    await pair.settle()

    # The request is lost: the same.
    pair.sfu.interceptor = lambda x: None if x.sender == "py" else x.packet
    with pytest.raises(RpcError) as lost:
        await pair.py.client.perform_rpc(destination_identity="js", method="slow", payload="y")
    assert lost.value.code == 1501
    pair.sfu.interceptor = None
    await pair.settle()
    assert len(pair.js.take_events("rpc_invoked")) == 2  # the last request never arrived
    assert pair.py.client.pending_calls == 0


# ---- disconnects ------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_js_callee_disconnects_mid_call(make_pair: MakePair, protocol: int) -> None:
    pair = await make_pair(protocol)
    await pair.js.register_rpc("hang", "never")
    call = asyncio.create_task(
        pair.py.client.perform_rpc(destination_identity="js", method="hang", payload="p")
    )
    await pair.js.next_event("rpc_invoked", method="hang")

    await pair.disconnect_js()

    with pytest.raises(RpcError) as gone:
        await call
    assert (gone.value.code, gone.value.message) == (1503, "Recipient disconnected")
    assert pair.py.client.pending_calls == 0
    assert "js" not in pair.directory.peers


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_py_callee_disconnects_mid_call(make_pair: MakePair, protocol: int) -> None:
    pair = await make_pair(protocol)
    invoked = asyncio.Event()
    forever = asyncio.Event()

    async def hang(_: RpcInvocationData) -> str:
        invoked.set()
        await forever.wait()
        return "never"

    pair.serve("hang", hang)
    call = await pair.js.perform_rpc("py", "hang", "p")
    await asyncio.wait_for(invoked.wait(), 5)

    await pair.disconnect_py()

    result = await pair.js.rpc_result(call, timeout=5)
    assert (result["code"], result["message"]) == (1503, "Recipient disconnected")


@pytest.mark.parametrize("lost", ["request", "response"])
async def test_broken_payload_stream_fails_with_1500_both_ways(
    make_pair: MakePair, lost: str
) -> None:
    """The last chunk of a v2 request (or response) stream is lost in transit: the reader
    finds too few bytes at the trailer and the call fails with APPLICATION_ERROR, whose data
    says which side could not read, the same on both sides."""
    pair = await make_pair(1)
    await pair.js.register_rpc("echo")
    pair.serve_echo()
    payload = generate_text(gen_random(40_000, seed=12))  # 3 chunks (1 + 2 on the wire)
    topic = c.RPC_REQUEST_TOPIC if lost == "request" else c.RPC_RESPONSE_TOPIC
    victims: set[str] = set()

    def drop_last_chunk(crossing: Crossing) -> DataPacket | None:
        packet = crossing.packet
        if crossing.case == "stream_header" and packet.stream_header.topic == topic:
            victims.add(packet.stream_header.stream_id)
        if (
            crossing.case == "stream_chunk"
            and packet.stream_chunk.stream_id in victims
            and packet.stream_chunk.chunk_index == 2
        ):
            return None
        return packet

    pair.sfu.interceptor = drop_last_chunk
    with pytest.raises(RpcError) as ours:
        await pair.py.client.perform_rpc(destination_identity="js", method="echo", payload=payload)
    theirs = await pair.js.call_rpc("py", "echo", payload)
    await pair.settle()
    pair.sfu.interceptor = None

    expected_data = f"Error reading RPC {lost} payload"
    assert (ours.value.code, ours.value.message, ours.value.data) == (
        1500,
        "Application error in method handler",
        expected_data,
    )
    assert (theirs["code"], theirs["message"], theirs["data"]) == (
        1500,
        "Application error in method handler",
        expected_data,
    )
    assert len(victims) == 2
    # The callee acknowledged before reading, and only handled a request it could read.
    assert len(pair.sent_by("py", "rpc_ack")) == len(pair.sent_by("js", "rpc_ack")) == 1
    assert len(pair.invocations) == (0 if lost == "request" else 1)


# ---- wrong sender -----------------------------------------------------------------------------


def _join_mallory(pair: Pair) -> None:
    pair.sfu.connect("mallory", lambda _: None)


def _forged_response_stream(request_id: str, text: str, to: str) -> DataPacket:
    return stream_header_packet(
        stream_id=f"forged-{request_id}",
        timestamp_ms=int(time.time() * 1000),
        topic=c.RPC_RESPONSE_TOPIC,
        mime_type="text/plain",
        total_length=len(text.encode()),
        attributes={c.ATTR_REQUEST_ID: request_id},
        destinations=[to],
        compression=c.COMPRESSION_NONE,
        text_header=models.DataStream.TextHeader(),
        inline_content=text.encode(),
    )


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_py_caller_ignores_answers_from_wrong_sender(
    make_pair: MakePair, protocol: int, short_ack_timeout: float
) -> None:
    pair = await make_pair(protocol)
    _join_mallory(pair)
    await pair.js.register_rpc("slow", {"kind": "sleep_ms", "ms": 400})

    call = asyncio.create_task(
        pair.py.client.perform_rpc(destination_identity="js", method="slow", payload="real")
    )
    request_id = (await pair.js.next_event("rpc_invoked", method="slow"))["request_id"]
    forged = [
        DataPacket(
            destination_identities=["py"],
            rpc_response=models.RpcResponse(request_id=request_id, payload="forged"),
        ),
        DataPacket(
            destination_identities=["py"],
            rpc_response=models.RpcResponse(
                request_id=request_id, error=models.RpcError(code=9, message="forged")
            ),
        ),
        _forged_response_stream(request_id, "forged stream", "py"),
    ]
    for packet in forged:
        await pair.sfu.publish("mallory", packet)
    await pair.settle()
    assert [x.recipients for x in pair.sent_by("mallory")] == [("py",)] * 3
    assert not call.done()
    assert await call == "real"

    # A forged ack does not stand in for the callee's own: the call still times out.
    pair.sfu.interceptor = lambda x: None if x.case == "rpc_ack" and x.sender == "js" else x.packet
    call = asyncio.create_task(
        pair.py.client.perform_rpc(destination_identity="js", method="slow", payload="x")
    )
    request_id = (await pair.js.next_event("rpc_invoked", method="slow"))["request_id"]
    await pair.sfu.publish(
        "mallory",
        DataPacket(destination_identities=["py"], rpc_ack=models.RpcAck(request_id=request_id)),
    )
    with pytest.raises(RpcError) as no_ack:
        await call
    assert no_ack.value.code == 1501
    await pair.js.next_event("rpc_handled", method="slow", timeout=3)
    pair.sfu.interceptor = None
    await pair.settle()


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_js_caller_ignores_response_stream_from_wrong_sender(
    make_pair: MakePair, protocol: int
) -> None:
    """livekit-client checks the sender of v2 response streams only (v1 packets are not
    checked by it), so the v2 path is the one where our answer must be the one it takes."""
    pair = await make_pair(protocol)
    _join_mallory(pair)
    release = asyncio.Event()

    async def slow(data: RpcInvocationData) -> str:
        await release.wait()
        return data.payload

    pair.serve("slow", slow)
    call = await pair.js.perform_rpc("py", "slow", "real")
    sent = await pair.js.next_event("rpc_sent", call=call)
    await pair.sfu.publish("mallory", _forged_response_stream(sent["request_id"], "forged", "js"))
    await pair.settle()
    release.set()
    result = await pair.js.rpc_result(call)
    assert result["ok"] and result["payload"] == "real"


# ---- streaming RPC and generator handlers across the boundary -------------------------------


@pytest.mark.parametrize(
    ("protocol", "js_caps"),
    [
        (0, (*JS_CAPABILITIES, c.CAP_LKRPC_COMPRESSION_ZSTD, c.CAP_LKRPC_STREAMING_RPC)),
        (1, (*JS_CAPABILITIES, c.CAP_LKRPC_COMPRESSION_ZSTD, c.CAP_LKRPC_STREAMING_RPC)),
        (2, JS_CAPABILITIES),
        (2, (c.CAP_PACKET_TRAILER, *JS_CAPABILITIES)),
        (2, ()),
    ],
    ids=["p0-claims-extensions", "p1-claims-extensions", "p2", "p2-trailer-cap", "p2-no-caps"],
)
async def test_stream_rpc_to_js_arrives_as_one_chunk(
    make_pair: MakePair, protocol: int, js_caps: tuple[int, ...]
) -> None:
    pair = await make_pair(protocol, py_sees_js=(protocol, js_caps))
    await pair.js.register_rpc("echo")
    await pair.js.register_rpc("repeat", {"kind": "repeat", "text": "ab😀", "count": 2_000})
    await pair.js.register_rpc(
        "fail", {"kind": "error", "code": 4000, "message": "no", "data": "d"}
    )

    async with pair.py.client.stream_rpc(
        destination_identity="js", method="echo", payload="héllo"
    ) as stream:
        chunks = [chunk async for chunk in stream]
    assert chunks == ["héllo"]
    assert stream.streaming is False and stream.chunk_count == 1

    async with pair.py.client.stream_rpc(
        destination_identity="js", method="repeat", payload=""
    ) as stream:
        chunks = [chunk async for chunk in stream]
    assert chunks == ["ab😀" * 2_000]

    with pytest.raises(RpcError) as failed:
        async with pair.py.client.stream_rpc(
            destination_identity="js", method="fail", payload=""
        ) as stream:
            async for _ in stream:
                pass
    assert (failed.value.code, failed.value.message, failed.value.data) == (4000, "no", "d")

    await pair.settle()
    # Plain LiveKit RPC on the wire: the request attributes are the four LiveKit keys only.
    for stream_on_wire in streams_on_wire(pair.sfu, "py"):
        assert set(stream_on_wire.info.attributes) == {
            c.ATTR_REQUEST_ID,
            c.ATTR_METHOD,
            c.ATTR_RESPONSE_TIMEOUT_MS,
            c.ATTR_VERSION,
        }
    assert len(pair.sent_by("py", "rpc_request")) == (3 if protocol == 0 else 0)
    # (The pair's teardown also checks that no zstd and no lkrpc.* ever reached "js".)


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_js_unary_call_to_py_generator_handler(make_pair: MakePair, protocol: int) -> None:
    pair = await make_pair(protocol)
    pieces = ["a" * 4_999, "😀", "é" * 2_000, "世"]

    async def agen(_: RpcInvocationData) -> AsyncIterator[str | bytes]:
        for piece in pieces:
            yield piece
            await asyncio.sleep(0)
        yield b"+bytes"

    def gen(data: RpcInvocationData) -> Iterator[str]:
        yield data.payload
        yield "|"
        yield data.payload

    async def agen_fails(_: RpcInvocationData) -> AsyncIterator[str]:
        yield "partial"
        raise RpcError(4100, "stopped", "after one")

    pair.py.server.register_rpc_method("agen", agen)  # type: ignore[arg-type]
    pair.py.server.register_rpc_method("gen", gen)  # type: ignore[arg-type]
    pair.py.server.register_rpc_method("agen-fails", agen_fails)  # type: ignore[arg-type]

    joined = await pair.js.call_rpc("py", "agen", "")
    expected = "".join(pieces) + "+bytes"
    assert joined["ok"], joined
    assert (joined["payload_len"], joined["payload_sha256"]) == (
        len(expected.encode()),
        sha256_hex(expected),
    )
    twice = await pair.js.call_rpc("py", "gen", "ça")
    assert twice["ok"] and twice["payload"] == "ça|ça"
    failed = await pair.js.call_rpc("py", "agen-fails", "")
    assert (failed["code"], failed["message"], failed["data"]) == (4100, "stopped", "after one")
    await pair.settle()
    check_response_on_wire(
        pair, callee="py", request_id=joined["request_id"], payload=expected, protocol=protocol
    )


# ---- each side's view of the other differs -------------------------------------------------

BIG = "ü" * 10_000  # 20,000 bytes: over the v1 limit


@pytest.mark.parametrize(
    ("js_sees_py", "py_sees_js"),
    [(0, 2), (2, 0), (2, None), (1, 2)],
    ids=["js-sees-p0-py-sees-p2", "js-sees-p2-py-sees-p0", "py-does-not-know-js", "js-sees-p1"],
)
async def test_mixed_views(make_pair: MakePair, js_sees_py: int, py_sees_js: int | None) -> None:
    """Requests follow the caller's view of the callee; livekit-client answers by its view of
    the caller, we answer a stream with a stream (else by our view). Every answer that can
    be read is read, and too-large v1 payloads fail with 1402/1504 on the side that refuses."""
    pair = await make_pair(
        2,
        js_sees_py=RemotePeer(js_sees_py, PY_CAPABILITIES),
        py_sees_js=(py_sees_js or 0, JS_CAPABILITIES),
    )
    if py_sees_js is None:
        pair.directory.remove("js")  # unknown: protocol 0, no capabilities
    await pair.js.register_rpc("echo")
    pair.serve_echo()
    py_view = py_sees_js or 0

    # Python calls JS.
    for payload in ("hi ✓", BIG):
        try:
            result: str | RpcError = await pair.py.client.perform_rpc(
                destination_identity="js", method="echo", payload=payload
            )
        except RpcError as error:
            result = error
        if payload == BIG and py_view == 0:
            assert isinstance(result, RpcError) and result.code == 1402
        elif payload == BIG and js_sees_py == 0:
            # livekit-client answers a caller it sees as protocol 0 with a v1 packet: too big.
            assert isinstance(result, RpcError)
            assert (result.code, result.message) == (1504, "Response payload too large")
        else:
            assert result == payload
    # JS calls Python.
    for payload in ("hi ✓", BIG):
        js_result = await pair.js.call_rpc("py", "echo", payload)
        if payload == BIG and js_sees_py == 0:
            assert (js_result["code"], js_result["request_id"]) == (1402, None)
        else:
            # A v2 request is answered by stream even when we think the caller is v1-only.
            assert js_result["ok"] and js_result["payload_sha256"] == sha256_hex(payload), js_result
    await pair.settle()

    our_requests = pair.sent_by("py", "rpc_request")
    assert bool(our_requests) == (py_view == 0)
    assert bool(streams_on_wire(pair.sfu, "py", c.RPC_REQUEST_TOPIC)) == (py_view >= 1)
    assert bool(pair.sent_by("js", "rpc_request")) == (js_sees_py == 0)
    # livekit-client picks the response transport from its view of us.
    js_answers_by_stream = bool(streams_on_wire(pair.sfu, "js", c.RPC_RESPONSE_TOPIC))
    assert js_answers_by_stream == (js_sees_py >= 1)
    # We answer v2 requests by stream; v1 requests by our view of the caller.
    our_packet_answers = [
        x for x in pair.sent_by("py", "rpc_response") if x.packet.rpc_response.HasField("payload")
    ]
    assert bool(our_packet_answers) == (js_sees_py == 0 and py_view == 0)


# ---- byte-level comparison with livekit-client's own packets --------------------------------


async def test_v1_packets_match_livekit_byte_for_byte(make_pair: MakePair) -> None:
    """Same calls in both directions at protocol 0: the request, ack, payload response
    (including the empty one, ``12 00``) and error responses we emit serialize to the same
    bytes as livekit-client's, once ids, sequence and destination are blanked."""
    pair = await make_pair(0)
    await pair.js.register_rpc("echo")
    await pair.js.register_rpc(
        "fail", {"kind": "error", "code": 4242, "message": "no", "data": "d"}
    )
    await pair.js.register_rpc("fail-bare", {"kind": "error", "code": 101, "message": "m"})
    pair.serve_echo()

    def fail(_: RpcInvocationData) -> str:
        raise RpcError(4242, "no", "d")

    def fail_bare(_: RpcInvocationData) -> str:
        raise RpcError(101, "m")

    pair.serve("fail", fail)
    pair.serve("fail-bare", fail_bare)

    calls = [("echo", ""), ("echo", "héllo ✓"), ("fail", "x"), ("fail-bare", "x"), ("missing", "")]
    for method, payload in calls:
        js_result = await pair.js.call_rpc("py", method, payload)
        try:
            py_result: str | RpcError = await pair.py.client.perform_rpc(
                destination_identity="js", method=method, payload=payload
            )
        except RpcError as error:
            py_result = error
        if js_result["ok"]:
            assert py_result == js_result["payload"] == payload
        else:
            assert isinstance(py_result, RpcError)
            assert (py_result.code, py_result.message, py_result.data) == (
                js_result["code"],
                js_result["message"],
                js_result["data"],
            )
    await pair.settle()

    ours, theirs = pair.sent_by("py"), pair.sent_by("js")
    # js: request, then (ack, response) for py's call of the same; py: the mirror image.
    assert [x.case for x in ours] == ["rpc_ack", "rpc_response", "rpc_request"] * len(calls)
    assert [x.case for x in theirs] == ["rpc_request", "rpc_ack", "rpc_response"] * len(calls)
    ours_by_case = {
        case: [x for x in ours if x.case == case]
        for case in ("rpc_request", "rpc_ack", "rpc_response")
    }
    theirs_by_case = {case: [x for x in theirs if x.case == case] for case in ours_by_case}
    for case, our_packets in ours_by_case.items():
        for mine, reference in zip(our_packets, theirs_by_case[case], strict=True):
            assert (
                normalized(mine).SerializeToString() == normalized(reference).SerializeToString()
            ), case
            assert normalized(mine).ListFields() == normalized(reference).ListFields()

    # The empty success response selects the payload case on the wire: `12 00`.
    empty = ours_by_case["rpc_response"][0]
    request_id = empty.packet.rpc_response.request_id
    assert empty.packet.rpc_response.SerializeToString() == (
        b"\x0a\x24" + request_id.encode() + b"\x12\x00"
    )
    assert empty.raw.endswith(b"\x12\x00")


@pytest.mark.parametrize("protocol", STREAM_PROTOCOLS, ids=lambda p: f"p{p}")
@pytest.mark.parametrize(
    "payload",
    [
        ASCII_0,
        ASCII_1,
        JSON_15361,
        EMOJI_AT_15000,
        Payload("mixed-40k", literal=mixed_text(40_000)),
    ],
    ids=lambda p: p.name,
)
async def test_v2_request_and_response_streams_match_livekit(
    make_pair: MakePair, protocol: int, payload: Payload
) -> None:
    """The same call in both directions: our request and response streams have the shape of
    livekit-client's (form, compression, lengths, chunking) and equal its packets field for
    field once ids and timestamps are blanked."""
    pair = await make_pair(protocol)
    await pair.js.register_rpc("echo")
    pair.serve_echo()
    js_result = await pair.js.call_rpc("py", "echo", **payload.js_payload())
    assert js_result["ok"]
    assert (
        await pair.py.client.perform_rpc(
            destination_identity="js", method="echo", payload=payload.text
        )
        == payload.text
    )
    await pair.settle()
    for topic in (c.RPC_REQUEST_TOPIC, c.RPC_RESPONSE_TOPIC):
        (mine,) = streams_on_wire(pair.sfu, "py", topic)
        (reference,) = streams_on_wire(pair.sfu, "js", topic)
        assert mine.shape() == reference.shape(), topic
        assert mine.content() == reference.content() == payload.text.encode()
        assert normalized(mine.header) == normalized(reference.header), topic
        if reference.info.compression == NONE:
            for a, b in zip(mine.chunks, reference.chunks, strict=True):
                assert normalized(a) == normalized(b)
        if reference.trailer is not None:
            assert mine.trailer is not None
            assert normalized(mine.trailer) == normalized(reference.trailer)


# ---- many calls at once -----------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ALL_PROTOCOLS, ids=lambda p: f"p{p}")
async def test_concurrent_calls_both_ways(make_pair: MakePair, protocol: int) -> None:
    """Calls in flight at the same time in both directions, small and chunked, inline and
    compressed, interleaving on the wire: each gets its own answer."""
    pair = await make_pair(protocol)
    await pair.js.register_rpc("echo")
    await pair.js.register_rpc("length", "length")
    pair.serve_echo()
    limit = V1_LIMIT if protocol == 0 else 60_000
    payloads = [mixed_text(size, seed=size) for size in (0, 1, 10, 5_000, 15_000, limit - 7)]
    payloads += [f"call {i} ✓" for i in range(10)]

    js_calls = [await pair.js.perform_rpc("py", "echo", p) for p in payloads]
    py_calls = [
        pair.py.client.perform_rpc(destination_identity="js", method=m, payload=p)
        for p in payloads
        for m in ("echo", "length")
    ]
    py_results = await asyncio.gather(*py_calls)
    js_results = [await pair.js.rpc_result(call) for call in js_calls]

    assert py_results == [r for p in payloads for r in (p, str(len(p.encode())))]
    for payload, result in zip(payloads, js_results, strict=True):
        assert result["ok"] and result["payload_sha256"] == sha256_hex(payload), result
    assert sorted(i.payload for i in pair.invocations) == sorted(payloads)
    assert len({r["request_id"] for r in js_results}) == len(payloads)
    assert pair.py.client.pending_calls == 0
