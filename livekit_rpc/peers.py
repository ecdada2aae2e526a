"""How the RPC and stream managers learn what each remote participant can do."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol


class PeerDirectory(Protocol):
    """Read-only view of the remote participants, as the managers need it.

    An identity that is not known counts as client_protocol 0 with no capabilities.
    """

    def client_protocol(self, identity: str) -> int: ...

    def capabilities(self, identity: str) -> frozenset[int]: ...

    def remote_identities(self) -> Iterable[str]: ...


@dataclass(frozen=True)
class PeerInfo:
    """What a participant advertised when it joined."""

    client_protocol: int = 0
    capabilities: frozenset[int] = frozenset()


@dataclass
class StaticPeerDirectory:
    """A :class:`PeerDirectory` kept by hand: for tests, bridges, and transports without a room."""

    peers: dict[str, PeerInfo] = field(default_factory=dict)

    def add(self, identity: str, client_protocol: int, capabilities: Iterable[int] = ()) -> None:
        self.peers[identity] = PeerInfo(client_protocol, frozenset(capabilities))

    def remove(self, identity: str) -> None:
        self.peers.pop(identity, None)

    def client_protocol(self, identity: str) -> int:
        peer = self.peers.get(identity)
        return peer.client_protocol if peer else 0

    def capabilities(self, identity: str) -> frozenset[int]:
        peer = self.peers.get(identity)
        return peer.capabilities if peer else frozenset()

    def remote_identities(self) -> Iterable[str]:
        return list(self.peers)
