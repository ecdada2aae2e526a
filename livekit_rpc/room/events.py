"""Event names, enums and event payloads of the room client.

The names and numeric values follow LiveKit's Python SDK (``livekit.rtc``), so code written
against it keeps working when it imports from :mod:`livekit_rpc.room` instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .participant import RemoteParticipant

EventTypes = Literal[
    "participant_connected",
    "participant_disconnected",
    "participant_attributes_changed",
    "participant_metadata_changed",
    "participant_name_changed",
    "connection_state_changed",
    "connected",
    "disconnected",
    "reconnecting",
    "reconnected",
    "data_received",
]
"""Events a :class:`~livekit_rpc.room.Room` emits.

* ``participant_connected(participant: RemoteParticipant)``
* ``participant_disconnected(participant: RemoteParticipant)``
* ``participant_attributes_changed(changed_attributes: dict[str, str], participant)``
* ``participant_metadata_changed(participant, old_metadata: str, metadata: str)``
* ``participant_name_changed(participant, old_name: str, name: str)``
* ``connection_state_changed(state: ConnectionState)``
* ``connected()``
* ``disconnected(reason: DisconnectReason)``
* ``reconnecting()``: the connection was lost; the room is rejoining (state
  ``CONN_RECONNECTING``)
* ``reconnected()``: rejoined; participants that came or went meanwhile have had their events
* ``data_received(packet: DataPacket)``
"""


class ConnectionState(enum.IntEnum):
    """The room's connection state (same values as ``livekit.rtc.ConnectionState``)."""

    CONN_DISCONNECTED = 0
    CONN_CONNECTED = 1
    CONN_RECONNECTING = 2


class DataPacketKind(enum.IntEnum):
    """Delivery mode of a user data packet (same values as ``livekit.rtc.DataPacketKind``).

    Note: the values are the SDK's, which are the reverse of the wire enum
    ``DataPacket.Kind`` (``RELIABLE = 0``, ``LOSSY = 1``).
    """

    KIND_LOSSY = 0
    KIND_RELIABLE = 1


class DisconnectReason(enum.IntEnum):
    """Why a participant or the room disconnected (values of ``DisconnectReason`` on the wire)."""

    UNKNOWN_REASON = 0
    CLIENT_INITIATED = 1
    DUPLICATE_IDENTITY = 2
    SERVER_SHUTDOWN = 3
    PARTICIPANT_REMOVED = 4
    ROOM_DELETED = 5
    STATE_MISMATCH = 6
    JOIN_FAILURE = 7
    MIGRATION = 8
    SIGNAL_CLOSE = 9
    ROOM_CLOSED = 10
    USER_UNAVAILABLE = 11
    USER_REJECTED = 12
    SIP_TRUNK_FAILURE = 13
    CONNECTION_TIMEOUT = 14
    MEDIA_FAILURE = 15
    AGENT_ERROR = 16

    @classmethod
    def from_wire(cls, value: int) -> DisconnectReason:
        """Map a wire value to the enum, ``UNKNOWN_REASON`` for values it does not know."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN_REASON


@dataclass
class DataPacket:
    """A user data packet received with ``publish_data`` semantics.

    Attributes:
        data: the payload.
        kind: reliable or lossy.
        participant: the sender, or ``None`` when it is not a known remote participant.
        topic: the packet's topic, if any.
    """

    data: bytes
    kind: DataPacketKind
    participant: RemoteParticipant | None
    topic: str | None = None
