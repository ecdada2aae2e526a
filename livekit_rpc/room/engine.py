"""The RTC engine: one signalling session plus the peer connections it negotiates.

Two topologies are supported, chosen by the server in ``JoinResponse.subscriber_primary``:

* **publisher-primary**: the client creates its publisher connection with ``_reliable`` and
  ``_lossy`` channels, offers it right after the join and waits for it to connect. Data flows
  both ways over those channels.
* **subscriber-primary** (what a real LiveKit server does): the server offers a subscriber
  connection carrying its own ``_reliable`` and ``_lossy`` channels, the client answers and waits
  for it to connect. Downstream data arrives there; upstream data still goes over the client's
  publisher connection, which is negotiated in the background right after the join (and awaited
  by the first send).

The engine numbers reliable packets (``sequence`` from 1), drops reliable duplicates per sender,
and reports everything else to an :class:`EngineListener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from livekit_rpc import ice

from .signal_client import ClientDescription, ConnectError, SignalClient
from .transport import (
    LOSSY_LABEL,
    MAX_DATA_PACKET_BYTES,
    RELIABLE_LABEL,
    IceServer,
    PeerTransport,
    TransportOptions,
    build_configuration,
    parse_candidate_init,
)

logger = logging.getLogger(__name__)

DEFAULT_PEER_CONNECTION_TIMEOUT: Final = 15.0

_T = TypeVar("_T")

_RELIABLE = models.DataPacket.Kind.RELIABLE
_LOSSY = models.DataPacket.Kind.LOSSY
_PUBLISHER = proto_rtc.SignalTarget.PUBLISHER
_SUBSCRIBER = proto_rtc.SignalTarget.SUBSCRIBER


class EngineListener(Protocol):
    """Callbacks from the engine to the room. All are called on the event loop thread."""

    def on_join(self, join: proto_rtc.JoinResponse) -> None:
        """The server accepted the join; called before any other server message is handled."""

    def on_participant_update(self, participants: Sequence[models.ParticipantInfo]) -> None:
        """A ``ParticipantUpdate`` arrived."""

    def on_data_packet(self, packet: models.DataPacket, kind: int) -> None:
        """A data packet arrived (``kind`` is the wire kind of the channel it came on)."""

    def on_engine_closed(self, reason: int, message: str, *, recoverable: bool) -> None:
        """The session ended without a local ``close``: server leave, lost signalling, failed
        peer connection. ``reason`` is a ``DisconnectReason`` value; ``recoverable`` is false
        when the server said to leave for good."""


@dataclass
class EngineOptions:
    """Connection settings for :class:`RtcEngine`."""

    auto_subscribe: bool = False
    connect_timeout: float = 10.0
    peer_connection_timeout: float = DEFAULT_PEER_CONNECTION_TIMEOUT
    transport: TransportOptions = field(default_factory=TransportOptions)
    client: ClientDescription | None = None


class RtcEngine:
    """Signalling plus peer connections for one room session."""

    def __init__(self, listener: EngineListener, options: EngineOptions) -> None:
        self._listener = listener
        self._options = options
        self._signal = SignalClient(self, client=options.client)
        self._configuration: Any = None
        self._host_addresses: tuple[str, ...] | None = None
        self.publisher: PeerTransport | None = None
        self.subscriber: PeerTransport | None = None
        self._subscriber_ready = asyncio.Event()
        self._publisher_task: asyncio.Task[None] | None = None
        self._answer_waiter: asyncio.Future[str] | None = None
        self._offer_id = 0
        self._sequence = 0
        self._last_sequence: dict[str, int] = {}
        self._closed = False
        self._close_reported = False
        self._connecting = False
        self._lost = asyncio.Event()
        self._lost_reason = 0
        self._lost_message = ""
        self._lost_recoverable = False
        self.join: proto_rtc.JoinResponse | None = None
        self.subscriber_primary = False

    # -- connecting -------------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """Whether the session has ended without a local ``close``."""
        return self._lost.is_set()

    @property
    def signal(self) -> SignalClient:
        """The signalling session."""
        return self._signal

    async def connect(self, url: str, token: str) -> proto_rtc.JoinResponse:
        """Join and bring up the primary peer connection.

        Raises:
            ConnectError: signalling failed or the primary connection did not connect within
                ``peer_connection_timeout``.
        """
        options = self._options
        if options.transport.host_addresses is not None:
            self._host_addresses = tuple(options.transport.host_addresses)
        join = await self._signal.connect(
            url,
            token,
            auto_subscribe=options.auto_subscribe,
            connect_timeout=options.connect_timeout,
        )
        self.join = join
        self.subscriber_primary = join.subscriber_primary
        self._listener.on_join(join)
        servers = list(options.transport.ice_servers)
        if not servers and options.transport.use_server_ice_servers:
            servers = [
                IceServer(
                    urls=list(s.urls), username=s.username or None, credential=s.credential or None
                )
                for s in join.ice_servers
            ]
        self._configuration = build_configuration(servers)
        self._connecting = True
        ready = asyncio.ensure_future(self._wait_primary_ready())
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            done, _ = await asyncio.wait(
                {ready, lost},
                timeout=options.peer_connection_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            failure: BaseException | None = None
            if ready in done:
                failure = ready.exception()
            elif lost in done:
                failure = ConnectError(f"connection lost while connecting: {self._lost_message}")
            else:
                failure = ConnectError(
                    f"peer connection did not connect within {options.peer_connection_timeout:g} s"
                )
        finally:
            for task in (ready, lost):
                if not task.done():
                    task.cancel()
            await asyncio.gather(ready, lost, return_exceptions=True)
            self._connecting = False
        if failure is not None:
            await self.close(send_leave=True)
            if isinstance(failure, ConnectError):
                raise failure
            raise ConnectError(f"peer connection failed: {failure}") from failure
        if self._lost.is_set():
            # Lost right after connecting: report it now that the room is listening.
            self._close_reported = False
            self._report_closed(
                self._lost_reason, self._lost_message, recoverable=self._lost_recoverable
            )
        return join

    async def _wait_primary_ready(self) -> None:
        if self.subscriber_primary:
            await self._subscriber_ready.wait()
            if self.subscriber is None:
                raise ConnectionError("closed before the subscriber offer arrived")
            await self.subscriber.wait_connected()
            # Upstream channel: negotiate now, let the first send wait for it.
            self._start_publisher()
            return
        self._start_publisher()
        task = self._publisher_task
        assert task is not None
        await asyncio.wait({task})
        if task.cancelled():
            raise ConnectionError("publisher negotiation was cancelled")
        failure = task.exception()
        if failure is not None:
            raise failure

    def _new_transport(self, name: str) -> PeerTransport:
        return PeerTransport(
            name,
            self._configuration,
            on_message=lambda label, data: self._on_channel_message(name, label, data),
            on_state=lambda state: self._on_pc_state(name, state),
            options=self._options.transport,
        )

    def _start_publisher(self) -> None:
        if self._publisher_task is None and not self._closed:
            task = asyncio.ensure_future(self._negotiate_publisher())
            task.set_name("publisher-negotiation")
            # The outcome is read by whoever awaits the publisher; keep a failure from being
            # reported as "never retrieved" when nobody sends.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._publisher_task = task

    async def _negotiate_publisher(self) -> None:
        publisher = self._new_transport("publisher")
        self.publisher = publisher
        publisher.create_data_channels()
        self._offer_id += 1
        offer_id = self._offer_id
        loop = asyncio.get_running_loop()
        self._answer_waiter = loop.create_future()
        with ice.use_host_addresses(self._host_addresses):
            sdp = await publisher.create_offer()
        await self._signal.send_offer(sdp, offer_id)
        answer = await self._answer_waiter
        await publisher.set_answer(answer)
        await publisher.wait_connected()
        await publisher.queues[RELIABLE_LABEL].wait_open()

    async def ensure_publisher(self) -> PeerTransport:
        """The connected publisher transport, negotiating it first if needed.

        Raises:
            ConnectionError: the engine is closed or the publisher could not connect.
        """
        if self._closed:
            raise ConnectionError("room is disconnected")
        self._start_publisher()
        task = self._publisher_task
        assert task is not None
        if not task.done():
            done, _ = await asyncio.wait({task}, timeout=self._options.peer_connection_timeout)
            if not done:
                raise ConnectionError("publisher connection timed out")
        if task.cancelled():
            raise ConnectionError("room is disconnected")
        exc = task.exception()
        if exc is not None:
            raise ConnectionError(f"publisher connection failed: {exc}") from exc
        assert self.publisher is not None
        return self.publisher

    # -- signalling ---------------------------------------------------------------------------

    async def on_signal_message(self, message: proto_rtc.SignalResponse) -> None:
        """Handle one server message (called in order by the signal reader)."""
        which = message.WhichOneof("message")
        if which == "answer":
            self._on_answer(message.answer)
        elif which == "offer":
            await self._on_offer(message.offer)
        elif which == "trickle":
            await self._on_trickle(message.trickle)
        elif which == "update":
            self._listener.on_participant_update(list(message.update.participants))
        elif which == "leave":
            pass  # reported through on_signal_closed once the reader stops
        else:
            logger.debug("ignoring signal message %s", which)

    def on_signal_closed(self, reason: int, message: str, *, recoverable: bool) -> None:
        """The signal session ended (server leave, socket closed, ping timeout)."""
        self._report_closed(reason, message, recoverable=recoverable)

    def _on_answer(self, answer: proto_rtc.SessionDescription) -> None:
        waiter = self._answer_waiter
        if answer.id and answer.id != self._offer_id:
            logger.debug("ignoring stale answer %d (offer %d)", answer.id, self._offer_id)
            return
        if waiter is not None and not waiter.done():
            waiter.set_result(answer.sdp)

    async def _on_offer(self, offer: proto_rtc.SessionDescription) -> None:
        if self._closed:
            return
        if self.subscriber is None:
            self.subscriber = self._new_transport("subscriber")
        with ice.use_host_addresses(self._host_addresses):
            sdp = await self.subscriber.answer_offer(offer.sdp)
        await self._signal.send_answer(sdp, offer.id)
        self._subscriber_ready.set()

    async def _on_trickle(self, trickle: proto_rtc.TrickleRequest) -> None:
        transport = self.subscriber if trickle.target == _SUBSCRIBER else self.publisher
        if transport is None:
            logger.debug("trickle for a transport that does not exist")
            return
        try:
            candidate = parse_candidate_init(trickle.candidateInit)
        except ValueError:
            logger.warning("ignoring malformed trickle candidate")
            return
        if candidate is not None:
            with ice.use_host_addresses(self._host_addresses):
                # Under a host restriction, mDNS names are refused (resolving them multicasts).
                allowed = ice.remote_candidate_allowed(_candidate_line(trickle.candidateInit))
            if allowed:
                await transport.add_remote_candidate(candidate)
        if trickle.final:
            await transport.add_remote_candidate(None)

    # -- data ---------------------------------------------------------------------------------

    def _on_channel_message(self, transport: str, label: str, data: bytes) -> None:
        packet = models.DataPacket()
        try:
            packet.ParseFromString(data)
        except Exception:
            logger.warning("dropping unparsable data packet on %s/%s", transport, label)
            return
        kind = _LOSSY if label == LOSSY_LABEL else _RELIABLE
        if kind == _RELIABLE and packet.sequence > 0 and packet.participant_sid:
            last = self._last_sequence.get(packet.participant_sid, 0)
            if packet.sequence <= last:
                logger.debug(
                    "dropping duplicate reliable packet %d from %s",
                    packet.sequence,
                    packet.participant_sid,
                )
                return
            self._last_sequence[packet.participant_sid] = packet.sequence
        self._listener.on_data_packet(packet, kind)

    def forget_sender(self, sid: str) -> None:
        """Drop the duplicate-detection state of a participant that left."""
        self._last_sequence.pop(sid, None)

    async def send_packet(self, packet: models.DataPacket) -> None:
        """Send one ``DataPacket`` on the channel its ``kind`` names.

        Reliable packets get the next ``sequence`` number, assigned when the packet's turn in
        the channel's send queue comes, so the numbers follow the wire order. The call returns
        once the packet is handed to the channel, waiting while the channel's buffer is full.

        Raises:
            ConnectionError: the room is disconnected or the channel closed.
            ValueError: the serialized packet exceeds 64,000 bytes.
        """
        reliable = packet.kind != _LOSSY
        # Cheap early check so an oversized packet fails before waiting for the channel.
        if packet.ByteSize() > MAX_DATA_PACKET_BYTES:
            raise ValueError(
                f"data packet of {packet.ByteSize()} bytes exceeds the "
                f"{MAX_DATA_PACKET_BYTES}-byte limit"
            )
        publisher = await self.ensure_publisher()
        queue = publisher.queues[RELIABLE_LABEL if reliable else LOSSY_LABEL]
        if not reliable:
            await queue.send(packet.SerializeToString())
            return

        def build() -> bytes:
            packet.sequence = self._sequence + 1
            data = packet.SerializeToString()
            if len(data) > MAX_DATA_PACKET_BYTES:
                raise ValueError(
                    f"data packet of {len(data)} bytes exceeds the "
                    f"{MAX_DATA_PACKET_BYTES}-byte limit"
                )
            self._sequence += 1
            return data

        await queue.send(build)

    # -- closing ------------------------------------------------------------------------------

    def _on_pc_state(self, name: str, state: str) -> None:
        if self._closed or state not in ("failed", "closed"):
            return
        primary = "subscriber" if self.subscriber_primary else "publisher"
        if name == primary or state == "failed":
            self._report_closed(
                models.DisconnectReason.CONNECTION_TIMEOUT
                if state == "failed"
                else models.DisconnectReason.UNKNOWN_REASON,
                f"{name} peer connection {state}",
                recoverable=True,
            )

    def _report_closed(self, reason: int, message: str, *, recoverable: bool) -> None:
        if self._closed or self._close_reported:
            return
        self._close_reported = True
        if not self._lost.is_set():
            self._lost_reason, self._lost_message = reason, message
            self._lost_recoverable = recoverable
            self._lost.set()
        if self._connecting:
            return  # connect() turns it into a ConnectError
        self._listener.on_engine_closed(reason, message, recoverable=recoverable)

    async def close(self, *, send_leave: bool = True) -> None:
        """Leave (optionally), close the peer connections and stop all engine tasks.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._subscriber_ready.set()
        if self._answer_waiter is not None and not self._answer_waiter.done():
            self._answer_waiter.cancel()
        task = self._publisher_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        await self._signal.close(send_leave=send_leave)
        closers: list[Awaitable[None]] = []
        for transport in (self.publisher, self.subscriber):
            if transport is not None:
                closers.append(transport.close())
        if closers:
            results = await asyncio.gather(*closers, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    logger.debug("error closing transport", exc_info=result)


def _candidate_line(candidate_init: str) -> str:
    try:
        value = json.loads(candidate_init).get("candidate", "")
    except Exception:
        return ""
    return value if isinstance(value, str) else ""
