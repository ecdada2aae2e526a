"""Self-test of the interop harness: two livekit-client peers ("alice", "bob") in Node,
connected through the Python fake SFU. Nothing of livekit_rpc is involved here; these tests
show that the harness reproduces livekit-client's wire behaviour faithfully enough to serve
as the reference end of interop tests."""

from __future__ import annotations

import asyncio
import base64
import zlib
from collections.abc import Awaitable, Callable

import pytest
from livekit.protocol import models

from .node_peer import (
    NodeCommandError,
    NodePeer,
    RemotePeer,
    gen_fill,
    gen_json,
    gen_random,
    gen_random_bytes,
    gen_repeat,
    generate_bytes,
    generate_text,
    sha256_hex,
)
from .sfu import Crossing, FakeSfu

MakePeer = Callable[..., Awaitable[NodePeer]]

V0 = RemotePeer(client_protocol=0, capabilities=())
V2 = RemotePeer()
DEFLATE_RAW = models.DataStream.CompressionType.DEFLATE_RAW
CHUNK = 15_000


async def two_peers(
    make_node_peer: MakePeer,
    sfu: FakeSfu,
    *,
    alice_sees_bob: RemotePeer = V2,
    bob_sees_alice: RemotePeer = V2,
) -> tuple[NodePeer, NodePeer]:
    alice, bob = await asyncio.gather(
        make_node_peer("alice", peers={"bob": alice_sees_bob}),
        make_node_peer("bob", peers={"alice": bob_sees_alice}),
    )
    await alice.join(sfu)
    await bob.join(sfu)
    return alice, bob


def inflate(data: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    out = d.decompress(data) + d.flush()
    assert d.eof and not d.unused_data
    return out


def stream_of(sfu: FakeSfu, sender: str, header: Crossing) -> tuple[list[Crossing], Crossing]:
    """The chunk packets and the trailer that belong to ``header``'s stream."""
    stream_id = header.packet.stream_header.stream_id
    chunks = [
        c
        for c in sfu.packets(sender=sender, case="stream_chunk")
        if c.packet.stream_chunk.stream_id == stream_id
    ]
    (trailer,) = [
        c
        for c in sfu.packets(sender=sender, case="stream_trailer")
        if c.packet.stream_trailer.stream_id == stream_id
    ]
    return chunks, trailer


def assert_wire_basics(sfu: FakeSfu, peers: list[NodePeer]) -> None:
    for peer in peers:
        sent = sfu.packets(sender=peer.identity)
        # The engine numbers reliable packets 1, 2, 3... per connection.
        assert [c.packet.sequence for c in sent] == list(range(1, len(sent) + 1))
        # Senders never stamp their identity; the SFU does.
        for c in sent:
            raw = models.DataPacket()
            raw.ParseFromString(c.raw)
            assert raw.participant_identity == ""
            assert c.packet.participant_identity == peer.identity
        assert peer.problems == []
    sfu.raise_errors()


async def test_rpc_v2_deflate_1mb_json(make_node_peer: MakePeer, sfu: FakeSfu) -> None:
    alice, bob = await two_peers(make_node_peer, sfu)
    await bob.register_rpc("echo")
    spec = gen_json(1_000_000)
    expected = generate_text(spec).encode()

    result = await alice.call_rpc("bob", "echo", payload_gen=spec)

    assert result["ok"], result
    assert result["payload_len"] == 1_000_000
    assert result["payload_sha256"] == sha256_hex(expected)
    invoked = await bob.next_event("rpc_invoked", method="echo")
    request_id = invoked["request_id"]
    assert invoked["caller_identity"] == "alice"
    assert invoked["response_timeout_ms"] == 15_000
    assert invoked["payload_sha256"] == sha256_hex(expected)
    assert result["request_id"] == request_id
    await sfu.drain()

    # Request: one compressed chunked text stream on lk.rpc_request.
    (req,) = sfu.packets(sender="alice", case="stream_header")
    header = req.packet.stream_header
    assert list(req.packet.destination_identities) == ["bob"]
    assert header.topic == "lk.rpc_request"
    assert header.compression == DEFLATE_RAW
    assert header.HasField("total_length") and header.total_length == 1_000_000
    assert not header.HasField("inline_content")
    assert header.WhichOneof("content_header") == "text_header"
    assert dict(header.attributes) == {
        "lk.rpc_request_id": request_id,
        "lk.rpc_request_method": "echo",
        "lk.rpc_request_response_timeout_ms": "15000",
        "lk.rpc_request_version": "2",
    }
    chunks, _trailer = stream_of(sfu, "alice", req)
    assert [c.packet.stream_chunk.chunk_index for c in chunks] == list(range(len(chunks)))
    sizes = [len(c.packet.stream_chunk.content) for c in chunks]
    assert len(sizes) > 1 and all(s == CHUNK for s in sizes[:-1]) and 0 < sizes[-1] <= CHUNK
    assert inflate(b"".join(c.packet.stream_chunk.content for c in chunks)) == expected

    # Ack (v1 packet, even on v2), then the response as a compressed stream on lk.rpc_response.
    (ack,) = sfu.packets(sender="bob", case="rpc_ack")
    assert ack.packet.rpc_ack.request_id == request_id
    (resp,) = sfu.packets(sender="bob", case="stream_header")
    assert resp.index > ack.index
    assert resp.packet.stream_header.topic == "lk.rpc_response"
    assert resp.packet.stream_header.compression == DEFLATE_RAW
    assert dict(resp.packet.stream_header.attributes) == {"lk.rpc_request_id": request_id}
    chunks, _trailer = stream_of(sfu, "bob", resp)
    assert inflate(b"".join(c.packet.stream_chunk.content for c in chunks)) == expected
    assert sfu.packets(case="rpc_request") == sfu.packets(case="rpc_response") == []
    assert_wire_basics(sfu, [alice, bob])


async def test_rpc_v1_when_peer_table_says_protocol_0(
    make_node_peer: MakePeer, sfu: FakeSfu
) -> None:
    alice, bob = await two_peers(make_node_peer, sfu, alice_sees_bob=V0, bob_sees_alice=V0)
    await bob.register_rpc("echo")

    result = await alice.call_rpc("bob", "echo", "héllo v1", response_timeout_ms=2_000)

    assert result["ok"] and result["payload"] == "héllo v1", result
    await sfu.drain()
    (req,) = sfu.packets(sender="alice")
    assert req.case == "rpc_request"
    assert list(req.packet.destination_identities) == ["bob"]
    rpc = req.packet.rpc_request
    assert rpc.id == result["request_id"]
    assert (rpc.method, rpc.payload, rpc.version) == ("echo", "héllo v1", 1)
    assert rpc.response_timeout_ms == 8_000  # the wire carries at least 8000 ms
    assert [c.case for c in sfu.packets(sender="bob")] == ["rpc_ack", "rpc_response"]
    response = sfu.packets(sender="bob", case="rpc_response")[0].packet.rpc_response
    assert response.WhichOneof("value") == "payload" and response.payload == "héllo v1"
    invoked = await bob.next_event("rpc_invoked")
    assert invoked["response_timeout_ms"] == 8_000

    # Over the v1 limit (15360 bytes) the call fails locally and nothing is sent.
    before = len(sfu.captured)
    too_big = await alice.call_rpc("bob", "echo", payload_gen=gen_repeat("x", 20_000))
    assert too_big["ok"] is False
    assert (too_big["code"], too_big["message"]) == (1402, "Request payload too large")
    assert too_big["request_id"] is None
    await sfu.drain()
    assert len(sfu.captured) == before
    assert_wire_basics(sfu, [alice, bob])


@pytest.mark.parametrize(
    ("bob_sees_alice", "response_case"),
    [(V0, "rpc_response"), (V2, "stream_header")],
    ids=["caller-unknown-v0", "caller-known-v2"],
)
async def test_v1_request_response_transport_follows_callers_protocol(
    make_node_peer: MakePeer, sfu: FakeSfu, bob_sees_alice: RemotePeer, response_case: str
) -> None:
    alice, bob = await two_peers(
        make_node_peer, sfu, alice_sees_bob=V0, bob_sees_alice=bob_sees_alice
    )
    await bob.register_rpc("echo")
    result = await alice.call_rpc("bob", "echo", "ping")
    assert result["ok"] and result["payload"] == "ping"
    await sfu.drain()
    assert [c.case for c in sfu.packets(sender="alice")] == ["rpc_request"]
    assert [c.case for c in sfu.packets(sender="bob")] == ["rpc_ack", response_case]
    assert_wire_basics(sfu, [alice, bob])


@pytest.mark.parametrize("protocol", [0, 2], ids=["v1", "v2"])
async def test_rpc_error_with_data_passes_through(
    make_node_peer: MakePeer, sfu: FakeSfu, protocol: int
) -> None:
    view = RemotePeer(protocol, () if protocol == 0 else V2.capabilities)
    alice, bob = await two_peers(make_node_peer, sfu, alice_sees_bob=view, bob_sees_alice=view)
    await bob.register_rpc(
        "fail", {"kind": "error", "code": 4242, "message": "nope", "data": "détails ✓"}
    )
    await bob.register_rpc("boom", {"kind": "throw", "message": "kaput"})

    result = await alice.call_rpc("bob", "fail", "x")
    assert result["ok"] is False
    assert (result["code"], result["message"], result["data"]) == (4242, "nope", "détails ✓")
    assert result["error_name"] == "RpcError"
    await sfu.drain()
    (err,) = sfu.packets(sender="bob", case="rpc_response")
    assert err.packet.rpc_response.WhichOneof("value") == "error"
    wire_error = err.packet.rpc_response.error
    assert (wire_error.code, wire_error.message, wire_error.data) == (4242, "nope", "détails ✓")

    # A plain exception becomes APPLICATION_ERROR; only v1 carries its message as data.
    boom = await alice.call_rpc("bob", "boom", "x")
    assert (boom["code"], boom["message"]) == (1500, "Application error in method handler")
    assert boom["data"] == ("Uncaught error: kaput" if protocol == 0 else None)

    missing = await alice.call_rpc("bob", "nope", "x")
    assert (missing["code"], missing["message"]) == (1400, "Method not supported at destination")
    assert_wire_basics(sfu, [alice, bob])


async def test_streams_reach_the_handler_of_their_kind(
    make_node_peer: MakePeer, sfu: FakeSfu
) -> None:
    alice, bob = await two_peers(make_node_peer, sfu)
    await bob.register_text_stream_handler("t")
    await bob.register_byte_stream_handler("t")

    call = await alice.send_text(
        "héllo wörld", topic="t", destination_identities=["bob"], attributes={"k": "v"}
    )
    done = await alice.send_done(call)
    assert done["ok"], done
    text = await bob.next_event("stream_received", kind="text")
    assert text["ok"] and text["content"] == "héllo wörld" and text["sender"] == "alice"
    assert text["info"]["id"] == done["info"]["id"]
    assert text["info"]["attributes"] == {"k": "v"}
    assert text["info"]["mime_type"] == "text/plain"
    assert text["info"]["size"] == len("héllo wörld".encode())

    call = await alice.send_bytes(b"\x00\x01\x02\xff", topic="t", name="blob.bin")
    assert (await alice.send_done(call))["ok"]
    blob = await bob.next_event("stream_received", kind="byte")
    assert blob["ok"] and base64.b64decode(blob["content_b64"]) == b"\x00\x01\x02\xff"
    assert blob["info"]["name"] == "blob.bin"
    assert blob["info"]["mime_type"] == "application/octet-stream"

    # Small payloads to a v2 peer travel inline in a single header packet.
    await sfu.drain()
    headers = sfu.packets(sender="alice", case="stream_header")
    assert [c.packet.stream_header.WhichOneof("content_header") for c in headers] == [
        "text_header",
        "byte_header",
    ]
    assert all(c.packet.stream_header.HasField("inline_content") for c in headers)
    assert sfu.packets(sender="alice", case="stream_chunk") == []

    # An incremental text stream: chunks at UTF-8 boundaries, one pass per write.
    await bob.unregister_text_stream_handler("t")
    await bob.register_text_stream_handler("t", mode="iterate")
    call = await alice.stream_text(["a" * 14_999 + "😀" + "b" * 10, "é" * 3], topic="t")
    assert (await alice.send_done(call))["ok"]
    streamed = await bob.next_event("stream_received", kind="text")
    assert streamed["ok"] and streamed["chunks"] == [14_999, 14, 6]
    assert streamed["info"]["size"] is None
    assert bob.take_events("stream_received") == []
    assert_wire_basics(sfu, [alice, bob])


async def test_large_multibyte_response_and_disconnect(
    make_node_peer: MakePeer, sfu: FakeSfu
) -> None:
    alice, bob = await two_peers(make_node_peer, sfu)
    await bob.register_rpc("multibyte", {"kind": "repeat", "text": "é", "count": 2_500_000})
    await bob.register_rpc("random", {"kind": "return", "value_gen": gen_random(5_000_000)})
    await bob.register_rpc("hang", "never")

    multibyte = await alice.call_rpc("bob", "multibyte", "")
    assert multibyte["ok"] and multibyte["payload_len"] == 5_000_000
    assert multibyte["payload_sha256"] == sha256_hex("é" * 2_500_000)

    # Poorly compressible: a few hundred chunk packets each way through the pipes.
    random = await alice.call_rpc("bob", "random", "")
    handled = await bob.next_event("rpc_handled", method="random")
    assert random["ok"] and random["payload_len"] == 5_000_000
    assert random["payload_sha256"] == handled["response_sha256"]
    await sfu.drain()
    (header,) = [
        c
        for c in sfu.packets(sender="bob", case="stream_header")
        if c.packet.stream_header.attributes["lk.rpc_request_id"] == random["request_id"]
    ]
    chunks, _trailer = stream_of(sfu, "bob", header)
    assert len(chunks) > 200

    call = await alice.perform_rpc("bob", "hang", "x")
    await bob.next_event("rpc_invoked", method="hang")
    await sfu.disconnect("bob")
    result = await alice.rpc_result(call)
    assert (result["code"], result["message"]) == (1503, "Recipient disconnected")

    with pytest.raises(NodeCommandError, match="already registered"):
        await bob.register_rpc("multibyte")
    assert_wire_basics(sfu, [alice, bob])


async def test_payload_generators_match_python(make_node_peer: MakePeer, sfu: FakeSfu) -> None:
    alice, bob = await two_peers(make_node_peer, sfu)
    await bob.register_text_stream_handler("text")
    await bob.register_byte_stream_handler("bytes")
    text_specs = [gen_random(20_000, seed=7), gen_json(100), gen_repeat("😀é", 3)]
    byte_specs = [gen_random_bytes(20_000, seed=3), gen_fill(1, 10), gen_repeat("ab", 2)]
    for spec in text_specs:
        await alice.send_done(await alice.send_text(text_gen=spec, topic="text"))
        got = await bob.next_event("stream_received", kind="text")
        assert got["sha256"] == sha256_hex(generate_text(spec)), spec
    for spec in byte_specs:
        await alice.send_done(await alice.send_bytes(data_gen=spec, topic="bytes"))
        got = await bob.next_event("stream_received", kind="byte")
        assert got["sha256"] == sha256_hex(generate_bytes(spec)), spec
    assert_wire_basics(sfu, [alice, bob])
