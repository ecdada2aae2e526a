"""Participants of a room: the local one (which sends) and the remote ones (which it sees)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload

from livekit.protocol import models

from livekit_rpc.rpc.streaming import RequestSource, RpcCallStream
from livekit_rpc.streams.outgoing import ByteStreamWriter, TextStreamWriter
from livekit_rpc.streams.types import ByteStreamInfo, TextStreamInfo
from livekit_rpc.wire.constants import DEFAULT_STREAM_WINDOW

if TYPE_CHECKING:
    from .room import Room

F = TypeVar("F", bound=Callable[..., Any])


class Participant:
    """What every participant exposes, read from the server's ``ParticipantInfo``."""

    def __init__(self, info: models.ParticipantInfo) -> None:
        self._info = models.ParticipantInfo()
        self._info.CopyFrom(info)

    @property
    def sid(self) -> str:
        """Server-assigned participant id (``PA_...``)."""
        return self._info.sid

    @property
    def identity(self) -> str:
        """Identity from the access token; unique within the room."""
        return self._info.identity

    @property
    def name(self) -> str:
        """Display name."""
        return self._info.name

    @property
    def metadata(self) -> str:
        """Free-form metadata string."""
        return self._info.metadata

    @property
    def attributes(self) -> dict[str, str]:
        """Key/value attributes (a copy)."""
        return dict(self._info.attributes)

    @property
    def kind(self) -> int:
        """``ParticipantInfo.Kind`` (standard, agent, ...)."""
        return self._info.kind

    @property
    def state(self) -> int:
        """``ParticipantInfo.State`` (joining, joined, active, disconnected)."""
        return self._info.state

    @property
    def disconnect_reason(self) -> int | None:
        """Why the participant left, or ``None`` while connected or when unknown."""
        reason = self._info.disconnect_reason
        return None if reason == models.DisconnectReason.UNKNOWN_REASON else reason

    def _update_info(self, info: models.ParticipantInfo) -> None:
        self._info.CopyFrom(info)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sid={self.sid!r}, identity={self.identity!r})"


class RemoteParticipant(Participant):
    """Another participant in the room.

    ``client_protocol`` and ``capabilities`` are taken from the first ``ParticipantInfo`` seen
    for this participant and never change afterwards; they decide how RPCs and data streams are
    encoded for it.
    """

    def __init__(self, info: models.ParticipantInfo) -> None:
        super().__init__(info)
        self._client_protocol = int(info.client_protocol)
        self._capabilities = frozenset(int(c) for c in info.capabilities)

    @property
    def client_protocol(self) -> int:
        """The participant's advertised client protocol (0 legacy, 1 RPC v2, 2 streams v2)."""
        return self._client_protocol

    @property
    def capabilities(self) -> frozenset[int]:
        """The participant's advertised ``ClientInfo.Capability`` values."""
        return self._capabilities


class LocalParticipant(Participant):
    """This client's participant: sends data, RPCs and streams, and sets its own attributes.

    Obtained from :attr:`Room.local_participant` after :meth:`Room.connect`.
    """

    def __init__(self, room: Room, info: models.ParticipantInfo) -> None:
        super().__init__(info)
        self._room = room

    # -- RPC ----------------------------------------------------------------------------------

    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None = None,
        max_round_trip_latency: float | None = None,
    ) -> str:
        """Call ``method`` on ``destination_identity`` and return its response payload.

        Args:
            destination_identity: identity of the participant to call.
            method: the method name it registered.
            payload: the request payload.
            response_timeout: seconds to wait for the response (default 15).
            max_round_trip_latency: accepted for compatibility; the acknowledgement timeout is
                fixed by the RPC layer.

        Raises:
            RpcError: the call failed (unsupported method, timeout, recipient gone,
                handler error, ...).
        """
        return await self._room._perform_rpc(
            destination_identity=destination_identity,
            method=method,
            payload=payload,
            response_timeout=response_timeout,
            max_round_trip_latency=max_round_trip_latency,
        )

    def stream_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str | RequestSource,
        response_timeout: float | None = None,
        deadline: float | None = None,
        window: int = DEFAULT_STREAM_WINDOW,
        realtime: bool = False,
    ) -> RpcCallStream:
        """A streaming call (this library's extension; LiveKit's SDKs have no equivalent)::

            async with room.local_participant.stream_rpc(
                destination_identity="bot", method="generate", payload="prompt"
            ) as stream:
                async for chunk in stream:
                    ...

        The handler on the other side is an async generator registered with
        :meth:`register_rpc_method`. ``response_timeout`` bounds the wait between chunks,
        ``deadline`` the whole call, ``window`` the chunks the handler may send ahead (with
        ``realtime`` it drops chunks instead of waiting). ``payload`` may be an (async)
        iterable of chunks for client streaming. A peer without the extension is called as a
        plain RPC and its reply arrives as one chunk.
        """
        return self._room._require_endpoint().client.stream_rpc(
            destination_identity=destination_identity,
            method=method,
            payload=payload,
            response_timeout=response_timeout,
            deadline=deadline,
            window=window,
            realtime=realtime,
        )

    @overload
    def register_rpc_method(self, method_name: str, handler: F) -> F: ...

    @overload
    def register_rpc_method(self, method_name: str, handler: None = None) -> Callable[[F], F]: ...

    def register_rpc_method(
        self, method_name: str, handler: F | None = None
    ) -> F | Callable[[F], F]:
        """Handle calls of ``method_name`` with ``handler``; usable as a decorator.

        The handler receives an ``RpcInvocationData`` and returns the response string (sync
        or async). Raising ``RpcError`` sends that error to the caller; any other exception
        becomes ``APPLICATION_ERROR`` (1500).
        """

        def register(func: F) -> F:
            self._room._register_rpc_method(method_name, func)
            return func

        if handler is not None:
            return register(handler)
        return register

    def unregister_rpc_method(self, method: str) -> None:
        """Stop handling ``method``; later calls get ``UNSUPPORTED_METHOD``."""
        self._room._unregister_rpc_method(method)

    # -- data ---------------------------------------------------------------------------------

    async def publish_data(
        self,
        payload: bytes | str,
        *,
        reliable: bool = True,
        destination_identities: list[str] | None = None,
        topic: str = "",
    ) -> None:
        """Send one user data packet to everyone, or only to ``destination_identities``.

        Raises:
            ValueError: the packet exceeds 64,000 bytes.
            ConnectionError: the room is not connected.
        """
        await self._room._publish_data(
            payload,
            reliable=reliable,
            destination_identities=list(destination_identities or []),
            topic=topic,
        )

    async def send_text(
        self,
        text: str,
        *,
        destination_identities: Sequence[str] | None = None,
        topic: str = "",
        attributes: Mapping[str, str] | None = None,
        reply_to_id: str | None = None,
        attachments: Sequence[str] = (),
        stream_id: str | None = None,
        compress: bool = True,
        on_progress: Callable[[float], None] | None = None,
    ) -> TextStreamInfo:
        """Send ``text`` as one complete text stream, to everyone or to
        ``destination_identities``; ``attachments`` are file paths sent along as byte streams.
        Returns the stream's description once every packet is handed to the transport."""
        return await self._room._streams_out().send_text(
            text,
            destination_identities=destination_identities,
            topic=topic,
            attributes=attributes,
            reply_to_id=reply_to_id,
            attachments=attachments,
            stream_id=stream_id,
            compress=compress,
            on_progress=on_progress,
        )

    async def stream_text(
        self,
        *,
        destination_identities: Sequence[str] | None = None,
        topic: str = "",
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        reply_to_id: str | None = None,
        total_size: int | None = None,
    ) -> TextStreamWriter:
        """Open a text stream written piece by piece (``await writer.write(text)``, then
        ``await writer.aclose()``)."""
        return await self._room._streams_out().stream_text(
            destination_identities=destination_identities,
            topic=topic,
            attributes=attributes,
            stream_id=stream_id,
            reply_to_id=reply_to_id,
            total_size=total_size,
        )

    async def send_bytes(
        self,
        data: bytes,
        *,
        topic: str = "",
        name: str | None = None,
        mime_type: str | None = None,
        destination_identities: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        compress: bool = True,
        on_progress: Callable[[float], None] | None = None,
    ) -> ByteStreamInfo:
        """Send ``data`` as one complete byte stream; returns its description."""
        return await self._room._streams_out().send_bytes(
            data,
            topic=topic,
            name=name,
            mime_type=mime_type,
            destination_identities=destination_identities,
            attributes=attributes,
            stream_id=stream_id,
            compress=compress,
            on_progress=on_progress,
        )

    async def stream_bytes(
        self,
        name: str,
        *,
        total_size: int | None = None,
        mime_type: str = "application/octet-stream",
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        destination_identities: Sequence[str] | None = None,
        topic: str = "",
    ) -> ByteStreamWriter:
        """Open a byte stream named ``name`` written piece by piece."""
        return await self._room._streams_out().stream_bytes(
            name,
            total_size=total_size,
            mime_type=mime_type,
            attributes=attributes,
            stream_id=stream_id,
            destination_identities=destination_identities,
            topic=topic,
        )

    async def send_file(
        self,
        file_path: str,
        *,
        topic: str = "",
        destination_identities: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        mime_type: str | None = None,
        compress: bool = True,
        on_progress: Callable[[float], None] | None = None,
    ) -> ByteStreamInfo:
        """Send the file at ``file_path`` as a byte stream, read piece by piece."""
        return await self._room._streams_out().send_file(
            file_path,
            topic=topic,
            destination_identities=destination_identities,
            attributes=attributes,
            stream_id=stream_id,
            mime_type=mime_type,
            compress=compress,
            on_progress=on_progress,
        )

    # -- own info -----------------------------------------------------------------------------

    async def set_attributes(self, attributes: Mapping[str, str]) -> None:
        """Merge ``attributes`` into this participant's attributes (an empty value deletes a
        key). Needs the ``canUpdateOwnMetadata`` grant.

        Raises:
            SignalRequestError: the server refused or did not answer within 5 s.
        """
        await self._room._update_metadata(attributes=dict(attributes))

    async def set_metadata(self, metadata: str) -> None:
        """Replace this participant's metadata. Needs ``canUpdateOwnMetadata``."""
        await self._room._update_metadata(metadata=metadata)

    async def set_name(self, name: str) -> None:
        """Replace this participant's display name. Needs ``canUpdateOwnMetadata``."""
        await self._room._update_metadata(name=name)
