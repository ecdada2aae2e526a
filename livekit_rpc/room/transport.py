"""WebRTC transport for the room client: aiortc peer connections and data-channel send queues.

A :class:`PeerTransport` wraps one ``RTCPeerConnection``. The publisher transport creates the
``_reliable`` and ``_lossy`` data channels and offers; the subscriber transport (used only when
the server is subscriber-primary) answers the server's offer and adopts the channels the server
created. Every outgoing message goes through a :class:`DataChannelSendQueue`, one per channel,
which waits on ``bufferedAmount`` so that a large transfer is paced by the network instead of
piling up in aiortc's buffers.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from ..sctp import SctpTuner

logger = logging.getLogger(__name__)

RELIABLE_LABEL: Final = "_reliable"
LOSSY_LABEL: Final = "_lossy"

MAX_DATA_PACKET_BYTES: Final = 64_000
"""Largest single data-channel message this client sends (LiveKit clients use the same cap)."""

DEFAULT_HIGH_WATER: Final = 1024 * 1024
"""A send waits while the channel's ``bufferedAmount`` is above this many bytes."""
DEFAULT_LOW_WATER: Final = 256 * 1024
"""``bufferedAmountLowThreshold``: waiting senders resume once the buffer drains to this."""


class TransportClosedError(ConnectionError):
    """Raised to a sender when its data channel or peer connection is gone."""


@dataclass
class IceServer:
    """One STUN or TURN server, as given to ``RTCIceServer``."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


@dataclass
class TransportOptions:
    """How the peer connections are built.

    Attributes:
        ice_servers: STUN/TURN servers. Empty by default: no public server is contacted unless
            one is named here (or, when ``use_server_ice_servers`` is set, by the server).
        use_server_ice_servers: Also use the ``ice_servers`` list from the join response when
            ``ice_servers`` is empty.
        host_addresses: When not ``None``, the only local addresses host candidates are gathered
            on (loopback allowed). ``None`` gathers on every non-loopback interface, which is
            aioice's own behaviour.
        high_water: Per-channel ``bufferedAmount`` above which senders wait.
        low_water: ``bufferedAmountLowThreshold`` at which waiting senders resume.
        large_sctp_packets: Offer, and use where the server offers them too, SCTP packets of
            up to 16,000 bytes when the peer connection stays on this machine (see
            :mod:`livekit_rpc.sctp`). Peers on other hosts, and WebRTC stacks that do not offer
            them (LiveKit servers), always get standard packets.
    """

    ice_servers: list[IceServer] = field(default_factory=list)
    use_server_ice_servers: bool = False
    host_addresses: Sequence[str] | None = None
    high_water: int = DEFAULT_HIGH_WATER
    low_water: int = DEFAULT_LOW_WATER
    large_sctp_packets: bool = True


class DataChannelSendQueue:
    """Serialized, flow-controlled sending on one data channel.

    Senders call :meth:`send` and are served first come, first served. Before a message is handed
    to the channel the queue waits until ``bufferedAmount`` is at most ``high_water``, woken by the
    channel's ``bufferedamountlow`` event (``bufferedAmountLowThreshold`` is set to ``low_water``).
    So the bytes held below this queue never exceed ``high_water`` plus one message, and a caller
    streaming a large payload is slowed down by its own ``await``.
    """

    def __init__(
        self,
        channel: Any,
        *,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int = DEFAULT_LOW_WATER,
        max_message_size: int = MAX_DATA_PACKET_BYTES,
    ) -> None:
        if not 0 <= low_water <= high_water:
            raise ValueError("need 0 <= low_water <= high_water")
        self._channel = channel
        self._high_water = high_water
        self._max_message_size = max_message_size
        self._lock = asyncio.Lock()
        self._wakeup = asyncio.Event()
        self._open = asyncio.Event()
        self._closed: BaseException | None = None
        self.peak_buffered = 0
        """Largest ``bufferedAmount`` observed right after a send (for tests and tuning)."""
        self.messages_sent = 0
        self.bytes_sent = 0
        channel.bufferedAmountLowThreshold = low_water
        channel.on("bufferedamountlow", self._wakeup.set)
        channel.on("open", self._on_open)
        channel.on("close", self._on_close)
        if channel.readyState == "open":
            self._open.set()
        elif channel.readyState == "closed":
            self._closed = TransportClosedError(f"data channel {channel.label} is closed")

    @property
    def label(self) -> str:
        """The channel label (``_reliable`` or ``_lossy``)."""
        return str(self._channel.label)

    @property
    def buffered_amount(self) -> int:
        """Bytes handed to the channel and not yet transmitted."""
        return int(self._channel.bufferedAmount)

    @property
    def is_open(self) -> bool:
        """Whether the channel is open and the queue not closed."""
        return self._closed is None and self._channel.readyState == "open"

    def _on_open(self) -> None:
        self._open.set()

    def _on_close(self) -> None:
        self.close(TransportClosedError(f"data channel {self.label} closed"))

    def close(self, exc: BaseException | None = None) -> None:
        """Fail current and future senders with ``exc`` (a ``TransportClosedError`` by default)."""
        if self._closed is None:
            self._closed = exc or TransportClosedError(f"data channel {self.label} closed")
        self._wakeup.set()
        self._open.set()

    async def wait_open(self) -> None:
        """Wait until the channel is open; raise if it closes first."""
        await self._open.wait()
        if self._closed is not None:
            raise self._closed

    async def send(self, data: bytes | Callable[[], bytes]) -> None:
        """Send one binary message, waiting for buffer space first.

        ``data`` may be a callable producing the bytes; it is called once the message's turn
        has come, just before it is handed to the channel, so numbering done inside it follows
        the wire order.

        Raises:
            TransportClosedError: the channel closed before or while waiting.
            ValueError: the message is larger than the per-message cap.
        """
        if isinstance(data, bytes) and len(data) > self._max_message_size:
            raise ValueError(
                f"data packet of {len(data)} bytes exceeds the {self._max_message_size}-byte limit"
            )
        async with self._lock:
            await self.wait_open()
            while self._channel.bufferedAmount > self._high_water:
                if self._closed is not None:
                    raise self._closed
                self._wakeup.clear()
                await self._wakeup.wait()
            if self._closed is not None:
                raise self._closed
            payload = data() if callable(data) else data
            if len(payload) > self._max_message_size:
                raise ValueError(
                    f"data packet of {len(payload)} bytes exceeds the "
                    f"{self._max_message_size}-byte limit"
                )
            try:
                self._channel.send(payload)
            except Exception as exc:  # InvalidStateError from aiortc, or a size error
                if self._channel.readyState != "open":
                    closed = TransportClosedError(f"data channel {self.label} closed")
                    self.close(closed)
                    raise closed from exc
                raise
            self.messages_sent += 1
            self.bytes_sent += len(payload)
            buffered = self._channel.bufferedAmount
            if buffered > self.peak_buffered:
                self.peak_buffered = buffered


def parse_candidate_init(candidate_init: str) -> Any | None:
    """Turn a trickled ``RTCIceCandidateInit`` JSON string into an aiortc candidate.

    Returns ``None`` for an empty candidate (end of candidates). Raises ``ValueError`` on
    malformed input.
    """
    try:
        init = json.loads(candidate_init)
    except json.JSONDecodeError as exc:
        raise ValueError(f"bad candidate JSON: {exc}") from exc
    if not isinstance(init, dict):
        raise ValueError("candidate JSON is not an object")
    text = init.get("candidate") or ""
    if not isinstance(text, str):
        raise ValueError("candidate is not a string")
    if not text:
        return None
    if text.startswith("candidate:"):
        text = text.split(":", 1)[1]
    candidate = candidate_from_sdp(text)
    mid = init.get("sdpMid")
    index = init.get("sdpMLineIndex")
    candidate.sdpMid = str(mid) if mid is not None else None
    candidate.sdpMLineIndex = int(index) if index is not None else None
    if candidate.sdpMid is None and candidate.sdpMLineIndex is None:
        candidate.sdpMLineIndex = 0
    return candidate


MessageHandler = Callable[[str, bytes], None]
StateHandler = Callable[[str], None]


class PeerTransport:
    """One aiortc peer connection plus its data channels.

    Args:
        name: ``"publisher"`` or ``"subscriber"``, for logs.
        configuration: the ``RTCConfiguration`` to build the connection with.
        on_message: called with ``(label, bytes)`` for every binary message on any channel.
        on_state: called with the new ``connectionState`` on every change.
        options: send-queue thresholds.
    """

    def __init__(
        self,
        name: str,
        configuration: Any,
        *,
        on_message: MessageHandler,
        on_state: StateHandler,
        options: TransportOptions,
    ) -> None:
        self.name = name
        self._options = options
        self._on_message = on_message
        self._on_state = on_state
        self.pc = RTCPeerConnection(configuration)
        self._sctp = SctpTuner(self.pc, large_packets=options.large_sctp_packets)
        self.queues: dict[str, DataChannelSendQueue] = {}
        self._channels: dict[str, Any] = {}
        self._pending_candidates: collections.deque[Any] = collections.deque()
        self._remote_set = False
        self._connected = asyncio.Event()
        self._failed: BaseException | None = None
        self._closed = False
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("datachannel", self._adopt_channel)

    @property
    def connection_state(self) -> str:
        """The peer connection's ``connectionState``."""
        return str(self.pc.connectionState)

    def create_data_channels(self) -> None:
        """Create ``_reliable`` (ordered) and ``_lossy`` (unordered, no retransmits)."""
        self._adopt_channel(self.pc.createDataChannel(RELIABLE_LABEL, ordered=True))
        self._adopt_channel(self.pc.createDataChannel(LOSSY_LABEL, ordered=False, maxRetransmits=0))

    def _adopt_channel(self, channel: Any) -> None:
        label = str(channel.label)
        if label not in (RELIABLE_LABEL, LOSSY_LABEL):
            logger.debug("%s: ignoring data channel %r", self.name, label)
            return
        old = self.queues.get(label)
        if old is not None:
            old.close()
        self._channels[label] = channel
        self.queues[label] = DataChannelSendQueue(
            channel, high_water=self._options.high_water, low_water=self._options.low_water
        )

        def on_message(message: bytes | str) -> None:
            if isinstance(message, bytes):
                self._on_message(label, message)
            else:
                logger.debug("%s: dropping text message on %s", self.name, label)

        channel.on("message", on_message)

    def _on_connection_state(self) -> None:
        state = self.connection_state
        logger.debug("%s: connection state %s", self.name, state)
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            if self._failed is None:
                self._failed = TransportClosedError(f"{self.name} peer connection {state}")
            self._connected.set()
            for queue in self.queues.values():
                queue.close(self._failed)
        self._on_state(state)

    async def wait_connected(self) -> None:
        """Wait for ``connectionState == "connected"``; raise if it fails or closes first."""
        await self._connected.wait()
        if self._failed is not None:
            raise self._failed

    async def create_offer(self) -> str:
        """Create and apply a local offer; return its SDP (with all gathered candidates)."""
        offer = await self.pc.createOffer()
        await self.pc.setLocalDescription(offer)
        return self._sctp.local_description(str(self.pc.localDescription.sdp))

    async def set_answer(self, sdp: str) -> None:
        """Apply the remote answer to our offer."""
        self._sctp.remote_description(sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))
        await self._remote_description_set()

    async def answer_offer(self, sdp: str) -> str:
        """Apply a remote offer and return our answer's SDP."""
        self._sctp.remote_description(sdp)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await self._remote_description_set()
        answer = await self.pc.createAnswer()
        await self.pc.setLocalDescription(answer)
        return self._sctp.local_description(str(self.pc.localDescription.sdp))

    async def _remote_description_set(self) -> None:
        self._remote_set = True
        while self._pending_candidates:
            await self._add_candidate(self._pending_candidates.popleft())

    async def add_remote_candidate(self, candidate: Any | None) -> None:
        """Add a remote candidate (``None`` = end of candidates); held until the remote
        description exists, since aiortc drops candidates that arrive before it."""
        if not self._remote_set:
            self._pending_candidates.append(candidate)
            return
        await self._add_candidate(candidate)

    async def _add_candidate(self, candidate: Any | None) -> None:
        try:
            await self.pc.addIceCandidate(candidate)
        except Exception:
            logger.warning("%s: could not add remote candidate", self.name, exc_info=True)

    async def close(self) -> None:
        """Close the channels' queues and the peer connection."""
        if self._closed:
            return
        self._closed = True
        exc = TransportClosedError(f"{self.name} transport closed")
        if self._failed is None:
            self._failed = exc
        self._connected.set()
        for queue in self.queues.values():
            queue.close(exc)
        await self.pc.close()


def build_configuration(ice_servers: Sequence[IceServer]) -> Any:
    """An ``RTCConfiguration`` with exactly ``ice_servers`` (possibly none)."""
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
            for s in ice_servers
        ]
    )
