"""The dev server over the wire, driven by a bare-bones aiortc signalling client.

Everything here uses loopback only: the server is bound to 127.0.0.1 and therefore offers only
127.0.0.1 host candidates, and the test client restricts itself the same way.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_to_sdp
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from livekit_rpc import ice
from livekit_rpc.server import DevServer, ServerConfig, mint_token

KEY, SECRET, ROOM = "devkey", "secret", "wire-room"
Reason = models.DisconnectReason


def token(identity: str, **kwargs: Any) -> str:
    return mint_token(KEY, SECRET, identity, ROOM, **kwargs)


class WireClient:
    """A minimal LiveKit signalling client: one aiortc PC, client-created channels."""

    def __init__(self, http: aiohttp.ClientSession, server: DevServer, identity: str) -> None:
        self.http = http
        self.server = server
        self.identity = identity
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pc: RTCPeerConnection | None = None
        self.channels: dict[str, RTCDataChannel] = {}
        self.data: asyncio.Queue[models.DataPacket] = asyncio.Queue()
        self.backlog: list[proto_rtc.SignalResponse] = []

    async def connect(
        self, jwt: str | None = None, query: dict[str, str] | None = None
    ) -> proto_rtc.JoinResponse:
        params = {"protocol": "16", "client_protocol": "2", "sdk": "python"}
        params.update(query or {})
        self.ws = await self.http.ws_connect(
            f"{self.server.url}/rtc",
            params=params,
            headers={"Authorization": f"Bearer {jwt or token(self.identity)}"},
        )
        first = await self.next_message()
        assert first.WhichOneof("message") == "join", first
        return first.join

    async def next_message(self, within: float = 5.0) -> proto_rtc.SignalResponse:
        assert self.ws is not None
        message = await self.ws.receive(within)
        if message.type != aiohttp.WSMsgType.BINARY:
            raise ConnectionError(f"websocket: {message.type!r}")
        return proto_rtc.SignalResponse.FromString(message.data)

    async def expect(self, kind: str, within: float = 5.0) -> proto_rtc.SignalResponse:
        for index, response in enumerate(self.backlog):
            if response.WhichOneof("message") == kind:
                return self.backlog.pop(index)
        while True:
            response = await self.next_message(within)
            if response.WhichOneof("message") == kind:
                return response
            self.backlog.append(response)

    async def send(self, request: proto_rtc.SignalRequest) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(request.SerializeToString())

    async def negotiate(self) -> str:
        """Offer a PC with _reliable and _lossy, apply the answer, wait for the channels."""
        with ice.use_host_addresses(["127.0.0.1"]):
            pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            for label, options in (
                ("_reliable", {"ordered": True}),
                ("_lossy", {"ordered": False, "maxRetransmits": 0}),
            ):
                channel = pc.createDataChannel(label, **options)
                channel.on("message", self._on_message)
                self.channels[label] = channel
            await pc.setLocalDescription(await pc.createOffer())
            assert pc.localDescription is not None
            await self.send(
                proto_rtc.SignalRequest(
                    offer=proto_rtc.SessionDescription(
                        type="offer", sdp=pc.localDescription.sdp, id=7
                    )
                )
            )
            answer = (await self.expect("answer")).answer
            assert answer.id == 7
            await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
        for _ in range(500):
            if all(c.readyState == "open" for c in self.channels.values()):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("data channels did not open")
        return answer.sdp

    def _on_message(self, message: bytes | str) -> None:
        assert isinstance(message, bytes), "server must send binary"
        self.data.put_nowait(models.DataPacket.FromString(message))

    def publish(self, packet: models.DataPacket, label: str = "_reliable") -> None:
        self.channels[label].send(packet.SerializeToString())

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.ws is not None:
            await self.ws.close()


@pytest.fixture
async def server() -> AsyncIterator[DevServer]:
    config = ServerConfig(port=0, client_protocol_overrides={"old": 0})
    async with DevServer(config) as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def clients(
    server: DevServer, http: aiohttp.ClientSession
) -> AsyncIterator[list[WireClient]]:
    made: list[WireClient] = []
    yield made
    for client in made:
        await client.close()


def new_client(
    made: list[WireClient], server: DevServer, http: aiohttp.ClientSession, identity: str
) -> WireClient:
    client = WireClient(http, server, identity)
    made.append(client)
    return client


async def test_validate_and_routes(server: DevServer, http: aiohttp.ClientSession) -> None:
    base = server.url.replace("ws://", "http://")
    good = {"Authorization": f"Bearer {token('alice')}"}
    async with http.get(f"{base}/rtc/validate", headers=good) as response:
        assert response.status == 200
        assert await response.text() == "success"
    async with http.get(f"{base}/rtc/validate", params={"access_token": token("alice")}) as r:
        assert r.status == 200
    async with http.get(f"{base}/rtc/validate") as response:
        assert response.status == 401
    expired = {"Authorization": f"Bearer {token('alice', ttl=-300)}"}
    async with http.get(f"{base}/rtc/validate", headers=expired) as response:
        assert response.status == 401
        assert "expired" in await response.text()
    for path in ("/rtc/v1", "/rtc/v1/validate"):
        async with http.get(f"{base}{path}", headers=good) as response:
            assert response.status == 404
            assert "requested room does not exist" not in await response.text()


@pytest.mark.parametrize(
    "jwt",
    [
        mint_token(KEY, SECRET, "alice", ROOM, ttl=-300),
        mint_token("wrongkey", SECRET, "alice", ROOM),
        mint_token(KEY, "wrongsecret", "alice", ROOM),
        "garbage",
    ],
    ids=["expired", "wrong-key", "wrong-secret", "garbage"],
)
async def test_bad_token_refused_before_upgrade(
    server: DevServer, http: aiohttp.ClientSession, jwt: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{server.url}/rtc", headers={"Authorization": f"Bearer {jwt}"})
    assert refused.value.status == 401
    assert server.rooms() == {}


async def test_join_response_and_query_token(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice = new_client(clients, server, http, "alice")
    assert alice.ws is None
    alice.ws = await http.ws_connect(
        f"{server.url}/rtc",
        params={
            "access_token": token("alice", name="Alice", attributes={"a": "1"}),
            "client_protocol": "2",
            "capabilities": "CAP_PACKET_TRAILER,10001,CAP_UNKNOWN_THING",
        },
    )
    join = (await alice.next_message()).join
    assert join.server_version == "1.9.0"
    assert join.server_info.version == "1.9.0"
    assert (join.ping_interval, join.ping_timeout) == (5, 15)
    assert join.subscriber_primary is False
    assert list(join.ice_servers) == []
    assert join.room.name == ROOM and join.room.sid.startswith("RM_")
    me = join.participant
    assert me.identity == "alice" and me.sid.startswith("PA_")
    assert me.name == "Alice" and dict(me.attributes) == {"a": "1"}
    assert me.client_protocol == 2
    assert list(me.capabilities) == [1, 10001]  # unknown value echoed untouched
    assert list(join.other_participants) == []


async def test_participants_capabilities_and_protocol_echoed_to_others(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice = new_client(clients, server, http, "alice")
    await alice.connect(query={"client_protocol": "1", "capabilities": "2,10001"})
    old = new_client(clients, server, http, "old")
    join = await old.connect()
    assert join.participant.client_protocol == 0  # server override
    (seen,) = join.other_participants
    assert seen.identity == "alice"
    assert seen.client_protocol == 1
    assert list(seen.capabilities) == [2, 10001]
    update = (await alice.expect("update")).update
    (info,) = update.participants
    assert info.identity == "old" and info.client_protocol == 0


async def test_data_forwarding_and_activation(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice, bob, carol = (new_client(clients, server, http, n) for n in ("alice", "bob", "carol"))
    for client in (alice, bob, carol):
        await client.connect()
    answers = [await client.negotiate() for client in (alice, bob, carol)]
    for sdp in answers:
        # Bound to loopback, the server offers loopback candidates only.
        candidates = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
        assert candidates and all(" 127.0.0.1 " in line for line in candidates), candidates

    # Everyone is reported ACTIVE once its PC connects, with increasing versions.
    state = server.rooms()[ROOM].state
    for _ in range(300):
        if all(p.active for p in state):
            break
        await asyncio.sleep(0.01)
    assert all(p.active for p in state)

    targeted = models.DataPacket(
        participant_identity="forged", destination_identities=["bob"], sequence=1
    )
    targeted.user.payload = b"to-bob"
    alice.publish(targeted)
    broadcast = models.DataPacket(sequence=2)
    broadcast.user.payload = b"to-all"
    alice.publish(broadcast)

    got_bob = [await asyncio.wait_for(bob.data.get(), 5) for _ in range(2)]
    got_carol = await asyncio.wait_for(carol.data.get(), 5)
    assert [p.user.payload for p in got_bob] == [b"to-bob", b"to-all"]
    assert got_carol.user.payload == b"to-all"  # the targeted one never reached carol
    assert got_bob[0].participant_identity == "alice"
    assert got_bob[0].participant_sid == state.by_identity("alice").sid  # type: ignore[union-attr]
    assert got_bob[0].user.participant_identity == "alice"
    assert got_bob[0].sequence == 1
    assert list(got_bob[0].destination_identities) == ["bob"]
    assert alice.data.empty()  # never echoed

    lossy = models.DataPacket()
    lossy.user.payload = b"lossy"
    bob.publish(lossy, "_lossy")
    for receiver in (alice, carol):
        packet = await asyncio.wait_for(receiver.data.get(), 5)
        assert packet.user.payload == b"lossy"
        assert packet.kind == models.DataPacket.Kind.LOSSY
        assert packet.participant_identity == "bob"
    await asyncio.sleep(0.1)
    assert bob.data.empty()


async def test_data_from_sender_without_permission_dropped(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice = new_client(clients, server, http, "alice")
    mute = new_client(clients, server, http, "mute")
    await alice.connect()
    await mute.connect(token("mute", can_publish_data=False))
    await alice.negotiate()
    await mute.negotiate()
    packet = models.DataPacket()
    packet.user.payload = b"nope"
    mute.publish(packet)
    await asyncio.sleep(0.3)
    assert alice.data.empty()


async def test_reliable_data_waits_for_recipient_channel(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice, bob = (
        new_client(clients, server, http, "alice"),
        new_client(clients, server, http, "bob"),
    )
    await alice.connect()
    await bob.connect()
    await alice.negotiate()
    for n in range(3):
        packet = models.DataPacket(destination_identities=["bob"], sequence=n + 1)
        packet.user.payload = f"early-{n}".encode()
        alice.publish(packet)
    await asyncio.sleep(0.2)  # forwarded while bob has no peer connection yet
    await bob.negotiate()
    got = [await asyncio.wait_for(bob.data.get(), 5) for _ in range(3)]
    assert [p.user.payload for p in got] == [b"early-0", b"early-1", b"early-2"]


async def test_ping_trickle_and_unknown_requests(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice = new_client(clients, server, http, "alice")
    await alice.connect()
    await alice.send(proto_rtc.SignalRequest(ping_req=proto_rtc.Ping(timestamp=1234, rtt=5)))
    pong = (await alice.expect("pong_resp")).pong_resp
    assert pong.last_ping_timestamp == 1234 and pong.timestamp > 0
    await alice.send(proto_rtc.SignalRequest(ping=99))
    assert (await alice.expect("pong")).pong > 0
    # Ignored politely: unknown kinds, subscriber trickle, broken trickle, garbage bytes.
    await alice.send(proto_rtc.SignalRequest(mute=proto_rtc.MuteTrackRequest(sid="TR_x")))
    await alice.send(
        proto_rtc.SignalRequest(
            trickle=proto_rtc.TrickleRequest(candidateInit="{not json", target=0)
        )
    )
    assert alice.ws is not None
    await alice.ws.send_bytes(b"\xff\xff\xff\xff")
    await alice.ws.send_str("text frame")
    answer_sdp = await alice.negotiate()
    assert "a=candidate" in answer_sdp
    assert alice.pc is not None
    # A trickled candidate after the offer is accepted.
    local = alice.pc.sctp.transport.transport.iceGatherer.getLocalCandidates()[0]  # type: ignore[union-attr]
    init = json.dumps(
        {"candidate": "candidate:" + candidate_to_sdp(local), "sdpMid": "0", "sdpMLineIndex": 0}
    )
    await alice.send(
        proto_rtc.SignalRequest(trickle=proto_rtc.TrickleRequest(candidateInit=init, target=0))
    )
    await alice.send(proto_rtc.SignalRequest(ping=1))
    assert (await alice.expect("pong")).pong > 0  # still alive


async def test_update_metadata_merge_and_permission(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice = new_client(clients, server, http, "alice")
    bob = new_client(clients, server, http, "bob")
    await alice.connect(token("alice", attributes={"keep": "1", "drop": "2"}))
    await bob.connect(token("bob", can_update_own_metadata=False))
    await alice.expect("update")  # bob joined

    await alice.send(
        proto_rtc.SignalRequest(
            update_metadata=proto_rtc.UpdateParticipantMetadata(
                request_id=5, name="Alice", attributes={"drop": "", "new": "3"}
            )
        )
    )
    response = (await alice.expect("request_response")).request_response
    assert response.request_id == 5
    assert response.reason == proto_rtc.RequestResponse.Reason.OK
    for client in (alice, bob):
        (info,) = (await client.expect("update")).update.participants
        assert info.identity == "alice" and info.name == "Alice"
        assert dict(info.attributes) == {"keep": "1", "new": "3"}

    await bob.send(
        proto_rtc.SignalRequest(
            update_metadata=proto_rtc.UpdateParticipantMetadata(request_id=6, metadata="m")
        )
    )
    refused = (await bob.expect("request_response")).request_response
    assert refused.request_id == 6
    assert refused.reason == proto_rtc.RequestResponse.Reason.NOT_ALLOWED


async def test_leave_and_versions(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice = new_client(clients, server, http, "alice")
    bob = new_client(clients, server, http, "bob")
    await alice.connect()
    await bob.connect()
    joined = (await alice.expect("update")).update.participants[0]
    await bob.send(proto_rtc.SignalRequest(leave=proto_rtc.LeaveRequest(reason=1)))
    left = (await alice.expect("update")).update.participants[0]
    assert left.identity == "bob"
    assert left.state == models.ParticipantInfo.State.DISCONNECTED
    assert left.disconnect_reason == Reason.CLIENT_INITIATED
    assert left.version > joined.version
    assert bob.ws is not None
    closed = await bob.ws.receive(5)
    assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_socket_close_counts_as_leave(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice = new_client(clients, server, http, "alice")
    bob = new_client(clients, server, http, "bob")
    await alice.connect()
    await bob.connect()
    await alice.expect("update")
    assert bob.ws is not None
    await bob.ws.close()
    left = (await alice.expect("update")).update.participants[0]
    assert left.state == models.ParticipantInfo.State.DISCONNECTED
    assert left.disconnect_reason == Reason.CLIENT_INITIATED


async def test_duplicate_identity_kicks_old_session(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    watcher = new_client(clients, server, http, "watcher")
    first = new_client(clients, server, http, "alice")
    second = new_client(clients, server, http, "alice")
    await watcher.connect()
    await first.connect()
    await watcher.expect("update")
    join = await second.connect()
    assert [p.identity for p in join.other_participants] == ["watcher"]
    leave = (await first.expect("leave")).leave
    assert leave.reason == Reason.DUPLICATE_IDENTITY
    assert leave.action == proto_rtc.LeaveRequest.Action.DISCONNECT
    gone = (await watcher.expect("update")).update.participants[0]
    assert gone.state == models.ParticipantInfo.State.DISCONNECTED
    assert gone.disconnect_reason == Reason.DUPLICATE_IDENTITY
    back = (await watcher.expect("update")).update.participants[0]
    assert back.identity == "alice" and back.sid == join.participant.sid


async def test_resume_is_refused_with_full_reconnect(
    server: DevServer, http: aiohttp.ClientSession, clients: list[WireClient]
) -> None:
    alice = new_client(clients, server, http, "alice")
    alice.ws = await http.ws_connect(
        f"{server.url}/rtc",
        params={"reconnect": "1", "sid": "PA_old"},
        headers={"Authorization": f"Bearer {token('alice')}"},
    )
    leave = (await alice.next_message()).leave
    assert leave.action == proto_rtc.LeaveRequest.Action.RECONNECT
    assert leave.reason == Reason.STATE_MISMATCH


async def test_peer_that_never_connects_is_removed(http: aiohttp.ClientSession) -> None:
    config = ServerConfig(port=0, pc_connect_timeout=0.3, close_timeout=0.3)
    async with DevServer(config) as server:
        client = WireClient(http, server, "lazy")
        try:
            await client.connect()
            leave = (await client.expect("leave", within=5)).leave
            assert leave.reason == Reason.CONNECTION_TIMEOUT
            room = server.rooms()[ROOM]
            assert len(room.state) == 0  # removed at once
            # The client does not close by itself: the server closes after a grace period.
            assert client.ws is not None
            closed = await client.ws.receive(5)
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            for _ in range(100):
                if not server.rooms():
                    break
                await asyncio.sleep(0.01)
            assert server.rooms() == {}
        finally:
            await client.close()


async def test_shutdown_sends_leave_and_closes(http: aiohttp.ClientSession) -> None:
    server = DevServer(ServerConfig(port=0, close_timeout=0.3))
    await server.start()
    client = WireClient(http, server, "alice")
    try:
        await client.connect()
        await client.negotiate()
        await server.close()
        leave = (await client.expect("leave")).leave
        assert leave.reason == Reason.SERVER_SHUTDOWN
        assert client.ws is not None
        closed = await client.ws.receive(5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    finally:
        await client.close()
        await server.close()


async def test_v1_path_needs_join_request_when_enabled(http: aiohttp.ClientSession) -> None:
    async with DevServer(ServerConfig(port=0, enable_v1=True)) as server:
        base = server.url.replace("ws://", "http://")
        headers = {"Authorization": f"Bearer {token('alice')}"}
        async with http.get(f"{base}/rtc/v1/validate", headers=headers) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{server.url}/rtc/v1", headers=headers)
        assert refused.value.status == 400
