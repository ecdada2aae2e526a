"""Host candidate restriction for aiortc (livekit_rpc.ice)."""

from __future__ import annotations

import asyncio

import aioice.ice
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection

from livekit_rpc import ice


def _gather() -> list[str]:
    return aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)


def test_context_restriction_includes_loopback() -> None:
    with ice.use_host_addresses(["127.0.0.1"]):
        assert _gather() == ["127.0.0.1"]
        assert ice.active_host_addresses() == ("127.0.0.1",)
    assert "127.0.0.1" not in _gather()  # aioice's own behaviour again
    assert ice.active_host_addresses() is None


def test_address_families_are_respected() -> None:
    with ice.use_host_addresses(["127.0.0.1", "::1"]):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == ["::1"]


def test_process_default_and_context_precedence() -> None:
    ice.set_default_host_addresses(["127.0.0.2"])
    try:
        assert _gather() == ["127.0.0.2"]
        with ice.use_host_addresses(["127.0.0.3"]):
            assert _gather() == ["127.0.0.3"]
        with ice.use_host_addresses(None):
            assert _gather() == ["127.0.0.2"]
    finally:
        ice.set_default_host_addresses(None)
    assert ice.active_host_addresses() is None


async def test_restriction_is_per_task() -> None:
    async def gather_in(address: str) -> list[str]:
        with ice.use_host_addresses([address]):
            await asyncio.sleep(0.01)
            return _gather()

    one, two = await asyncio.gather(gather_in("127.0.0.5"), gather_in("127.0.0.6"))
    assert (one, two) == (["127.0.0.5"], ["127.0.0.6"])


def test_install_is_idempotent() -> None:
    ice.install()
    patched = aioice.ice.get_host_addresses
    ice.install()
    assert aioice.ice.get_host_addresses is patched


@pytest.mark.parametrize("bad", [[], ["not-an-ip"], ["example.com"]])
def test_bad_addresses_rejected(bad: list[str]) -> None:
    with pytest.raises(ValueError), ice.use_host_addresses(bad):
        pass


def test_a_plain_string_is_rejected() -> None:
    with pytest.raises(TypeError):
        ice.set_default_host_addresses("127.0.0.1")


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1",)),
        ("localhost", ("127.0.0.1",)),
        ("127.0.0.9", ("127.0.0.9",)),
        ("10.231.0.1", ("10.231.0.1",)),
        ("0.0.0.0", None),
        ("::", None),
        ("", None),
        ("myhost.example", None),
    ],
)
def test_default_host_addresses_for_bind(bind: str, expected: tuple[str, ...] | None) -> None:
    assert ice.default_host_addresses_for_bind(bind) == expected


def test_is_loopback() -> None:
    assert ice.is_loopback("127.0.0.1")
    assert ice.is_loopback("127.1.2.3")
    assert ice.is_loopback("::1")
    assert ice.is_loopback("localhost")
    assert not ice.is_loopback("10.0.0.1")
    assert not ice.is_loopback("example.com")


def test_remote_mdns_candidates_refused_only_when_restricted() -> None:
    mdns = "candidate:1 1 udp 2122260223 4f0c1c5e-0b6f.local 54321 typ host"
    plain = "candidate:1 1 udp 2122260223 127.0.0.1 54321 typ host"
    assert ice.remote_candidate_allowed(mdns)
    with ice.use_host_addresses(["127.0.0.1"]):
        assert not ice.remote_candidate_allowed(mdns)
        assert ice.remote_candidate_allowed(plain)
        assert ice.remote_candidate_allowed(plain.removeprefix("candidate:"))
        assert not ice.remote_candidate_allowed("candidate:garbage")


async def test_two_aiortc_peers_connect_over_loopback_only() -> None:
    with ice.use_host_addresses(["127.0.0.1"]):
        a = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        b = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            channel = a.createDataChannel("_reliable")
            received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

            @b.on("datachannel")
            def on_channel(remote: object) -> None:
                remote.on("message", lambda m: received.done() or received.set_result(m))  # type: ignore[attr-defined]

            await a.setLocalDescription(await a.createOffer())
            assert a.localDescription is not None
            await b.setRemoteDescription(a.localDescription)
            await b.setLocalDescription(await b.createAnswer())
            assert b.localDescription is not None
            await a.setRemoteDescription(b.localDescription)
            for description in (a.localDescription, b.localDescription):
                candidates = [
                    line for line in description.sdp.splitlines() if line.startswith("a=candidate")
                ]
                assert candidates
                assert all(" 127.0.0.1 " in line for line in candidates), candidates
            opened = asyncio.Event()
            channel.on("open", opened.set)
            await asyncio.wait_for(opened.wait(), 10)
            channel.send(b"ping")
            assert await asyncio.wait_for(received, 10) == b"ping"
        finally:
            await a.close()
            await b.close()
