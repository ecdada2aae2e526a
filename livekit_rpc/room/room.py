"""The :class:`Room`: a LiveKit room client on aiortc for data, RPC and data streams.

The public names follow LiveKit's Python SDK (``livekit.rtc``) so that data-only code can switch
by changing an import::

    from livekit_rpc.room import Room, RoomOptions

    room = Room()

    @room.on("participant_connected")
    def on_join(participant):
        print("joined:", participant.identity)

    await room.connect("ws://127.0.0.1:7880", token)
    reply = await room.local_participant.perform_rpc(
        destination_identity="bob", method="greet", payload="hi"
    )
    await room.disconnect()
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc
from pyee.asyncio import AsyncIOEventEmitter

from livekit_rpc.endpoint import RpcEndpoint
from livekit_rpc.streams.incoming import ByteStreamHandler, TextStreamHandler
from livekit_rpc.streams.outgoing import OutgoingDataStreamManager
from livekit_rpc.streams.types import StreamLimits
from livekit_rpc.wire.constants import RPC_REQUEST_TOPIC, RPC_RESPONSE_TOPIC

from .engine import EngineOptions, RtcEngine
from .events import ConnectionState, DataPacket, DataPacketKind, DisconnectReason
from .participant import LocalParticipant, RemoteParticipant
from .signal_client import ClientDescription, ConnectError
from .transport import (
    DEFAULT_HIGH_WATER,
    DEFAULT_LOW_WATER,
    IceServer,
    TransportOptions,
)

logger = logging.getLogger(__name__)

LOOPBACK_ADDRESSES: Final = ("127.0.0.1",)
_RESERVED_TOPICS: Final = frozenset({RPC_REQUEST_TOPIC, RPC_RESPONSE_TOPIC})

_STATE = models.ParticipantInfo.State
_WIRE_LOSSY = models.DataPacket.Kind.LOSSY
_WIRE_RELIABLE = models.DataPacket.Kind.RELIABLE


_REJOIN_FIRST_DELAY = 0.25
"""Seconds before the second attempt to rejoin; doubled after each failure."""
_REJOIN_MAX_DELAY = 2.0
_FINAL_HTTP_STATUSES = frozenset({401, 403})
"""Refusals of the token: a rejoin stops at once."""


@dataclass
class RtcConfiguration:
    """WebRTC settings.

    Attributes:
        ice_servers: STUN/TURN servers. **Empty by default**: no public STUN server is used
            unless named here.
        use_server_ice_servers: when ``ice_servers`` is empty, use the servers the room server
            lists in its join response.
        ice_host_addresses: when set, the only local IP addresses gathered as ICE host
            candidates. Loopback addresses are allowed here (aiortc skips them otherwise).
        gather_loopback: shorthand for ``ice_host_addresses=["127.0.0.1"]``, for purely local
            use (a server on the same machine, tests). Ignored when ``ice_host_addresses`` is
            set.
        large_sctp_packets: offer SCTP packets of up to 16,000 bytes, and use them when the
            server offers them too and the connection stays on this machine
            (:mod:`livekit_rpc.sctp`). On by default; other hosts and LiveKit servers always
            get standard packets.
    """

    ice_servers: list[IceServer] = field(default_factory=list)
    use_server_ice_servers: bool = False
    ice_host_addresses: Sequence[str] | None = None
    gather_loopback: bool = False
    large_sctp_packets: bool = True


@dataclass
class RoomOptions:
    """Options for :meth:`Room.connect`.

    Attributes:
        auto_subscribe: sent to the server. Off by default: this client carries no media, and
            subscribing would only make a LiveKit server offer media it cannot use.
        rtc_config: WebRTC settings (ICE servers, host candidate addresses).
        connect_timeout: seconds for the signalling WebSocket upgrade (default 10).
        peer_connection_timeout: seconds for the primary peer connection to connect (15).
        single_peer_connection: accepted for compatibility; only the two-connection (``/rtc``
            v0) signalling is implemented, so ``True`` is refused.
        send_high_water: a send waits while a data channel holds more than this many bytes.
        send_low_water: waiting senders resume when the buffer drains to this many bytes.
        stream_limits: bounds on what remote peers can make this client hold for incoming
            data streams (``None``: the library defaults).
        reconnect_timeout: after losing the connection (signalling closed or silent, peer
            connection failed, or the server asking to rejoin), seconds to keep trying to
            rejoin before giving up with ``disconnected``; 0 disables rejoining. A server
            telling the client to leave for good is never retried.
    """

    auto_subscribe: bool = False
    rtc_config: RtcConfiguration | None = None
    connect_timeout: float | None = None
    peer_connection_timeout: float = 15.0
    single_peer_connection: bool | None = None
    send_high_water: int = DEFAULT_HIGH_WATER
    send_low_water: int = DEFAULT_LOW_WATER
    stream_limits: StreamLimits | None = None
    reconnect_timeout: float = 20.0


class Room(AsyncIOEventEmitter):
    """A connection to one LiveKit room for data packets, RPC and data streams.

    Events (register with ``room.on(name, callback)`` or ``@room.on(name)``), see
    :data:`~livekit_rpc.room.events.EventTypes`: ``participant_connected``,
    ``participant_disconnected``, ``participant_attributes_changed``,
    ``participant_metadata_changed``, ``participant_name_changed``,
    ``connection_state_changed``, ``connected``, ``disconnected``, ``reconnecting``,
    ``reconnected``, ``data_received``.

    A ``Room`` connects once; create a new one to connect again. RPC methods and stream
    handlers may be registered before connecting.

    When the connection is lost, the room rejoins with the same token (``reconnecting``, then
    ``reconnected``), keeping ``local_participant``, its RPC methods and stream handlers.
    While it rejoins, sends fail with ``ConnectionError`` (an RPC call fails with 1505); calls
    already in flight complete if their answer arrives after the rejoin.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(loop=loop)
        self._remote_participants: dict[str, RemoteParticipant] = {}
        self._local_participant: LocalParticipant | None = None
        self._connection_state = ConnectionState.CONN_DISCONNECTED
        self._engine: RtcEngine | None = None
        self._endpoint: RpcEndpoint | None = None
        self._pending_rpc_methods: dict[str, Callable[..., Any]] = {}
        self._pending_text_handlers: dict[str, TextStreamHandler] = {}
        self._pending_byte_handlers: dict[str, ByteStreamHandler] = {}
        self._room_info = models.Room()
        self._used = False
        self._closing: asyncio.Task[None] | None = None
        self._rejoin: asyncio.Task[None] | None = None
        self._rejoin_args: tuple[str, str, EngineOptions, float] | None = None
        self._disconnect_reason = DisconnectReason.UNKNOWN_REASON
        # An exception in a user's event handler is logged, never raised into the transport.
        self.on("error", _log_handler_error)

    # -- properties ---------------------------------------------------------------------------

    @property
    def local_participant(self) -> LocalParticipant:
        """This client's participant (available once connected)."""
        if self._local_participant is None:
            raise RuntimeError("cannot access local participant before connecting")
        return self._local_participant

    @property
    def remote_participants(self) -> Mapping[str, RemoteParticipant]:
        """The other participants, by identity."""
        return self._remote_participants

    @property
    def connection_state(self) -> ConnectionState:
        """The current connection state."""
        return self._connection_state

    @property
    def name(self) -> str:
        """The room name, from the join response."""
        return self._room_info.name

    @property
    def sid(self) -> str:
        """The room's server-assigned id, from the join response."""
        return self._room_info.sid

    @property
    def metadata(self) -> str:
        """The room metadata, from the join response."""
        return self._room_info.metadata

    def isconnected(self) -> bool:
        """Whether the room is connected."""
        return self._connection_state == ConnectionState.CONN_CONNECTED

    # -- PeerDirectory ------------------------------------------------------------------------

    def client_protocol(self, identity: str) -> int:
        """``client_protocol`` of a remote participant (0 when unknown)."""
        participant = self._remote_participants.get(identity)
        return participant.client_protocol if participant else 0

    def capabilities(self, identity: str) -> frozenset[int]:
        """Capabilities of a remote participant (empty when unknown)."""
        participant = self._remote_participants.get(identity)
        return participant.capabilities if participant else frozenset()

    def remote_identities(self) -> list[str]:
        """Identities of the remote participants."""
        return list(self._remote_participants)

    # -- connect / disconnect -----------------------------------------------------------------

    async def connect(self, url: str, token: str, options: RoomOptions | None = None) -> None:
        """Join the room at ``url`` (``ws``, ``wss``, ``http`` or ``https``) with ``token``.

        Returns once the primary peer connection is up. Raises :class:`ConnectError` if the
        server refuses the token, cannot be reached, or WebRTC does not connect in time.
        """
        if self._used:
            raise RuntimeError("a Room connects only once; create a new Room")
        self._used = True
        options = options or RoomOptions()
        if options.single_peer_connection:
            raise ValueError("single_peer_connection is not supported")
        rtc = options.rtc_config or RtcConfiguration()
        host_addresses: Sequence[str] | None = rtc.ice_host_addresses
        if host_addresses is None and rtc.gather_loopback:
            host_addresses = LOOPBACK_ADDRESSES
        engine_options = EngineOptions(
            auto_subscribe=options.auto_subscribe,
            peer_connection_timeout=options.peer_connection_timeout,
            transport=TransportOptions(
                ice_servers=list(rtc.ice_servers),
                use_server_ice_servers=rtc.use_server_ice_servers,
                host_addresses=host_addresses,
                high_water=options.send_high_water,
                low_water=options.send_low_water,
                large_sctp_packets=rtc.large_sctp_packets,
            ),
            client=ClientDescription.default(),
        )
        if options.connect_timeout is not None:
            engine_options.connect_timeout = options.connect_timeout
        self._endpoint = RpcEndpoint(
            peers=self, send_packet=self._send_packet, limits=options.stream_limits
        )
        # Stream packets that arrive while connecting are held until the room is connected.
        self._endpoint.streams_in.set_connected(False)
        for method, handler in self._pending_rpc_methods.items():
            self._endpoint.server.register_rpc_method(method, handler)
        for topic, handler in self._pending_text_handlers.items():
            self._endpoint.streams_in.register_text_stream_handler(topic, handler)
        for topic, handler in self._pending_byte_handlers.items():
            self._endpoint.streams_in.register_byte_stream_handler(topic, handler)

        self._rejoin_args = (url, token, engine_options, options.reconnect_timeout)
        engine = RtcEngine(self, engine_options)
        self._engine = engine
        try:
            await engine.connect(url, token)
        except BaseException:
            # Also reached when the caller cancels connect(): release everything.
            await engine.close(send_leave=True)
            endpoint, self._endpoint = self._endpoint, None
            if endpoint is not None:
                await endpoint.aclose()
            self._engine = None
            self._remote_participants.clear()
            raise
        if self._closing is not None:
            # The session ended between the join and now.
            await asyncio.shield(self._closing)
            raise ConnectError(
                f"connection lost right after connecting ({self._disconnect_reason.name})"
            )
        self._set_state(ConnectionState.CONN_CONNECTED)
        self.emit("connected")
        self._endpoint.streams_in.set_connected(True)

    async def disconnect(
        self, *, reason: DisconnectReason = DisconnectReason.CLIENT_INITIATED
    ) -> None:
        """Leave the room: fail pending calls, close streams, send ``leave``, close the peer
        connections. Also waits for a disconnect the server started. Idempotent."""
        if self._closing is None:
            if self._engine is None and self._rejoin is None:
                return
            self._closing = asyncio.ensure_future(self._shutdown(reason, local=True))
        await asyncio.shield(self._closing)

    async def _shutdown(self, reason: int, *, local: bool) -> None:
        self._disconnect_reason = DisconnectReason.from_wire(reason)
        rejoin = self._rejoin
        if rejoin is not None and asyncio.current_task() is not rejoin:
            rejoin.cancel()
            await asyncio.gather(rejoin, return_exceptions=True)
        was_connected = self._connection_state != ConnectionState.CONN_DISCONNECTED
        endpoint = self._endpoint
        if endpoint is not None:
            try:
                await endpoint.aclose()
            except Exception:
                logger.exception("error closing the RPC endpoint")
        engine = self._engine
        if engine is not None:
            await engine.close(send_leave=local)
        self._remote_participants.clear()
        if self._local_participant is not None:
            self._local_participant._info.disconnect_reason = reason  # type: ignore[assignment]
        if was_connected or self._connection_state != ConnectionState.CONN_DISCONNECTED:
            self._set_state(ConnectionState.CONN_DISCONNECTED)
            self.emit("disconnected", self._disconnect_reason)

    def _set_state(self, state: ConnectionState) -> None:
        if state != self._connection_state:
            self._connection_state = state
            self.emit("connection_state_changed", state)

    # -- engine callbacks ---------------------------------------------------------------------

    def on_engine_closed(self, reason: int, message: str, *, recoverable: bool) -> None:
        """The session ended on the server's side or through a network failure."""
        if self._closing is not None or self._rejoin is not None:
            return
        args = self._rejoin_args
        if (
            recoverable
            and args is not None
            and args[3] > 0
            and self._connection_state == ConnectionState.CONN_CONNECTED
        ):
            logger.info("connection lost: %s (%s); rejoining", message, reason)
            self._rejoin = asyncio.ensure_future(self._run_rejoin(reason, *args))
            self._rejoin.add_done_callback(_log_failure)
            return
        logger.info("room disconnected: %s (%s)", message, reason)
        self._closing = asyncio.ensure_future(self._shutdown(reason, local=False))
        self._closing.add_done_callback(_log_failure)

    async def _run_rejoin(
        self, reason: int, url: str, token: str, options: EngineOptions, budget: float
    ) -> None:
        """Close the lost session and join again until it works or ``budget`` seconds pass."""
        self._set_state(ConnectionState.CONN_RECONNECTING)
        self.emit("reconnecting")
        if self._endpoint is not None:
            self._endpoint.streams_in.set_connected(False)
        lost, self._engine = self._engine, None
        if lost is not None:
            await lost.close(send_leave=False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        delay = _REJOIN_FIRST_DELAY
        failure = ""
        while loop.time() < deadline:
            engine = RtcEngine(self, options)
            self._engine = engine
            try:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await engine.connect(url, token)
                if engine.lost:  # lost again while the join completed
                    raise ConnectError("connection lost right after rejoining")
            except (ConnectError, TimeoutError) as exc:
                failure = str(exc) or type(exc).__name__
                self._engine = None
                await engine.close(send_leave=False)
                if isinstance(exc, ConnectError) and exc.status in _FINAL_HTTP_STATUSES:
                    break  # the token or the room is refused: retrying cannot help
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, _REJOIN_MAX_DELAY)
                continue
            except BaseException:
                self._engine = None
                await engine.close(send_leave=True)
                raise
            self._rejoin = None
            self._set_state(ConnectionState.CONN_CONNECTED)
            self.emit("reconnected")
            if self._endpoint is not None:
                self._endpoint.streams_in.set_connected(True)
            return
        logger.info("could not rejoin: %s", failure)
        self._closing = asyncio.ensure_future(self._shutdown(reason, local=False))
        self._closing.add_done_callback(_log_failure)
        self._rejoin = None

    def on_join(self, join: proto_rtc.JoinResponse) -> None:
        """Take the local participant, the room and the participants already present from the
        join response (no ``participant_connected`` events for those).

        On a rejoin, the local participant object is kept, and the participants who left or
        came while the connection was down get their events now.
        """
        self._room_info.CopyFrom(join.room)
        present = {
            info.identity: info
            for info in join.other_participants
            if info.state != _STATE.DISCONNECTED and info.identity
        }
        if self._local_participant is None:
            self._local_participant = LocalParticipant(self, join.participant)
            for identity, info in present.items():
                self._remote_participants[identity] = RemoteParticipant(info)
            return
        self._local_participant._info.CopyFrom(join.participant)
        for identity, participant in list(self._remote_participants.items()):
            if identity not in present:
                self._remove_participant(participant)
        for info in present.values():
            self._apply_participant(info)

    def on_participant_update(self, participants: Sequence[models.ParticipantInfo]) -> None:
        """Apply a ``ParticipantUpdate`` from the server."""
        for info in participants:
            try:
                self._apply_participant(info)
            except Exception:
                logger.exception("error applying participant update for %s", info.identity)

    def _apply_participant(self, info: models.ParticipantInfo) -> None:
        local = self._local_participant
        if local is not None and (
            info.identity == local.identity or (not info.identity and info.sid == local.sid)
        ):
            if info.version and local._info.version > info.version:
                return
            self._update_participant(local, info)
            return
        identity = info.identity or self._identity_for_sid(info.sid)
        if not identity:
            return
        existing = self._remote_participants.get(identity)
        if info.state == _STATE.DISCONNECTED:
            if existing is not None and (not info.sid or existing.sid == info.sid):
                existing._info.disconnect_reason = info.disconnect_reason
                self._remove_participant(existing)
            return
        if existing is not None and info.sid and existing.sid != info.sid:
            # Same identity, new session: the old one is gone.
            self._remove_participant(existing)
            existing = None
        if existing is None:
            participant = RemoteParticipant(info)
            self._remote_participants[identity] = participant
            self.emit("participant_connected", participant)
            return
        if info.version and existing._info.version > info.version:
            return
        self._update_participant(existing, info)

    def _identity_for_sid(self, sid: str) -> str:
        for identity, participant in self._remote_participants.items():
            if participant.sid == sid:
                return identity
        return ""

    def _update_participant(
        self, participant: LocalParticipant | RemoteParticipant, info: models.ParticipantInfo
    ) -> None:
        old_name, old_metadata = participant.name, participant.metadata
        old_attributes = participant.attributes
        participant._update_info(info)
        new_attributes = participant.attributes
        changed = {
            key: value for key, value in new_attributes.items() if old_attributes.get(key) != value
        }
        changed.update({key: "" for key in old_attributes if key not in new_attributes})
        if old_name != participant.name:
            self.emit("participant_name_changed", participant, old_name, participant.name)
        if old_metadata != participant.metadata:
            self.emit(
                "participant_metadata_changed", participant, old_metadata, participant.metadata
            )
        if changed:
            self.emit("participant_attributes_changed", changed, participant)

    def _remove_participant(self, participant: RemoteParticipant) -> None:
        if self._remote_participants.get(participant.identity) is participant:
            del self._remote_participants[participant.identity]
        if self._engine is not None:
            self._engine.forget_sender(participant.sid)
        self.emit("participant_disconnected", participant)
        if self._endpoint is not None:
            self._endpoint.handle_participant_disconnected(participant.identity)

    def on_data_packet(self, packet: models.DataPacket, kind: int) -> None:
        """Route one incoming ``DataPacket``: user data to ``data_received``, RPC and stream
        packets to the endpoint."""
        which = packet.WhichOneof("value")
        if which == "user":
            identity = packet.participant_identity or packet.user.participant_identity
            self.emit(
                "data_received",
                DataPacket(
                    data=packet.user.payload,
                    kind=DataPacketKind.KIND_LOSSY
                    if kind == _WIRE_LOSSY
                    else DataPacketKind.KIND_RELIABLE,
                    participant=self._remote_participants.get(identity),
                    topic=packet.user.topic if packet.user.HasField("topic") else None,
                ),
            )
            return
        if which == "encrypted_packet":
            logger.debug("dropping encrypted data packet (end-to-end encryption not supported)")
            return
        if self._endpoint is not None:
            self._endpoint.handle_packet(packet, encryption_type=0)

    # -- sending ------------------------------------------------------------------------------

    async def _send_packet(self, packet: models.DataPacket) -> None:
        engine = self._engine
        if self._rejoin is not None:
            raise ConnectionError("room is reconnecting")
        if engine is None or self._closing is not None:
            raise ConnectionError("room is not connected")
        if self._local_participant is not None and not packet.participant_identity:
            packet.participant_identity = self._local_participant.identity
        await engine.send_packet(packet)

    async def _publish_data(
        self,
        payload: bytes | str,
        *,
        reliable: bool,
        destination_identities: list[str],
        topic: str,
    ) -> None:
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        user = models.UserPacket(payload=data, destination_identities=destination_identities)
        if topic:
            user.topic = topic
        packet = models.DataPacket(
            kind=_WIRE_RELIABLE if reliable else _WIRE_LOSSY,
            destination_identities=destination_identities,
            user=user,
        )
        await self._send_packet(packet)

    async def _update_metadata(
        self,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
    ) -> None:
        engine = self._engine
        if engine is None or self._closing is not None:
            raise ConnectionError("room is not connected")
        await engine.signal.update_metadata(name=name, metadata=metadata, attributes=attributes)

    # -- RPC and streams ----------------------------------------------------------------------

    def _require_endpoint(self) -> RpcEndpoint:
        if self._endpoint is None or self._closing is not None:
            raise ConnectionError("room is not connected")
        return self._endpoint

    async def _perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None,
        max_round_trip_latency: float | None,
    ) -> str:
        endpoint = self._require_endpoint()
        kwargs: dict[str, Any] = {}
        if response_timeout is not None:
            kwargs["response_timeout"] = response_timeout
        result: str = await endpoint.client.perform_rpc(
            destination_identity=destination_identity, method=method, payload=payload, **kwargs
        )
        return result

    def _register_rpc_method(self, method: str, handler: Callable[..., Any]) -> None:
        if method in self._pending_rpc_methods:
            raise ValueError(f"RPC method {method!r} is already registered")
        if self._endpoint is not None:
            self._endpoint.server.register_rpc_method(method, handler)
        self._pending_rpc_methods[method] = handler

    def _unregister_rpc_method(self, method: str) -> None:
        self._pending_rpc_methods.pop(method, None)
        if self._endpoint is not None:
            self._endpoint.server.unregister_rpc_method(method)

    def _streams_out(self) -> OutgoingDataStreamManager:
        return self._require_endpoint().streams_out

    def register_text_stream_handler(self, topic: str, handler: TextStreamHandler) -> None:
        """Call ``handler(reader, participant_identity)`` for each incoming text stream on
        ``topic``. Raises ``ValueError`` if the topic already has a handler."""
        if topic in self._pending_text_handlers or topic in _RESERVED_TOPICS:
            raise ValueError(f"text stream handler for topic {topic!r} already set")
        if self._endpoint is not None:
            self._endpoint.streams_in.register_text_stream_handler(topic, handler)
        self._pending_text_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        """Remove the text stream handler of ``topic``, if any."""
        if self._pending_text_handlers.pop(topic, None) is not None and self._endpoint:
            self._endpoint.streams_in.unregister_text_stream_handler(topic)

    def register_byte_stream_handler(self, topic: str, handler: ByteStreamHandler) -> None:
        """Call ``handler(reader, participant_identity)`` for each incoming byte stream on
        ``topic``. Raises ``ValueError`` if the topic already has a handler."""
        if topic in self._pending_byte_handlers or topic in _RESERVED_TOPICS:
            raise ValueError(f"byte stream handler for topic {topic!r} already set")
        if self._endpoint is not None:
            self._endpoint.streams_in.register_byte_stream_handler(topic, handler)
        self._pending_byte_handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic: str) -> None:
        """Remove the byte stream handler of ``topic``, if any."""
        if self._pending_byte_handlers.pop(topic, None) is not None and self._endpoint:
            self._endpoint.streams_in.unregister_byte_stream_handler(topic)

    def __repr__(self) -> str:
        return (
            f"Room(name={self.name!r}, sid={self.sid!r}, "
            f"connection_state={self._connection_state.name})"
        )


def _log_handler_error(exc: BaseException) -> None:
    logger.error("error in a room event handler", exc_info=exc)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("room shutdown failed", exc_info=task.exception())
