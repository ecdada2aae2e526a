"""The base of the managers: packets leave through a callback, or as pyee events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from pyee import EventEmitter

from .wire.packets import DataPacket

SendPacket = Callable[[DataPacket], Awaitable[None]]

SEND_PACKET_EVENT: Final = "send_packet"
"""Event carrying each DataPacket to send, when a manager has no ``send_packet`` callback."""


class PacketEmitter(EventEmitter):
    """A pyee ``EventEmitter`` whose packets go out through ``send_packet``.

    With a ``send_packet`` coroutine function, every packet is awaited through it, so a
    transport can apply backpressure and a failed send fails the operation at once. Without
    one, each packet is emitted as a ``"send_packet"`` event (as LiveKit's managers do); a
    listener that raises makes that send fail.
    """

    def __init__(self, send_packet: SendPacket | None) -> None:
        super().__init__()
        self._send: SendPacket = send_packet or self._emit_packet

    async def _emit_packet(self, packet: DataPacket) -> None:
        self.emit(SEND_PACKET_EVENT, packet)
