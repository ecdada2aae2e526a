"""In-memory stand-in for the SFU: endpoints exchange serialized DataPackets directly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from livekit_rpc import RpcEndpoint, StaticPeerDirectory
from livekit_rpc.wire.constants import CLIENT_PROTOCOL, LOCAL_CAPABILITIES
from livekit_rpc.wire.packets import DataPacket

Tamper = Callable[[str, DataPacket], DataPacket | None]
"""Rewrites a packet in flight (``sender``, ``packet``); returning None drops it."""


class Bridge:
    """Routes packets between endpoints by identity, stamping the sender like a server does.

    Every packet crosses as bytes (serialize, parse), and is recorded in ``log`` as
    ``(sender, packet)`` for assertions on the wire. ``tamper``, when set, sees each packet
    before it is logged and delivered, and may change or drop it.
    """

    def __init__(self) -> None:
        self.endpoints: dict[str, RpcEndpoint] = {}
        self.directories: dict[str, StaticPeerDirectory] = {}
        self.advertised: dict[str, tuple[int, tuple[int, ...]]] = {}
        self.log: list[tuple[str, DataPacket]] = []
        self.fail_sends_from: set[str] = set()
        self.tamper: Tamper | None = None

    def join(
        self,
        identity: str,
        *,
        client_protocol: int = CLIENT_PROTOCOL,
        capabilities: Iterable[int] = LOCAL_CAPABILITIES,
        **kwargs: object,
    ) -> RpcEndpoint:
        directory = StaticPeerDirectory()
        for other in self.endpoints:
            directory.add(other, *self.advertised[other])
            self.directories[other].add(identity, client_protocol, capabilities)
        self.advertised[identity] = (client_protocol, tuple(capabilities))

        async def send(packet: DataPacket) -> None:
            await self._route(identity, packet)

        endpoint = RpcEndpoint(peers=directory, send_packet=send, **kwargs)  # type: ignore[arg-type]
        self.endpoints[identity] = endpoint
        self.directories[identity] = directory
        return endpoint

    async def _route(self, sender: str, packet: DataPacket) -> None:
        if sender in self.fail_sends_from:
            raise ConnectionError("transport closed")
        wire = DataPacket()
        wire.ParseFromString(packet.SerializeToString())
        wire.participant_identity = sender
        if self.tamper is not None:
            tampered = self.tamper(sender, wire)
            if tampered is None:
                await asyncio.sleep(0)
                return
            wire = tampered
        self.log.append((sender, wire))
        targets = list(wire.destination_identities) or [i for i in self.endpoints if i != sender]
        data = wire.SerializeToString()
        for target in targets:
            if target in self.endpoints and target != sender:
                self.endpoints[target].handle_bytes(data)
        await asyncio.sleep(0)

    async def leave(self, identity: str) -> None:
        endpoint = self.endpoints.pop(identity)
        self.directories.pop(identity)
        self.advertised.pop(identity)
        for other, directory in self.directories.items():
            directory.remove(identity)
            self.endpoints[other].handle_participant_disconnected(identity)
        await endpoint.aclose()

    async def aclose(self) -> None:
        for endpoint in self.endpoints.values():
            await endpoint.aclose()

    def sent_by(self, identity: str) -> list[DataPacket]:
        return [p for s, p in self.log if s == identity]
