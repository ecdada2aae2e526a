"""The official LiveKit Python SDK (``livekit`` 1.2.0, libwebrtc via the Rust FFI) against our
dev room server.

Everything runs inside the suite's network namespace (see ``tests/conftest.py``): signalling on
127.0.0.1, ICE on the namespace's veth address, because libwebrtc ignores loopback interfaces.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
from livekit import rtc
from livekit.protocol import models

from livekit_rpc.server import DevServer, ServerConfig, mint_token
from livekit_rpc.server.forwarding import Forward

KEY, SECRET, ROOM = "devkey", "secret", "sdk-room"
LEGACY = "legacy"  # identity the server reports with client_protocol 0

E = rtc.RpcError.ErrorCode


def token(identity: str, **kwargs: Any) -> str:
    return mint_token(KEY, SECRET, identity, ROOM, **kwargs)


def incompressible(size: int) -> str:
    """ASCII text of exactly ``size`` characters that deflate cannot shrink much."""
    text = base64.b64encode(os.urandom(size * 3 // 4 + 3)).decode()
    return text[:size]


@pytest.fixture
async def server(netns_address: str) -> AsyncIterator[DevServer]:
    config = ServerConfig(
        port=0,
        rtc_hosts=(netns_address,),
        client_protocol_overrides={LEGACY: 0},
    )
    async with DevServer(config) as srv:
        yield srv


@pytest.fixture
def taps(server: DevServer) -> list[Forward]:
    """Every data packet the server forwards, in order."""
    seen: list[Forward] = []
    server.add_data_tap(lambda _room, forward: seen.append(forward))
    return seen


@asynccontextmanager
async def joined(server: DevServer, identity: str, **token_kwargs: Any) -> AsyncIterator[rtc.Room]:
    room = rtc.Room()
    await room.connect(server.url, token(identity, **token_kwargs))
    try:
        yield room
    finally:
        await room.disconnect()


async def wait_for(predicate: Callable[[], bool], within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def join_all(server: DevServer, *identities: str) -> tuple[AsyncExitStack, list[rtc.Room]]:
    stack = AsyncExitStack()
    rooms = [await stack.enter_async_context(joined(server, who)) for who in identities]
    # Everybody sees everybody before the test starts.
    await wait_for(lambda: all(len(r.remote_participants) == len(identities) - 1 for r in rooms))
    return stack, rooms


async def test_participants_see_each_other(server: DevServer) -> None:
    connected: asyncio.Future[rtc.RemoteParticipant] = asyncio.get_running_loop().create_future()
    async with joined(server, "alice") as alice:
        alice.on("participant_connected", lambda p: connected.done() or connected.set_result(p))
        async with joined(server, "bob") as bob:
            bob_seen = await asyncio.wait_for(connected, 5)
            assert bob_seen.identity == "bob"
            assert "alice" in bob.remote_participants
            # The server echoed each client's own protocol and capabilities.
            assert bob_seen._info.client_protocol == 2
            assert bob.remote_participants["alice"]._info.client_protocol == 2
            state = server.rooms()[ROOM].state
            for who in ("alice", "bob"):
                participant = state.by_identity(who)
                assert participant is not None
                assert participant.client_protocol == 2
                assert participant.capabilities  # the SDK advertises some
            assert alice.local_participant.sid.startswith("PA_")
            await wait_for(lambda: all(p.active for p in state))


@pytest.mark.parametrize("size", [0, 20_000, 1_000_000, 5_000_000])
async def test_rpc_both_ways(server: DevServer, taps: list[Forward], size: int) -> None:
    stack, (alice, bob) = await join_all(server, "alice", "bob")
    async with stack:
        payload = incompressible(size)

        def echo_handler(data: rtc.RpcInvocationData) -> str:
            return f"{data.caller_identity}:{len(data.payload)}:{data.payload[-16:]}"

        alice.local_participant.register_rpc_method("echo", echo_handler)
        bob.local_participant.register_rpc_method("echo", echo_handler)

        for caller, callee in ((alice, bob), (bob, alice)):
            reply = await caller.local_participant.perform_rpc(
                destination_identity=callee.local_participant.identity,
                method="echo",
                payload=payload,
                response_timeout=60,
            )
            assert reply == f"{caller.local_participant.identity}:{size}:{payload[-16:]}"

        # Between two v2 peers requests travel as data streams, not RPC v1 packets.
        kinds = {f.packet.WhichOneof("value") for f in taps}
        assert "stream_header" in kinds
        assert "rpc_request" not in kinds


async def test_rpc_errors(server: DevServer) -> None:
    stack, (alice, bob) = await join_all(server, "alice", "bob")
    async with stack:

        @bob.local_participant.register_rpc_method("fail")
        async def fail(_data: rtc.RpcInvocationData) -> str:
            raise rtc.RpcError(4242, "custom failure", "extra-data")

        with pytest.raises(rtc.RpcError) as failure:
            await alice.local_participant.perform_rpc(
                destination_identity="bob", method="fail", payload="x"
            )
        assert failure.value.code == 4242
        assert failure.value.message == "custom failure"
        assert failure.value.data == "extra-data"

        with pytest.raises(rtc.RpcError) as unknown:
            await alice.local_participant.perform_rpc(
                destination_identity="bob", method="no-such-method", payload="x"
            )
        assert unknown.value.code == E.UNSUPPORTED_METHOD


async def test_targeted_data_reaches_only_its_destination(server: DevServer) -> None:
    stack, (alice, bob, carol) = await join_all(server, "alice", "bob", "carol")
    async with stack:
        received: dict[str, list[rtc.DataPacket]] = {"bob": [], "carol": []}
        bob.on("data_received", received["bob"].append)
        carol.on("data_received", received["carol"].append)

        await alice.local_participant.publish_data(
            b"for-bob-only", destination_identities=["bob"], topic="t"
        )
        await alice.local_participant.publish_data(b"for-everyone", topic="t")
        # Same sender, reliable channel: order is kept, so once the broadcast arrived
        # anything forwarded before it has arrived too.
        await wait_for(lambda: len(received["carol"]) >= 1 and len(received["bob"]) >= 2)
        assert [p.data for p in received["bob"]] == [b"for-bob-only", b"for-everyone"]
        assert [p.data for p in received["carol"]] == [b"for-everyone"]
        for packet in received["bob"]:
            assert packet.participant is not None
            assert packet.participant.identity == "alice"
            assert packet.topic == "t"

        # Lossy data is forwarded too.
        await alice.local_participant.publish_data(b"lossy", reliable=False)
        await wait_for(lambda: any(p.data == b"lossy" for p in received["carol"]))


async def test_sender_without_can_publish_data_is_not_forwarded(server: DevServer) -> None:
    stack, (alice,) = await join_all(server, "alice")
    async with stack, joined(server, "mute", can_publish_data=False) as mute:
        got: list[rtc.DataPacket] = []
        alice.on("data_received", got.append)
        await wait_for(lambda: "mute" in alice.remote_participants)
        await mute.local_participant.publish_data(b"should-not-arrive")
        await asyncio.sleep(0.5)
        assert got == []


async def test_attributes_propagate(server: DevServer) -> None:
    stack, (alice, bob) = await join_all(server, "alice", "bob")
    async with stack:
        changes: list[dict[str, str]] = []
        bob.on(
            "participant_attributes_changed",
            lambda changed, participant: changes.append(dict(changed)),
        )
        started = time.monotonic()
        await alice.local_participant.set_attributes({"color": "blue", "size": "L"})
        # The server answers the request at once (no client-side 5 s timeout).
        assert time.monotonic() - started < 2
        await wait_for(lambda: bob.remote_participants["alice"].attributes.get("color") == "blue")
        await alice.local_participant.set_attributes({"color": ""})  # "" deletes
        await wait_for(lambda: "color" not in bob.remote_participants["alice"].attributes)
        assert bob.remote_participants["alice"].attributes == {"size": "L"}
        assert changes


async def test_bad_tokens_are_refused(server: DevServer) -> None:
    bad = {
        "expired": token("late", ttl=-300),
        "wrong key": mint_token("otherkey", SECRET, "eve", ROOM),
        "wrong secret": mint_token(KEY, "not-the-secret", "eve", ROOM),
    }

    async def attempt(jwt: str) -> BaseException | None:
        room = rtc.Room()
        try:
            await room.connect(server.url, jwt, rtc.RoomOptions(connect_timeout=2))
        except rtc.ConnectError as exc:
            return exc
        finally:
            await room.disconnect()
        return None

    results = await asyncio.gather(*(attempt(jwt) for jwt in bad.values()))
    for name, result in zip(bad, results, strict=True):
        assert isinstance(result, rtc.ConnectError), name
    assert ROOM not in server.rooms()


async def test_disconnect_mid_call_fails_fast(server: DevServer) -> None:
    stack, (alice,) = await join_all(server, "alice")
    async with stack:
        bob = rtc.Room()
        await bob.connect(server.url, token("bob"))
        try:
            started = asyncio.Event()

            @bob.local_participant.register_rpc_method("slow")
            async def slow(_data: rtc.RpcInvocationData) -> str:
                started.set()
                await asyncio.sleep(30)
                return "too late"

            await wait_for(lambda: "bob" in alice.remote_participants)
            call = asyncio.create_task(
                alice.local_participant.perform_rpc(
                    destination_identity="bob", method="slow", payload="x", response_timeout=30
                )
            )
            await asyncio.wait_for(started.wait(), 5)
            t0 = time.monotonic()
            await bob.disconnect()
            with pytest.raises(rtc.RpcError) as failure:
                await asyncio.wait_for(call, 5)
            assert failure.value.code == E.RECIPIENT_DISCONNECTED
            assert time.monotonic() - t0 < 3
        finally:
            await bob.disconnect()


async def test_duplicate_identity_kicks_the_first(server: DevServer) -> None:
    async with joined(server, "alice") as first:
        gone: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        first.on("disconnected", lambda reason: gone.done() or gone.set_result(reason))
        async with joined(server, "alice") as second:
            reason = await asyncio.wait_for(gone, 5)
            assert reason == models.DisconnectReason.DUPLICATE_IDENTITY
            assert second.isconnected()
            state = server.rooms()[ROOM].state
            assert len(state) == 1


async def test_server_shutdown_is_seen(server: DevServer) -> None:
    stack, rooms = await join_all(server, "alice", "bob")
    async with stack:
        loop = asyncio.get_running_loop()
        gone = [loop.create_future() for _ in rooms]
        for room, future in zip(rooms, gone, strict=True):
            room.on("disconnected", lambda r, f=future: f.done() or f.set_result(r))
        t0 = time.monotonic()
        await server.close()
        reasons = await asyncio.wait_for(asyncio.gather(*gone), 5)
        assert all(r == models.DisconnectReason.SERVER_SHUTDOWN for r in reasons)
        assert time.monotonic() - t0 < 5


async def test_legacy_peer_gets_rpc_v1_with_size_limit(
    server: DevServer, taps: list[Forward]
) -> None:
    stack, (alice, legacy) = await join_all(server, "alice", LEGACY)
    async with stack:
        assert alice.remote_participants[LEGACY]._info.client_protocol == 0

        @legacy.local_participant.register_rpc_method("echo")
        def echo(data: rtc.RpcInvocationData) -> str:
            return data.payload

        small = incompressible(10_000)
        reply = await alice.local_participant.perform_rpc(
            destination_identity=LEGACY, method="echo", payload=small
        )
        assert reply == small
        requests = [f.packet for f in taps if f.packet.WhichOneof("value") == "rpc_request"]
        assert len(requests) == 1
        assert requests[0].rpc_request.payload == small
        assert not any(f.packet.WhichOneof("value") == "stream_header" for f in taps)

        with pytest.raises(rtc.RpcError) as too_big:
            await alice.local_participant.perform_rpc(
                destination_identity=LEGACY, method="echo", payload=incompressible(20_000)
            )
        assert too_big.value.code == E.REQUEST_PAYLOAD_TOO_LARGE


async def test_single_peer_connection_path(netns_address: str) -> None:
    config = ServerConfig(port=0, rtc_hosts=(netns_address,), enable_v1=True)
    async with DevServer(config) as server:
        stack, (alice, bob) = await join_all(server, "alice", "bob")
        async with stack:
            live = server.rooms()[ROOM]
            assert all(p.client_protocol == 2 for p in live.state)
            assert all(session.single_pc for session in live.sessions())

            @bob.local_participant.register_rpc_method("len")
            def length(data: rtc.RpcInvocationData) -> str:
                return str(len(data.payload))

            payload = incompressible(200_000)
            reply = await alice.local_participant.perform_rpc(
                destination_identity="bob", method="len", payload=payload
            )
            assert reply == "200000"
            got: list[rtc.DataPacket] = []
            alice.on("data_received", got.append)
            await bob.local_participant.publish_data(b"hello", destination_identities=["alice"])
            await wait_for(lambda: [p.data for p in got] == [b"hello"])
