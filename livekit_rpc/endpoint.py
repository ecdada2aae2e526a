"""``RpcEndpoint``: the RPC and data-stream managers wired together, with no room around them.

A room (or any other transport) gives it a way to send a DataPacket and a directory of
remote participants, feeds it every incoming DataPacket, and tells it when someone leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from google.protobuf.message import DecodeError

from .peers import PeerDirectory
from .rpc.client import RpcClientManager
from .rpc.server import RpcServerManager
from .streams.incoming import IncomingDataStreamManager
from .streams.outgoing import OutgoingDataStreamManager
from .streams.reader import ByteStreamReader, TextStreamReader
from .streams.types import StreamLimits
from .wire import constants as c
from .wire.compression import DEFAULT_ZSTD_LEVEL
from .wire.packets import DataPacket

logger = logging.getLogger(__name__)

SendPacket = Callable[[DataPacket], Awaitable[None]]

_STREAM_CASES = frozenset({"stream_header", "stream_chunk", "stream_trailer"})


class RpcEndpoint:
    """One participant's RPC client, RPC server and data-stream managers, routed together.

    ``send_packet`` must deliver a DataPacket reliably and in order (awaiting it may apply
    backpressure); ``peers`` answers what each remote identity advertised.
    """

    def __init__(
        self,
        *,
        peers: PeerDirectory,
        send_packet: SendPacket,
        limits: StreamLimits | None = None,
        zstd_level: int = DEFAULT_ZSTD_LEVEL,
    ) -> None:
        self.peers = peers
        self.streams_out = OutgoingDataStreamManager(send_packet, peers, zstd_level=zstd_level)
        self.streams_in = IncomingDataStreamManager(limits)
        self.client = RpcClientManager(
            send_packet=send_packet, streams=self.streams_out, peers=peers
        )
        self.server = RpcServerManager(
            send_packet=send_packet, streams=self.streams_out, peers=peers
        )
        self.streams_in.register_text_stream_handler(c.RPC_REQUEST_TOPIC, self._on_request_stream)
        self.streams_in.register_text_stream_handler(c.RPC_RESPONSE_TOPIC, self._on_response_stream)
        self.streams_in.register_text_stream_handler(c.STREAM_CHUNK_TOPIC, self._on_chunk_stream)
        self.streams_in.register_byte_stream_handler(c.STREAM_CHUNK_TOPIC, self._on_chunk_stream)
        self.streams_in.register_text_stream_handler(c.STREAM_CONTROL_TOPIC, self._on_control)

    def _on_request_stream(self, reader: TextStreamReader, sender: str) -> None:
        self.server.handle_request_stream(reader, sender)

    def _on_response_stream(self, reader: TextStreamReader, sender: str) -> None:
        self.client.handle_response_stream(reader, sender)

    def _on_chunk_stream(self, reader: TextStreamReader | ByteStreamReader, sender: str) -> None:
        # Request chunks (client streaming) go to the server side, response chunks to the
        # client side; request ids are unique, so at most one side knows the id.
        if not self.server.handle_upload_chunk(reader, sender):
            self.client.handle_chunk_stream(reader, sender)

    def _on_control(self, reader: TextStreamReader, sender: str) -> None:
        attributes = reader.info.attributes
        if not self.server.handle_control(attributes, sender):
            self.client.handle_control(attributes, sender)

    def handle_bytes(self, data: bytes, encryption_type: int = c.ENCRYPTION_NONE) -> None:
        """Parse and route one data-channel message. Never raises."""
        packet = DataPacket()
        try:
            packet.ParseFromString(data)
        except DecodeError as exc:
            logger.warning("malformed DataPacket (%d bytes) dropped: %s", len(data), exc)
            return
        self.handle_packet(packet, encryption_type)

    def handle_packet(self, packet: DataPacket, encryption_type: int = c.ENCRYPTION_NONE) -> None:
        """Route one DataPacket whose ``participant_identity`` the server stamped. Never raises."""
        which = packet.WhichOneof("value")
        sender = packet.participant_identity
        try:
            if which in _STREAM_CASES:
                self.streams_in.handle_packet(packet, encryption_type)
            elif which == "rpc_request":
                self.server.handle_request(packet.rpc_request, sender)
            elif which == "rpc_ack":
                self.client.handle_ack(packet.rpc_ack.request_id, sender)
            elif which == "rpc_response":
                self.client.handle_response(packet.rpc_response, sender)
            elif which == "encrypted_packet":
                logger.warning("encrypted DataPacket from %s dropped: E2EE is not set up", sender)
        except Exception:  # never let one bad packet stop the caller's receive loop
            logger.exception("unexpected error while routing a %s packet", which)

    def handle_participant_disconnected(self, identity: str) -> None:
        """A remote participant left: fail its streams, then the calls waiting on it."""
        self.streams_in.handle_participant_disconnected(identity)
        self.client.handle_participant_disconnected(identity)

    async def aclose(self) -> None:
        """Local disconnect: fail pending calls and open streams, cancel running handlers."""
        self.client.close()
        await self.streams_in.aclose()
        await self.server.aclose()
