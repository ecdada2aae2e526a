"""LiveKit-compatible RPC over data streams, with streaming RPC, for Python."""

from .endpoint import RpcEndpoint
from .peers import PeerDirectory, PeerInfo, StaticPeerDirectory
from .rpc.client import RpcClientManager
from .rpc.errors import RpcError
from .rpc.server import RpcServerManager
from .rpc.types import RpcInvocationData
from .streams.incoming import IncomingDataStreamManager
from .streams.outgoing import ByteStreamWriter, OutgoingDataStreamManager, TextStreamWriter
from .streams.reader import ByteStreamReader, TextStreamReader
from .streams.types import (
    ByteStreamInfo,
    DataStreamError,
    DataStreamErrorReason,
    StreamLimits,
    TextStreamInfo,
)

__all__ = [
    "ByteStreamInfo",
    "ByteStreamReader",
    "ByteStreamWriter",
    "DataStreamError",
    "DataStreamErrorReason",
    "IncomingDataStreamManager",
    "OutgoingDataStreamManager",
    "PeerDirectory",
    "PeerInfo",
    "RpcClientManager",
    "RpcEndpoint",
    "RpcError",
    "RpcInvocationData",
    "RpcServerManager",
    "StaticPeerDirectory",
    "StreamLimits",
    "TextStreamInfo",
    "TextStreamReader",
    "TextStreamWriter",
]
