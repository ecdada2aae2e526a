"""A LiveKit room client on aiortc, for data packets, RPC and data streams (no media).

Names follow LiveKit's Python SDK (``livekit.rtc``), so data-only code can switch between the
two by changing an import. It joins this project's dev server and, through the same signalling,
a LiveKit server (publisher-primary and subscriber-primary topologies).
"""

from livekit_rpc.rpc.errors import RpcError
from livekit_rpc.rpc.types import RpcInvocationData
from livekit_rpc.streams.outgoing import ByteStreamWriter, TextStreamWriter
from livekit_rpc.streams.reader import ByteStreamReader, TextStreamReader
from livekit_rpc.streams.types import (
    ByteStreamInfo,
    DataStreamError,
    StreamLimits,
    TextStreamInfo,
)

from .events import ConnectionState, DataPacket, DataPacketKind, DisconnectReason, EventTypes
from .participant import LocalParticipant, Participant, RemoteParticipant
from .room import Room, RoomOptions, RtcConfiguration
from .signal_client import ConnectError, SignalRequestError
from .transport import IceServer, TransportClosedError

__all__ = [
    "ByteStreamInfo",
    "ByteStreamReader",
    "ByteStreamWriter",
    "ConnectError",
    "ConnectionState",
    "DataPacket",
    "DataPacketKind",
    "DataStreamError",
    "DisconnectReason",
    "EventTypes",
    "IceServer",
    "LocalParticipant",
    "Participant",
    "RemoteParticipant",
    "Room",
    "RoomOptions",
    "RpcError",
    "RpcInvocationData",
    "RtcConfiguration",
    "SignalRequestError",
    "StreamLimits",
    "TextStreamInfo",
    "TextStreamReader",
    "TextStreamWriter",
    "TransportClosedError",
]
