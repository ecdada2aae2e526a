"""Shared test tools: a recording transport, stamped incoming packets, endpoint factories."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from livekit_rpc import RpcEndpoint, StaticPeerDirectory, StreamLimits
from livekit_rpc.streams.framing import text_header
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.packets import (
    DataPacket,
    stream_chunk_packet,
    stream_header_packet,
    stream_trailer_packet,
)


class Wire:
    """A ``send_packet`` that records what it is given, as it would look after the wire."""

    def __init__(self) -> None:
        self.packets: list[DataPacket] = []
        self.fail: Exception | None = None
        self.gate: asyncio.Event | None = None
        """When set, each send waits for it (to hold a send in flight)."""

    async def send(self, packet: DataPacket) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        wire = DataPacket()
        wire.ParseFromString(packet.SerializeToString())
        self.packets.append(wire)
        await asyncio.sleep(0)

    def kinds(self) -> list[str | None]:
        return [p.WhichOneof("value") for p in self.packets]

    def of_kind(self, kind: str) -> list[DataPacket]:
        return [p for p in self.packets if p.WhichOneof("value") == kind]


def directory(**peers: tuple[int, tuple[int, ...]]) -> StaticPeerDirectory:
    """``directory(bob=(2, (2,)))``: identities with (client_protocol, capabilities)."""
    result = StaticPeerDirectory()
    for identity, (protocol, caps) in peers.items():
        result.add(identity, protocol, caps)
    return result


V2_DEFLATE = (c.CLIENT_PROTOCOL_DATA_STREAM_V2, (c.CAP_COMPRESSION_DEFLATE_RAW,))
V2_ALL = (c.CLIENT_PROTOCOL_DATA_STREAM_V2, tuple(c.LOCAL_CAPABILITIES))
V2_BARE = (c.CLIENT_PROTOCOL_DATA_STREAM_V2, ())
V1 = (c.CLIENT_PROTOCOL_DATA_STREAM_RPC, ())
V0 = (c.CLIENT_PROTOCOL_DEFAULT, ())


def endpoint(
    limits: StreamLimits | None = None, **peers: tuple[int, tuple[int, ...]]
) -> tuple[RpcEndpoint, Wire]:
    """An endpoint whose outgoing packets land in the returned :class:`Wire`."""
    wire = Wire()
    return RpcEndpoint(peers=directory(**peers), send_packet=wire.send, limits=limits), wire


def stamped(packet: DataPacket, sender: str) -> DataPacket:
    """``packet`` as the SFU delivers it: with the sender's identity filled in."""
    packet.participant_identity = sender
    return packet


def header(
    stream_id: str = "s1",
    *,
    sender: str = "alice",
    topic: str = "t",
    kind: str = "text",
    total_length: int | None = None,
    attributes: Mapping[str, str] | None = None,
    compression: int = c.COMPRESSION_NONE,
    inline: bytes | None = None,
    name: str = "file.bin",
    attached: tuple[str, ...] = (),
) -> DataPacket:
    return stamped(
        stream_header_packet(
            stream_id=stream_id,
            timestamp_ms=1_700_000_000_000,
            topic=topic,
            mime_type=c.TEXT_MIME_TYPE if kind == "text" else c.BYTES_MIME_TYPE,
            total_length=total_length,
            attributes=attributes,
            destinations=(),
            compression=compression,
            text_header=text_header(attached_stream_ids=attached) if kind == "text" else None,
            byte_name=name if kind == "bytes" else None,
            inline_content=inline,
        ),
        sender,
    )


def chunk(stream_id: str = "s1", index: int = 0, content: bytes = b"", sender: str = "alice"):
    return stamped(
        stream_chunk_packet(
            stream_id=stream_id, chunk_index=index, content=content, destinations=()
        ),
        sender,
    )


def trailer(
    stream_id: str = "s1",
    *,
    reason: str = "",
    attributes: Mapping[str, str] | None = None,
    sender: str = "alice",
) -> DataPacket:
    return stamped(
        stream_trailer_packet(
            stream_id=stream_id, destinations=(), reason=reason, attributes=attributes
        ),
        sender,
    )


async def settle(rounds: int = 10) -> None:
    """Let spawned tasks run until they block."""
    for _ in range(rounds):
        await asyncio.sleep(0)
