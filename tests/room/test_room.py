"""The Room client over real WebRTC (aiortc on both ends) against the dev server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

import jwt
import pytest
from livekit.protocol import models

from livekit_rpc.room import (
    ConnectError,
    ConnectionState,
    DataPacket,
    DataPacketKind,
    DisconnectReason,
    RemoteParticipant,
    Room,
    RoomOptions,
    RpcError,
    RpcInvocationData,
    RtcConfiguration,
    SignalRequestError,
)
from livekit_rpc.server import DevServer
from livekit_rpc.wire.constants import CLIENT_PROTOCOL, LOCAL_CAPABILITIES

from .conftest import KEY, SECRET, ConnectRoom, SpawnPeer, room_options, token, wait_until
from .peer_process import make_payload

pytestmark = pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")


def collect(room: Room, event: str) -> list[tuple[Any, ...]]:
    seen: list[tuple[Any, ...]] = []
    room.on(event, lambda *args: seen.append(args))
    return seen


# -- connect / disconnect -------------------------------------------------------------------


async def test_connect_and_disconnect(server: DevServer) -> None:
    room = Room()
    states = collect(room, "connection_state_changed")
    disconnected = collect(room, "disconnected")
    await room.connect(server.url, token("alice"), room_options())
    assert room.isconnected()
    assert room.connection_state == ConnectionState.CONN_CONNECTED
    assert room.name == "r1"
    lp = room.local_participant
    assert lp.identity == "alice"
    assert lp.sid.startswith("PA_")
    assert room.remote_participants == {}
    await room.disconnect()
    assert room.connection_state == ConnectionState.CONN_DISCONNECTED
    assert states == [(ConnectionState.CONN_CONNECTED,), (ConnectionState.CONN_DISCONNECTED,)]
    assert disconnected == [(DisconnectReason.CLIENT_INITIATED,)]
    await room.disconnect()  # idempotent
    await wait_until(lambda: not server.rooms())


async def test_connect_accepts_http_url_and_trailing_rtc(server: DevServer) -> None:
    for url in (server.url.replace("ws://", "http://"), server.url + "/rtc"):
        room = Room()
        await room.connect(url, token("alice"), room_options())
        await room.disconnect()


async def test_room_connects_only_once(connect_room: ConnectRoom) -> None:
    room = await connect_room("alice")
    with pytest.raises(RuntimeError):
        await room.connect("ws://127.0.0.1:1", "x")


async def test_event_handler_errors_are_contained(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    bob = await connect_room("bob")

    def broken(*args: Any) -> None:
        raise RuntimeError("handler bug")

    bob.on("data_received", broken)
    got = collect(bob, "data_received")
    await wait_until(lambda: "bob" in alice.remote_participants)
    await alice.local_participant.publish_data(b"1")
    await alice.local_participant.publish_data(b"2")
    await wait_until(lambda: len(got) == 2)
    assert bob.isconnected()


async def test_cancelled_connect_releases_everything() -> None:
    from .fake_server import FakeServer

    async with FakeServer(first_message="none") as fake:
        room = Room()
        connecting = asyncio.ensure_future(room.connect(fake.url, token("alice"), room_options()))
        await wait_until(lambda: fake.ws is not None)
        connecting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await connecting
        assert room.connection_state == ConnectionState.CONN_DISCONNECTED
        assert fake.ws is not None
        await wait_until(lambda: fake.ws is not None and fake.ws.closed)


# -- tokens ---------------------------------------------------------------------------------


def _raw_token(**video: Any) -> str:
    now = int(time.time())
    claims = {"iss": KEY, "sub": "alice", "nbf": now, "exp": now + 600, "video": video}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    "bad_token",
    [
        pytest.param(lambda: token("alice", ttl=-120), id="expired"),
        pytest.param(lambda: jwt.encode({"x": 1}, SECRET, algorithm="HS256"), id="no-claims"),
        pytest.param(lambda: token("alice").rsplit(".", 1)[0] + ".AAAA", id="bad-signature"),
        pytest.param(
            lambda: __import__("livekit_rpc.server").server.mint_token(
                KEY, "another-secret", "alice", "r1"
            ),
            id="wrong-secret",
        ),
        pytest.param(
            lambda: __import__("livekit_rpc.server").server.mint_token(
                "otherkey", SECRET, "alice", "r1"
            ),
            id="wrong-key",
        ),
        pytest.param(lambda: _raw_token(roomJoin=True), id="no-room"),
        pytest.param(lambda: _raw_token(roomJoin=False, room="r1"), id="no-room-join"),
        pytest.param(lambda: "not-a-jwt", id="garbage"),
    ],
)
async def test_bad_tokens_are_refused(server: DevServer, bad_token: Any) -> None:
    room = Room()
    with pytest.raises(ConnectError) as info:
        await room.connect(server.url, bad_token(), room_options())
    assert info.value.status == 401
    assert room.connection_state == ConnectionState.CONN_DISCONNECTED
    assert not server.rooms()


async def test_unreachable_server_is_a_connect_error() -> None:
    room = Room()
    with pytest.raises(ConnectError):
        await room.connect("ws://127.0.0.1:9", token("alice"), room_options())


async def test_tokens_for_another_room_do_not_meet(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice", room="r1")
    bob = await connect_room("bob", room="r2")
    await asyncio.sleep(0.2)
    assert alice.remote_participants == {}
    assert bob.remote_participants == {}
    assert bob.name == "r2"


# -- participants and attributes ------------------------------------------------------------


async def test_participant_events(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    joined = collect(alice, "participant_connected")
    left = collect(alice, "participant_disconnected")
    bob = await connect_room("bob")
    # Bob finds alice in the join response, without an event.
    assert list(bob.remote_participants) == ["alice"]
    await wait_until(lambda: joined)
    (participant,) = joined[0]
    assert isinstance(participant, RemoteParticipant)
    assert participant.identity == "bob"
    assert participant.sid == bob.local_participant.sid
    assert participant.client_protocol == CLIENT_PROTOCOL
    assert participant.capabilities == frozenset(LOCAL_CAPABILITIES)
    assert alice.client_protocol("bob") == CLIENT_PROTOCOL
    assert alice.capabilities("nobody") == frozenset()
    assert alice.remote_identities() == ["bob"]
    await bob.disconnect()
    await wait_until(lambda: left)
    assert left[0][0].identity == "bob"
    assert left[0][0].disconnect_reason == DisconnectReason.CLIENT_INITIATED
    assert alice.remote_participants == {}


async def test_attributes(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice", attributes={"role": "caller"})
    bob = await connect_room("bob")
    assert bob.remote_participants["alice"].attributes == {"role": "caller"}
    changes = collect(bob, "participant_attributes_changed")
    own = collect(alice, "participant_attributes_changed")

    await alice.local_participant.set_attributes({"mood": "happy"})
    # The server answers after broadcasting, so the local view is already updated.
    assert alice.local_participant.attributes == {"role": "caller", "mood": "happy"}
    await wait_until(lambda: changes)
    changed, participant = changes[0]
    assert changed == {"mood": "happy"}
    assert participant.identity == "alice"
    assert participant.attributes == {"role": "caller", "mood": "happy"}
    assert own and own[0][1] is alice.local_participant

    await alice.local_participant.set_attributes({"role": ""})  # empty value deletes
    await wait_until(lambda: len(changes) == 2)
    assert changes[1][0] == {"role": ""}
    assert bob.remote_participants["alice"].attributes == {"mood": "happy"}

    names = collect(bob, "participant_name_changed")
    await alice.local_participant.set_name("Alice")
    await alice.local_participant.set_metadata("meta")
    await wait_until(lambda: bob.remote_participants["alice"].metadata == "meta")
    assert names[0][1:] == ("", "Alice")


async def test_attributes_need_the_grant(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice", can_update_own_metadata=False)
    with pytest.raises(SignalRequestError) as info:
        await alice.local_participant.set_attributes({"a": "1"})
    assert info.value.reason == 2  # NOT_ALLOWED


# -- data packets ---------------------------------------------------------------------------


async def test_publish_data_reliable_lossy_and_targeted(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    bob = await connect_room("bob")
    carol = await connect_room("carol")
    got_bob = collect(bob, "data_received")
    got_carol = collect(carol, "data_received")
    await wait_until(lambda: len(alice.remote_participants) == 2)

    await alice.local_participant.publish_data(b"to-all", topic="t1")
    await alice.local_participant.publish_data("lossy", reliable=False)
    await alice.local_participant.publish_data(b"only-bob", destination_identities=["bob"])
    await wait_until(lambda: len(got_bob) == 3 and len(got_carol) == 2)
    await asyncio.sleep(0.2)
    assert len(got_carol) == 2

    packets: list[DataPacket] = [args[0] for args in got_bob]
    by_data = {p.data: p for p in packets}
    assert by_data[b"to-all"].topic == "t1"
    assert by_data[b"to-all"].kind == DataPacketKind.KIND_RELIABLE
    assert by_data[b"lossy"].kind == DataPacketKind.KIND_LOSSY
    assert by_data[b"only-bob"].participant is bob.remote_participants["alice"]
    assert {p.data for (p,) in got_carol} == {b"to-all", b"lossy"}


async def test_packet_size_cap(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    await alice.local_participant.publish_data(b"x" * 63_900)
    with pytest.raises(ValueError):
        await alice.local_participant.publish_data(b"x" * 64_001)


async def test_reliable_ordering_and_sequence_numbers(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    bob = await connect_room("bob")
    sequences: list[int] = []
    original = bob.on_data_packet

    def spy(packet: models.DataPacket, kind: int) -> None:
        if packet.HasField("user"):
            sequences.append(packet.sequence)
        original(packet, kind)

    bob.on_data_packet = spy  # type: ignore[method-assign]
    received = collect(bob, "data_received")
    count = 3000
    sends = [alice.local_participant.publish_data(i.to_bytes(4, "big") * 50) for i in range(count)]
    await asyncio.gather(*sends)  # concurrent senders: the queue keeps call order
    await wait_until(lambda: len(received) == count, within=30)
    order = [int.from_bytes(args[0].data[:4], "big") for args in received]
    assert order == list(range(count))
    assert sequences == list(range(1, count + 1))


async def test_duplicate_reliable_packets_are_dropped(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    received = collect(alice, "data_received")
    engine = alice._engine
    assert engine is not None

    def deliver(seq: int, sid: str = "PA_x") -> None:
        packet = models.DataPacket(
            participant_sid=sid, sequence=seq, user=models.UserPacket(payload=bytes([seq]))
        )
        engine._on_channel_message("publisher", "_reliable", packet.SerializeToString())

    for seq in (1, 2, 2, 1, 3):
        deliver(seq)
    deliver(1, sid="PA_y")  # another sender has its own numbering
    assert [args[0].data for args in received] == [b"\x01", b"\x02", b"\x03", b"\x01"]


# -- large payloads and backpressure ----------------------------------------------------------


async def test_large_stream_is_paced_by_the_send_queue(connect_room: ConnectRoom) -> None:
    high = 256 * 1024
    alice = await connect_room("alice", options=room_options(send_high_water=high))
    bob = await connect_room("bob")
    size = 24 * 1024 * 1024
    chunk = os.urandom(1024 * 1024)
    done = asyncio.Event()
    digest = hashlib.sha256()
    sizes: list[int] = []

    async def on_stream(reader: Any, sender: str) -> None:
        async for piece in reader:
            digest.update(piece)
            sizes.append(len(piece))
        done.set()

    bob.register_byte_stream_handler("big", on_stream)
    await wait_until(lambda: "bob" in alice.remote_participants)
    writer = await alice.local_participant.stream_bytes(
        "big.bin", topic="big", total_size=size, destination_identities=["bob"]
    )
    engine = alice._engine
    assert engine is not None and engine.publisher is not None
    queue = engine.publisher.queues["_reliable"]
    expected = hashlib.sha256()
    started = time.perf_counter()
    for _ in range(size // len(chunk)):
        await writer.write(chunk)
        expected.update(chunk)
        # The writer's await is what waits for the network: nothing piles up below it.
        assert queue.buffered_amount <= high + 64_000
    await writer.aclose()
    await asyncio.wait_for(done.wait(), 60)
    elapsed = time.perf_counter() - started
    assert sum(sizes) == size
    assert digest.hexdigest() == expected.hexdigest()
    assert queue.peak_buffered <= high + 64_000
    print(f"\n{size / 1e6:.1f} MB in {elapsed:.2f} s ({size / 1e6 / elapsed:.1f} MB/s in-process)")


# -- RPC ------------------------------------------------------------------------------------


async def test_rpc_in_process(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    bob = await connect_room("bob")

    @bob.local_participant.register_rpc_method("greet")
    async def greet(data: RpcInvocationData) -> str:
        return f"hello {data.caller_identity}: {data.payload}"

    def fail(data: RpcInvocationData) -> str:
        raise RpcError(42, "nope", "details")

    bob.local_participant.register_rpc_method("fail", fail)
    with pytest.raises(ValueError):
        bob.local_participant.register_rpc_method("fail", fail)
    await wait_until(lambda: "bob" in alice.remote_participants)
    lp = alice.local_participant
    assert await lp.perform_rpc(destination_identity="bob", method="greet", payload="x") == (
        "hello alice: x"
    )
    with pytest.raises(RpcError) as info:
        await lp.perform_rpc(destination_identity="bob", method="fail", payload="")
    assert (info.value.code, info.value.message, info.value.data) == (42, "nope", "details")
    with pytest.raises(RpcError) as info:
        await lp.perform_rpc(destination_identity="bob", method="missing", payload="")
    assert info.value.code == RpcError.ErrorCode.UNSUPPORTED_METHOD
    bob.local_participant.unregister_rpc_method("greet")
    with pytest.raises(RpcError) as info:
        await lp.perform_rpc(destination_identity="bob", method="greet", payload="")
    assert info.value.code == RpcError.ErrorCode.UNSUPPORTED_METHOD


async def test_streaming_rpc(connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    bob = await connect_room("bob")

    @bob.local_participant.register_rpc_method("count")
    async def count(data: RpcInvocationData) -> Any:
        for i in range(int(data.payload)):
            yield f"{i},"

    await wait_until(lambda: "bob" in alice.remote_participants)
    async with alice.local_participant.stream_rpc(
        destination_identity="bob", method="count", payload="50"
    ) as stream:
        chunks = [str(chunk) async for chunk in stream]
    assert "".join(chunks) == "".join(f"{i}," for i in range(50))
    assert stream.chunk_count == len(chunks) > 1


async def test_text_and_byte_streams(connect_room: ConnectRoom, tmp_path: Any) -> None:
    alice = await connect_room("alice")
    bob = await connect_room("bob")
    texts: list[tuple[str, str, str]] = []
    files: list[tuple[str, bytes]] = []

    async def on_text(reader: Any, sender: str) -> None:
        texts.append((reader.info.topic, sender, await reader.read_all()))

    async def on_bytes(reader: Any, sender: str) -> None:
        data = b"".join([piece async for piece in reader])
        files.append((reader.info.name, data))

    bob.register_text_stream_handler("chat", on_text)
    bob.register_byte_stream_handler("files", on_bytes)
    with pytest.raises(ValueError):
        bob.register_text_stream_handler("chat", on_text)
    with pytest.raises(ValueError):
        bob.register_text_stream_handler("lk.rpc_request", on_text)
    await wait_until(lambda: "bob" in alice.remote_participants)
    lp = alice.local_participant
    await lp.send_text("hi bob", topic="chat")
    writer = await lp.stream_text(topic="chat")
    for word in ("a ", "streamed ", "text"):
        await writer.write(word)
    await writer.aclose()
    await lp.send_bytes(b"\x00\x01" * 40_000, topic="files", name="blob")
    path = tmp_path / "f.txt"
    path.write_bytes(b"file content " * 5000)
    await lp.send_file(str(path), topic="files")
    await wait_until(lambda: len(texts) == 2 and len(files) == 2)
    assert texts == [("chat", "alice", "hi bob"), ("chat", "alice", "a streamed text")]
    assert files == [("blob", b"\x00\x01" * 40_000), ("f.txt", b"file content " * 5000)]
    bob.unregister_text_stream_handler("chat")
    bob.register_text_stream_handler("chat", on_text)


@pytest.mark.parametrize("size", [0, 1, 15_000, 100_000, 2_000_000])
async def test_rpc_both_ways_with_a_peer_process(
    connect_room: ConnectRoom, spawn_peer: SpawnPeer, size: int
) -> None:
    alice = await connect_room("alice")

    @alice.local_participant.register_rpc_method("echo")
    def echo(data: RpcInvocationData) -> str:
        return data.payload

    bob = await spawn_peer("bob")
    assert bob.ready["remotes"] == ["alice"]
    await wait_until(lambda: "bob" in alice.remote_participants)
    payload = make_payload(size, seed=size)
    reply = await alice.local_participant.perform_rpc(
        destination_identity="bob", method="echo", payload=payload
    )
    assert reply == payload
    result = await bob.command(op="rpc", dest="alice", method="echo", size=size, seed=size)
    assert result["ok"], result
    assert result["length"] == size
    assert result["sha"] == hashlib.sha256(payload.encode()).hexdigest()


async def test_rpc_20_mb_both_ways(connect_room: ConnectRoom, spawn_peer: SpawnPeer) -> None:
    alice = await connect_room("alice")

    @alice.local_participant.register_rpc_method("len")
    def length(data: RpcInvocationData) -> str:
        return str(len(data.payload))

    bob = await spawn_peer("bob")
    await wait_until(lambda: "bob" in alice.remote_participants)
    size = 20 * 1000 * 1000
    started = time.perf_counter()
    reply = await alice.local_participant.perform_rpc(
        destination_identity="bob", method="len", payload=make_payload(size), response_timeout=60
    )
    up = time.perf_counter() - started
    assert reply == str(size)
    started = time.perf_counter()
    result = await bob.command(op="rpc", dest="alice", method="len", size=size, timeout=60)
    down = time.perf_counter() - started
    assert result["ok"], result
    assert result["text"] == str(size)
    print(f"\n20 MB RPC: alice->bob {up:.2f} s, bob->alice {down:.2f} s")


async def test_three_processes_targeted_traffic_stays_private(
    connect_room: ConnectRoom, spawn_peer: SpawnPeer
) -> None:
    alice = await connect_room("alice")
    bob = await spawn_peer("bob")
    carol = await spawn_peer("carol")
    await wait_until(lambda: len(alice.remote_participants) == 2)
    lp = alice.local_participant
    # RPC, data and streams addressed to bob only.
    assert await lp.perform_rpc(destination_identity="bob", method="whoami", payload="") == "bob"
    big = make_payload(300_000)
    assert await lp.perform_rpc(destination_identity="bob", method="echo", payload=big) == big
    await lp.publish_data(b"secret", destination_identities=["bob"], topic="private")
    await lp.send_text("for bob", topic="private", destination_identities=["bob"])
    # Carol calls bob: alice must not see that either.
    result = await carol.command(op="rpc", dest="bob", method="echo", size=50_000)
    assert result["ok"] and result["length"] == 50_000
    # A broadcast marker: once carol has it, everything sent before it has been forwarded.
    await lp.publish_data(b"marker", topic="marker")
    await asyncio.sleep(0.3)
    stats = await carol.command(op="stats")
    received = stats["received"]
    from_others = [p for p in received if p["topic"] != "marker" and p["from"] != "bob"]
    assert from_others == [], from_others
    # What carol got from bob is only the RPC traffic addressed to carol.
    assert all(p["to"] == ["carol"] for p in received if p["from"] == "bob")
    assert any(p["topic"] == "marker" for p in received)
    bob_stats = (await bob.command(op="stats"))["received"]
    assert any(p["topic"] == "private" for p in bob_stats)


async def test_peer_killed_mid_call_fails_with_1503(
    connect_room: ConnectRoom, spawn_peer: SpawnPeer
) -> None:
    alice = await connect_room("alice")
    bob = await spawn_peer("bob")
    left = collect(alice, "participant_disconnected")
    await wait_until(lambda: "bob" in alice.remote_participants)
    call = asyncio.ensure_future(
        alice.local_participant.perform_rpc(
            destination_identity="bob", method="sleep", payload="30", response_timeout=60
        )
    )
    await asyncio.sleep(0.5)
    assert not call.done()
    started = time.perf_counter()
    bob.kill()
    with pytest.raises(RpcError) as info:
        await asyncio.wait_for(call, 10)
    elapsed = time.perf_counter() - started
    assert info.value.code == RpcError.ErrorCode.RECIPIENT_DISCONNECTED
    assert elapsed < 5, elapsed
    assert left and left[0][0].identity == "bob"


async def test_server_shutdown_is_seen_by_clients(
    server: DevServer, connect_room: ConnectRoom, spawn_peer: SpawnPeer
) -> None:
    alice = await connect_room("alice")
    bob = await spawn_peer("bob")
    await wait_until(lambda: "bob" in alice.remote_participants)
    disconnected = collect(alice, "disconnected")
    pending = asyncio.ensure_future(
        alice.local_participant.perform_rpc(
            destination_identity="bob", method="sleep", payload="30", response_timeout=60
        )
    )
    await asyncio.sleep(0.3)
    await server.close()
    await wait_until(lambda: disconnected)
    assert disconnected == [(DisconnectReason.SERVER_SHUTDOWN,)]
    assert alice.connection_state == ConnectionState.CONN_DISCONNECTED
    event = await bob.wait_event("disconnected")
    assert event["reason"] == DisconnectReason.SERVER_SHUTDOWN
    with pytest.raises(RpcError):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(ConnectionError):
        await alice.local_participant.publish_data(b"x")
    await alice.disconnect()


@pytest.mark.parametrize("large", [True, False])
async def test_large_sctp_packets_with_the_dev_server_unless_turned_off(
    connect_room: ConnectRoom, large: bool
) -> None:
    """Same host, both sides offer: 16,000-byte packets; turned off: aiortc's 1,189."""
    from livekit_rpc.sctp import LARGE_PACKET_SIZE, STANDARD_PACKET_SIZE

    rtc = RtcConfiguration(gather_loopback=True, large_sctp_packets=large)
    alice = await connect_room("alice", options=RoomOptions(rtc_config=rtc))
    bob = await connect_room("bob")
    await wait_until(lambda: "alice" in bob.remote_participants)
    bob.local_participant.register_rpc_method("size", lambda data: str(len(data.payload)))
    payload = "x" * 3_000_000
    reply = await alice.local_participant.perform_rpc(
        destination_identity="bob", method="size", payload=payload
    )
    assert reply == str(len(payload))
    assert alice._engine is not None and alice._engine.publisher is not None
    sctp = alice._engine.publisher.pc.sctp
    assert sctp.packet_size == (LARGE_PACKET_SIZE if large else STANDARD_PACKET_SIZE)


def _session_of(server: DevServer, identity: str) -> Any:
    from .conftest import ROOM

    return next(s for s in server.rooms()[ROOM].sessions() if s.participant.identity == identity)


def _watch(room: Room) -> list[str]:
    events: list[str] = []
    for name in ("reconnecting", "reconnected"):
        room.on(name, lambda name=name: events.append(name))
    room.on("disconnected", lambda reason: events.append(f"disconnected:{reason.name}"))
    return events


@pytest.mark.parametrize("loss", ["server asks to rejoin", "signal socket closed"])
async def test_room_rejoins_after_losing_its_connection(
    server: DevServer, connect_room: ConnectRoom, loss: str
) -> None:
    from livekit.protocol import rtc as proto_rtc

    alice = await connect_room("alice")
    bob = await connect_room("bob")
    bob.local_participant.register_rpc_method("echo", lambda data: data.payload)
    alice.local_participant.register_rpc_method("whoami", lambda data: data.caller_identity)
    await wait_until(lambda: "bob" in alice.remote_participants)
    local = alice.local_participant
    events = _watch(alice)
    session = _session_of(server, "alice")
    if loss == "server asks to rejoin":
        session.disconnect(
            models.DisconnectReason.STATE_MISMATCH, proto_rtc.LeaveRequest.Action.RECONNECT
        )
    else:
        await session._ws.close()
    await wait_until(lambda: "reconnected" in events, within=15)
    assert events == ["reconnecting", "reconnected"]
    assert alice.connection_state == ConnectionState.CONN_CONNECTED
    assert alice.local_participant is local
    assert "bob" in alice.remote_participants
    await wait_until(lambda: "alice" in bob.remote_participants)
    reply = await alice.local_participant.perform_rpc(
        destination_identity="bob", method="echo", payload="after the rejoin"
    )
    assert reply == "after the rejoin"
    assert (
        await bob.local_participant.perform_rpc(
            destination_identity="alice", method="whoami", payload=""
        )
        == "bob"
    )


async def test_rejoin_gives_up_when_the_token_is_refused(
    server: DevServer, connect_room: ConnectRoom
) -> None:
    from livekit.protocol import rtc as proto_rtc

    # Valid for 2 more seconds, counting the server's 60 s of leeway.
    alice = await connect_room("alice", ttl=2, now=time.time() - 60)
    events = _watch(alice)
    await asyncio.sleep(2.5)  # the token has expired; the session goes on
    _session_of(server, "alice").disconnect(
        models.DisconnectReason.STATE_MISMATCH, proto_rtc.LeaveRequest.Action.RECONNECT
    )
    await wait_until(lambda: any(e.startswith("disconnected") for e in events), within=10)
    assert events == ["reconnecting", "disconnected:STATE_MISMATCH"]
    assert alice.connection_state == ConnectionState.CONN_DISCONNECTED


async def test_disconnect_while_rejoining(server: DevServer, connect_room: ConnectRoom) -> None:
    alice = await connect_room("alice")
    events = _watch(alice)
    alice.on("reconnecting", lambda: asyncio.ensure_future(alice.disconnect()))
    await _session_of(server, "alice")._ws.close()
    await wait_until(lambda: any(e.startswith("disconnected") for e in events), within=10)
    await asyncio.sleep(0.5)
    assert events == ["reconnecting", "disconnected:CLIENT_INITIATED"]
    assert alice.connection_state == ConnectionState.CONN_DISCONNECTED


async def test_sends_fail_fast_while_rejoining(
    server: DevServer, connect_room: ConnectRoom
) -> None:
    alice = await connect_room("alice")
    await connect_room("bob")
    await wait_until(lambda: "bob" in alice.remote_participants)
    outcome: list[Any] = []

    async def call_now() -> None:
        try:
            await alice.local_participant.perform_rpc(
                destination_identity="bob", method="echo", payload="x"
            )
        except RpcError as exc:
            outcome.append(exc.code)

    alice.on("reconnecting", lambda: outcome.append(asyncio.ensure_future(call_now())))
    await _session_of(server, "alice")._ws.close()
    await wait_until(lambda: len(outcome) == 2, within=10)
    assert outcome[1] == 1505  # SEND_FAILED, at once: not after the 7 s ack timeout
    await wait_until(lambda: alice.connection_state == ConnectionState.CONN_CONNECTED, within=15)
