"""The server end of one participant's WebRTC peer connection (aiortc).

The client offers, this side answers; the client creates the data channels and the server
sends downstream data back over those same channels. No ICE servers are used, and the host
candidates offered are limited to the configured addresses (see :mod:`livekit_rpc.ice`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from .. import ice
from ..sctp import SctpTuner

__all__ = ["ServerPeer"]

logger = logging.getLogger(__name__)

MessageHandler = Callable[[str, "bytes | str"], None]
ChannelHandler = Callable[[str], None]
StateHandler = Callable[[str], None]


def _filter_offer_candidates(sdp: str) -> str:
    """Drop inline remote candidates the active ICE restriction refuses."""
    lines = sdp.splitlines()
    kept = [
        line
        for line in lines
        if not line.startswith("a=candidate:") or ice.remote_candidate_allowed(line[2:])
    ]
    if len(kept) == len(lines):
        return sdp
    return "\r\n".join(kept) + "\r\n"


class ServerPeer:
    """One aiortc peer connection answering a client's offers.

    :param host_addresses: host candidate addresses to offer, or ``None`` for every interface.
    :param on_message: called with ``(label, message)`` for each data-channel message.
    :param on_channel: called with the label when a client channel becomes usable.
    :param on_state: called with the new ``connectionState``.
    :param large_sctp_packets: offer and use large SCTP packets on same-host paths
        (:mod:`livekit_rpc.sctp`).
    """

    def __init__(
        self,
        *,
        host_addresses: Sequence[str] | None,
        on_message: MessageHandler,
        on_channel: ChannelHandler,
        on_state: StateHandler,
        large_sctp_packets: bool = True,
    ) -> None:
        self._host_addresses = tuple(host_addresses) if host_addresses is not None else None
        self._on_message = on_message
        self._on_channel = on_channel
        self._on_state = on_state
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._sctp = SctpTuner(self._pc, large_packets=large_sctp_packets)
        self._channels: dict[str, RTCDataChannel] = {}
        self._pending_candidates: list[str] = []
        self._closed = False
        self._pc.on("datachannel", self._handle_datachannel)
        self._pc.on("connectionstatechange", self._handle_state)

    @property
    def connection_state(self) -> str:
        """aiortc's ``connectionState`` of the peer connection."""
        return str(self._pc.connectionState)

    def channel(self, label: str) -> RTCDataChannel | None:
        """The client-created channel with ``label`` if it is open."""
        channel = self._channels.get(label)
        if channel is None or channel.readyState != "open":
            return None
        return channel

    async def answer(self, offer_sdp: str) -> str:
        """Apply the client's offer and return the answer SDP (candidates included)."""
        with ice.use_host_addresses(self._host_addresses):
            offer = RTCSessionDescription(sdp=_filter_offer_candidates(offer_sdp), type="offer")
            self._sctp.remote_description(offer_sdp)
            await self._pc.setRemoteDescription(offer)
            await self._pc.setLocalDescription(await self._pc.createAnswer())
            pending, self._pending_candidates = self._pending_candidates, []
            for candidate_init in pending:
                await self._add_candidate(candidate_init)
        description = self._pc.localDescription
        assert description is not None
        return self._sctp.local_description(str(description.sdp))

    async def add_candidate(self, candidate_init: str) -> None:
        """Add a trickled candidate (the JSON ``candidateInit`` of a ``TrickleRequest``).

        Candidates that arrive before the first offer are kept until it is applied.
        """
        if self._pc.remoteDescription is None:
            self._pending_candidates.append(candidate_init)
            return
        with ice.use_host_addresses(self._host_addresses):
            await self._add_candidate(candidate_init)

    async def _add_candidate(self, candidate_init: str) -> None:
        try:
            init = json.loads(candidate_init)
            line = init.get("candidate") or ""
            if not isinstance(line, str) or not line:
                return
            if not ice.remote_candidate_allowed(line):
                logger.debug("ignoring remote candidate %s", line)
                return
            candidate = candidate_from_sdp(line.split(":", 1)[1] if ":" in line else line)
            candidate.sdpMid = init.get("sdpMid")
            candidate.sdpMLineIndex = init.get("sdpMLineIndex")
            await self._pc.addIceCandidate(candidate)
        except Exception as exc:  # a bad candidate must never end the session
            logger.debug("ignoring bad candidate %r: %s", candidate_init, exc)

    async def close(self) -> None:
        """Close the peer connection and its channels."""
        if self._closed:
            return
        self._closed = True
        self._channels.clear()
        await self._pc.close()

    def _handle_datachannel(self, channel: RTCDataChannel) -> None:
        label = str(channel.label)
        self._channels[label] = channel

        def on_message(message: bytes | str) -> None:
            self._on_message(label, message)

        def on_open() -> None:
            self._on_channel(label)

        def on_close() -> None:
            if self._channels.get(label) is channel:
                del self._channels[label]

        channel.on("message", on_message)
        channel.on("open", on_open)
        channel.on("close", on_close)
        if channel.readyState == "open":
            self._on_channel(label)

    def _handle_state(self) -> None:
        if not self._closed:
            self._on_state(self.connection_state)
