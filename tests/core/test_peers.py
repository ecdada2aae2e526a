"""peers.py: the directory of remote participants' protocol levels and capabilities."""

from __future__ import annotations

from livekit_rpc import PeerInfo, StaticPeerDirectory


def test_unknown_identity_is_protocol_0_without_capabilities() -> None:
    peers = StaticPeerDirectory()
    assert peers.client_protocol("stranger") == 0
    assert peers.capabilities("stranger") == frozenset()
    assert list(peers.remote_identities()) == []


def test_add_and_remove() -> None:
    peers = StaticPeerDirectory()
    peers.add("bob", 2, [2, 10001])
    assert peers.client_protocol("bob") == 2
    assert peers.capabilities("bob") == frozenset({2, 10001})
    assert list(peers.remote_identities()) == ["bob"]
    assert peers.peers["bob"] == PeerInfo(2, frozenset({2, 10001}))
    peers.remove("bob")
    peers.remove("bob")  # no-op
    assert peers.client_protocol("bob") == 0
    assert list(peers.remote_identities()) == []
