"""One participant's signalling session: the WebSocket, its peer connection, its lifetime.

Signal requests are handled strictly in order (an offer is fully applied before the next
message, so trickled candidates never precede it). Outgoing signal messages go through a queue
drained by one writer task, so any callback may send without awaiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from aiohttp import WSMsgType, web
from google.protobuf.message import DecodeError
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from . import messages
from .config import ServerConfig
from .forwarding import RELIABLE_LABEL
from .peer import ServerPeer
from .room import Room
from .state import Participant

__all__ = ["Session"]

logger = logging.getLogger(__name__)

_CLOSE = object()
"""Outbox marker: close the WebSocket now."""
_LINGER = object()
"""Outbox marker: give the client a moment to close the WebSocket itself, then close it."""
Reason = models.DisconnectReason


class Session:
    """Drives one admitted participant until it leaves or is removed."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        room: Room,
        participant: Participant,
        config: ServerConfig,
        *,
        single_pc: bool = False,
        initial_offer: proto_rtc.SessionDescription | None = None,
    ) -> None:
        self._ws = ws
        self._single_pc = single_pc
        self._initial_offer = initial_offer
        self._room = room
        self.participant = participant
        self._config = config
        self._outbox: asyncio.Queue[object] = asyncio.Queue()
        self._closing = False
        self._reason: int = Reason.CLIENT_INITIATED
        self._finished = asyncio.Event()
        self._reader_done = asyncio.Event()
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._peer = ServerPeer(
            host_addresses=config.candidate_hosts(),
            on_message=self._on_data,
            on_channel=self._on_channel,
            on_state=self._on_pc_state,
            large_sctp_packets=config.large_sctp_packets,
        )

    @property
    def sid(self) -> str:
        """The participant sid."""
        return self.participant.sid

    @property
    def identity(self) -> str:
        """The participant identity."""
        return self.participant.identity

    @property
    def single_pc(self) -> bool:
        """Whether the client joined on the single-peer-connection path (``/rtc/v1``)."""
        return self._single_pc

    def send(self, response: proto_rtc.SignalResponse) -> None:
        """Queue a signal message for the client (dropped once the session is closing)."""
        if not self._closing:
            self._outbox.put_nowait(response.SerializeToString())

    def send_data(self, label: str, payload: bytes) -> None:
        """Send a forwarded data packet on the client's channel with ``label``.

        Reliable packets are held (up to a limit) until the reliable channel is open; lossy
        packets for a channel that is not open are dropped.
        """
        channel = self._peer.channel(label)
        if channel is not None and not (label == RELIABLE_LABEL and self._pending):
            channel.send(payload)
            return
        if label != RELIABLE_LABEL or self._closing:
            return
        if self._pending_bytes + len(payload) > self._config.max_pending_reliable_bytes:
            logger.warning("%s: reliable backlog full, packet dropped", self.identity)
            return
        self._pending.append(payload)
        self._pending_bytes += len(payload)
        if channel is not None:
            self._flush_pending()

    def disconnect(
        self,
        reason: int,
        action: int = proto_rtc.LeaveRequest.Action.DISCONNECT,
    ) -> None:
        """Tell the client to leave, remove the participant and close the session.

        Safe to call from any callback and more than once; :meth:`run` finishes soon after.
        """
        if self._closing:
            return
        self._room.remove(self.sid, reason)
        self.send(messages.leave(reason, action))
        self._closing = True
        self._reason = reason
        # Clients react to the leave by closing everything themselves; closing their socket
        # and peer connection under them first makes them report spurious errors.
        self._outbox.put_nowait(_LINGER)

    async def wait_finished(self) -> None:
        """Wait until :meth:`run` has cleaned up."""
        await self._finished.wait()

    async def run(self) -> None:
        """Serve the session: join, signal loop, then cleanup. Returns when it is over."""
        writer = asyncio.create_task(self._write_loop(), name=f"signal-writer-{self.sid}")
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self._config.pc_connect_timeout, self._check_connected)
        try:
            self._room.attach(self)
            if self._initial_offer is not None:
                # v1: the offer came with the join request; answer it after the join.
                await self._answer(self._initial_offer)
            async for message in self._ws:
                if message.type == WSMsgType.BINARY:
                    request = proto_rtc.SignalRequest()
                    try:
                        request.ParseFromString(message.data)
                    except DecodeError:
                        logger.warning("%s: undecodable signal message", self.identity)
                        continue
                    if not await self._handle(request):
                        break
                elif message.type == WSMsgType.TEXT:
                    logger.debug("%s: text signal messages are not supported", self.identity)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            self._reader_done.set()
            self._deadline.cancel()
            self._room.remove(self.sid, self._reason)
            self._closing = True
            self._outbox.put_nowait(_CLOSE)
            try:
                # On timeout (or if we are cancelled) wait_for cancels and reaps the writer.
                await asyncio.wait_for(writer, self._config.close_timeout + 1.0)
            except TimeoutError:
                logger.debug("%s: signal writer did not finish in time", self.identity)
            finally:
                await self._peer.close()
                self._pending.clear()
                self._finished.set()

    async def _handle(self, request: proto_rtc.SignalRequest) -> bool:
        """Handle one request; returns False when the session should end."""
        kind = request.WhichOneof("message")
        if kind == "offer":
            await self._answer(request.offer)
        elif kind == "trickle":
            # Only the client's publisher PC talks to us, except in single-PC mode.
            if self._single_pc or request.trickle.target == proto_rtc.SignalTarget.PUBLISHER:
                await self._peer.add_candidate(request.trickle.candidateInit)
        elif kind == "ping_req":
            self.send(messages.pong_resp(request.ping_req))
        elif kind == "ping":
            self.send(messages.pong(request.ping))
        elif kind == "update_metadata":
            self._room.update_metadata(self.sid, request.update_metadata)
        elif kind == "leave":
            self._reason = Reason.CLIENT_INITIATED
            return False
        # Everything else (tracks, subscriptions, sync state, ...) is politely ignored.
        return True

    async def _answer(self, offer: proto_rtc.SessionDescription) -> None:
        try:
            sdp = await self._peer.answer(offer.sdp)
        except Exception:
            logger.exception("%s: could not answer offer", self.identity)
            return
        self.send(messages.answer(sdp, offer.id))

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if item is _CLOSE:
                    break
                if item is _LINGER:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._reader_done.wait(), self._config.close_timeout)
                    break
                assert isinstance(item, bytes)
                try:
                    await self._ws.send_bytes(item)
                except (ConnectionError, RuntimeError):
                    break
        finally:
            self._closing = True
            with contextlib.suppress(Exception):
                await self._ws.close()

    def _check_connected(self) -> None:
        if not self.participant.active and not self._closing:
            logger.info("%s: peer connection did not connect in time", self.identity)
            self.disconnect(Reason.CONNECTION_TIMEOUT)

    def _on_pc_state(self, state: str) -> None:
        if state == "connected":
            self._room.activate(self.sid)
        elif state == "failed":
            logger.info("%s: peer connection failed", self.identity)
            self.disconnect(Reason.CONNECTION_TIMEOUT)

    def _on_channel(self, label: str) -> None:
        if label == RELIABLE_LABEL:
            self._flush_pending()

    def _flush_pending(self) -> None:
        channel = self._peer.channel(RELIABLE_LABEL)
        if channel is None:
            return
        while self._pending:
            payload = self._pending.popleft()
            self._pending_bytes -= len(payload)
            channel.send(payload)

    def _on_data(self, label: str, message: bytes | str) -> None:
        if not self._closing:
            self._room.forward(self.sid, label, message)
