"""The caller's side of RPC: ``perform_rpc`` and the routing of acks and responses."""

from __future__ import annotations

import asyncio
import enum
import logging
import uuid
from dataclasses import dataclass, field

from livekit.protocol import models

from ..emitter import PacketEmitter, SendPacket
from ..peers import PeerDirectory
from ..streams.outgoing import OutgoingDataStreamManager
from ..streams.reader import ByteStreamReader, TextStreamReader
from ..streams.types import DataStreamError
from ..wire import constants as c
from ..wire.packets import rpc_request_packet
from ..wire.utf8 import utf8_len
from .errors import RpcError
from .streaming import RequestSource, RpcCallStream

logger = logging.getLogger(__name__)

E = RpcError.ErrorCode


class CallState(enum.Enum):
    """Where a call stands: sent and waiting for the ack, acknowledged, or settled."""

    AWAITING_ACK = "awaiting_ack"
    ACKED = "acked"
    DONE = "done"


@dataclass
class _Call:
    request_id: str
    destination: str
    future: asyncio.Future[str]
    state: CallState = CallState.AWAITING_ACK
    timers: list[asyncio.TimerHandle] = field(default_factory=list)
    stream: RpcCallStream | None = None

    def settle(self, result: str | RpcError) -> None:
        self.state = CallState.DONE
        for timer in self.timers:
            timer.cancel()
        if self.future.done():
            return
        if isinstance(result, RpcError):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)


class RpcClientManager(PacketEmitter):
    """Performs calls and matches acks and responses to them.

    Transport-agnostic: packets go out through ``send_packet`` (awaited, so a failed send
    fails the call at once) or, without it, as ``"send_packet"`` events of this pyee emitter;
    v2 payloads go through ``streams``; ``peers`` tells each destination's client_protocol,
    which picks v1 packets or v2 data streams.
    """

    def __init__(
        self,
        *,
        streams: OutgoingDataStreamManager,
        peers: PeerDirectory,
        send_packet: SendPacket | None = None,
    ) -> None:
        super().__init__(send_packet)
        self._streams = streams
        self._peers = peers
        self._calls: dict[str, _Call] = {}
        self._closed = False

    @property
    def pending_calls(self) -> int:
        return len(self._calls)

    async def perform_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str,
        response_timeout: float | None = None,
    ) -> str:
        """Call ``method`` on ``destination_identity`` and return its response.

        ``response_timeout`` (seconds, default 15) bounds the wait for the response once the
        request is sent; the value on the wire is at least 8 s. Raises :class:`RpcError`.
        """
        if self._closed:
            raise RpcError.built_in(E.SEND_FAILED, "the local participant is disconnected")
        timeout = c.DEFAULT_RESPONSE_TIMEOUT_S if response_timeout is None else response_timeout
        remote = self._peers.client_protocol(destination_identity)
        if (
            remote < c.CLIENT_PROTOCOL_DATA_STREAM_RPC
            and utf8_len(payload) > c.MAX_V1_PAYLOAD_BYTES
        ):
            raise RpcError.built_in(E.REQUEST_PAYLOAD_TOO_LARGE)
        wire_timeout_ms = max(int(timeout * 1000), c.MIN_WIRE_TIMEOUT_MS)
        loop = asyncio.get_running_loop()
        call = _Call(str(uuid.uuid4()), destination_identity, loop.create_future())
        self._calls[call.request_id] = call
        call.timers.append(loop.call_later(c.ACK_TIMEOUT_S, self._on_ack_timeout, call))
        try:
            try:
                await self._publish(call, method, payload, wire_timeout_ms, remote)
            except RpcError:
                raise
            except Exception as exc:
                raise RpcError.built_in(E.SEND_FAILED, str(exc) or type(exc).__name__) from exc
            if not call.future.done():
                call.timers.append(loop.call_later(timeout, self._on_response_timeout, call))
            return await call.future
        finally:
            self._forget(call)

    def stream_rpc(
        self,
        *,
        destination_identity: str,
        method: str,
        payload: str | RequestSource,
        response_timeout: float | None = None,
        deadline: float | None = None,
        window: int = c.DEFAULT_STREAM_WINDOW,
        realtime: bool = False,
    ) -> RpcCallStream:
        """A streaming call: ``async with client.stream_rpc(...) as s: async for chunk in s``.

        ``response_timeout`` bounds the wait between chunks (heartbeats keep a slow stream
        alive), ``deadline`` the whole call. ``window`` is how many unread chunks the handler
        may send ahead; with ``realtime`` it drops chunks instead of waiting for credit.
        A peer without the streaming extension is called unary; its reply is one chunk.
        ``payload`` may be an (async) iterable of ``str``/``bytes`` chunks: the handler then
        reads them from ``data.request_chunks`` (client streaming), under the same window.
        """
        timeout = c.DEFAULT_RESPONSE_TIMEOUT_S if response_timeout is None else response_timeout
        return RpcCallStream(
            self,
            destination_identity=destination_identity,
            method=method,
            payload=payload,
            response_timeout=timeout,
            deadline=deadline,
            window=window,
            realtime=realtime,
        )

    def _peer_streams(self, identity: str) -> bool:
        return (
            self._peers.client_protocol(identity) >= c.CLIENT_PROTOCOL_DATA_STREAM_V2
            and c.CAP_LKRPC_STREAMING_RPC in self._peers.capabilities(identity)
        )

    async def _start_stream_call(self, stream: RpcCallStream) -> _Call:
        if self._closed:
            raise RpcError.built_in(E.SEND_FAILED, "the local participant is disconnected")
        loop = asyncio.get_running_loop()
        call = _Call(str(uuid.uuid4()), stream.destination_identity, loop.create_future())
        call.stream = stream
        self._calls[call.request_id] = call
        call.future.add_done_callback(lambda _: self._forget(call))
        call.timers.append(loop.call_later(c.ACK_TIMEOUT_S, self._on_ack_timeout, call))
        wire_timeout_ms = max(int(stream.response_timeout * 1000), c.MIN_WIRE_TIMEOUT_MS)
        heartbeat_ms = int(min(c.DEFAULT_HEARTBEAT_S, stream.response_timeout / 3) * 1000)
        attributes = {
            c.ATTR_REQUEST_ID: call.request_id,
            c.ATTR_METHOD: stream.method,
            c.ATTR_RESPONSE_TIMEOUT_MS: str(wire_timeout_ms),
            c.ATTR_VERSION: str(c.RPC_VERSION_V2),
            c.ATTR_STREAMING: "1",
            c.ATTR_WINDOW: str(stream.window),
            c.ATTR_HEARTBEAT_MS: str(max(heartbeat_ms, 1)),
        }
        if stream.realtime:
            attributes[c.ATTR_REALTIME] = "1"
        if stream.uploads:
            attributes[c.ATTR_CLIENT_STREAMING] = "1"
        if stream.deadline is not None:
            attributes[c.ATTR_DEADLINE_MS] = str(int(stream.deadline * 1000))
            call.timers.append(
                loop.call_later(
                    stream.deadline,
                    lambda: call.settle(RpcError.built_in(E.RESPONSE_TIMEOUT, "deadline exceeded")),
                )
            )
        try:
            await self._streams.send_text(
                stream._payload if isinstance(stream._payload, str) else "",
                topic=c.RPC_REQUEST_TOPIC,
                destination_identities=[call.destination],
                attributes=attributes,
            )
        except Exception as exc:
            error = RpcError.built_in(E.SEND_FAILED, str(exc) or type(exc).__name__)
            call.settle(error)
            raise error from exc
        return call

    async def _send_control(self, call: _Call, op: str, extra: dict[str, str]) -> None:
        try:
            await self._streams.send_text(
                "",
                topic=c.STREAM_CONTROL_TOPIC,
                destination_identities=[call.destination],
                attributes={c.ATTR_REQUEST_ID: call.request_id, c.ATTR_OP: op, **extra},
                compress=False,
            )
        except Exception as exc:
            logger.warning("streaming RPC %s: %s could not be sent: %s", call.request_id, op, exc)

    async def _grant_credit(self, call: _Call, credit: int) -> None:
        if call.state is not CallState.DONE:
            await self._send_control(call, c.OP_CREDIT, {c.ATTR_CREDIT: str(credit)})

    async def _cancel_stream_call(self, call: _Call) -> None:
        if call.state is CallState.DONE:
            return
        call.settle("")
        await self._send_control(call, c.OP_CANCEL, {})

    def _fail_call(self, call: _Call, error: RpcError) -> None:
        if call.state is not CallState.DONE:
            call.settle(error)

    def handle_chunk_stream(
        self, reader: TextStreamReader | ByteStreamReader, sender_identity: str
    ) -> None:
        """A chunk of a streaming call (topic ``lkrpc.rpc_chunk``) started arriving."""
        attributes = reader.info.attributes
        call = self._call_from(attributes.get(c.ATTR_REQUEST_ID, ""), sender_identity, "chunk")
        seq = attributes.get(c.ATTR_SEQ, "")
        if call is None or call.stream is None or not seq.isdigit():
            return
        if call.state is CallState.AWAITING_ACK:  # a chunk implies the request arrived
            self.handle_ack(call.request_id, sender_identity)
        call.stream._on_chunk(reader, int(seq), attributes.get(c.ATTR_LENGTHS, ""))

    def handle_control(self, attributes: dict[str, str], sender_identity: str) -> None:
        """A heartbeat, or credit for the request chunks, of a streaming call."""
        call = self._call_from(attributes.get(c.ATTR_REQUEST_ID, ""), sender_identity, "control")
        if call is None or call.stream is None:
            return
        op = attributes.get(c.ATTR_OP)
        if op == c.OP_HEARTBEAT:
            call.stream._on_heartbeat()
        elif op == c.OP_END:
            total = attributes.get(c.ATTR_SEQ, "")
            call.stream._on_end(int(total) if total.isdigit() else 0)
        elif op == c.OP_CREDIT:
            credit = attributes.get(c.ATTR_CREDIT, "")
            call.stream._on_upload_credit(int(credit) if credit.isdigit() else 0)

    async def _send_chunk(self, call: _Call, item: str | bytes, seq: int) -> None:
        send = self._streams.send_text if isinstance(item, str) else self._streams.send_bytes
        await send(
            item,  # type: ignore[arg-type]
            topic=c.STREAM_CHUNK_TOPIC,
            destination_identities=[call.destination],
            attributes={c.ATTR_REQUEST_ID: call.request_id, c.ATTR_SEQ: str(seq)},
        )

    async def _end_upload(self, call: _Call, error: bool) -> None:
        await self._send_control(call, c.OP_ABORT if error else c.OP_END, {})

    async def _publish(
        self, call: _Call, method: str, payload: str, wire_timeout_ms: int, remote: int
    ) -> None:
        if remote < c.CLIENT_PROTOCOL_DATA_STREAM_RPC:
            await self._send(
                rpc_request_packet(
                    request_id=call.request_id,
                    method=method,
                    payload=payload,
                    response_timeout_ms=wire_timeout_ms,
                    destination=call.destination,
                )
            )
            return
        await self._streams.send_text(
            payload,
            topic=c.RPC_REQUEST_TOPIC,
            destination_identities=[call.destination],
            attributes={
                c.ATTR_REQUEST_ID: call.request_id,
                c.ATTR_METHOD: method,
                c.ATTR_RESPONSE_TIMEOUT_MS: str(wire_timeout_ms),
                c.ATTR_VERSION: str(c.RPC_VERSION_V2),
            },
        )

    def _forget(self, call: _Call) -> None:
        if call.state is not CallState.DONE:
            call.settle(RpcError.built_in(E.SEND_FAILED, "call abandoned"))
        self._calls.pop(call.request_id, None)
        if call.future.done() and not call.future.cancelled():
            call.future.exception()  # retrieved: nothing left to log at garbage collection

    # -- timers ----------------------------------------------------------------------------

    def _on_ack_timeout(self, call: _Call) -> None:
        if call.state is CallState.AWAITING_ACK:
            call.settle(RpcError.built_in(E.CONNECTION_TIMEOUT))

    def _on_response_timeout(self, call: _Call) -> None:
        if call.state is not CallState.DONE:
            call.settle(RpcError.built_in(E.RESPONSE_TIMEOUT))

    # -- incoming ----------------------------------------------------------------------------

    def _call_from(self, request_id: str, sender: str, what: str) -> _Call | None:
        call = self._calls.get(request_id)
        if call is None or call.state is CallState.DONE:
            logger.debug("%s for unknown or finished call %s ignored", what, request_id)
            return None
        if sender != call.destination:
            logger.warning(
                "%s for call %s from %s, but the call went to %s; ignored",
                what,
                request_id,
                sender,
                call.destination,
            )
            return None
        return call

    def handle_ack(self, request_id: str, sender_identity: str = "") -> None:
        """An ``RpcAck`` arrived from ``sender_identity``."""
        call = self._call_from(request_id, sender_identity, "ack")
        if call is not None and call.state is CallState.AWAITING_ACK:
            call.state = CallState.ACKED
            call.timers[0].cancel()

    def handle_response(self, response: models.RpcResponse, sender_identity: str = "") -> None:
        """An ``RpcResponse`` packet (payload or error) arrived from ``sender_identity``."""
        which = response.WhichOneof("value")
        if which not in ("payload", "error"):
            logger.warning("RPC response %s without payload or error; ignored", response.request_id)
            return
        call = self._call_from(response.request_id, sender_identity, "response")
        if call is None:
            return
        if which == "error":
            call.settle(RpcError.from_proto(response.error))
        else:
            call.settle(response.payload)

    def handle_response_stream(self, reader: TextStreamReader, sender_identity: str) -> None:
        """A v2 response stream (topic ``lk.rpc_response``) started arriving.

        The call is settled in the same turn of the event loop as the stream's last packet
        (for a small response, its only one), not by a task reading the stream.
        """
        request_id = reader.info.attributes.get(c.ATTR_REQUEST_ID, "")
        if not request_id:
            logger.warning("RPC response stream from %s without a request id", sender_identity)
            return
        if self._call_from(request_id, sender_identity, "response stream") is None:
            return

        def settle() -> None:
            try:
                result: str | RpcError = reader._text_now()
            except DataStreamError as exc:
                logger.warning("RPC response stream for %s failed: %s", request_id, exc)
                result = RpcError.built_in(
                    E.APPLICATION_ERROR, "Error reading RPC response payload"
                )
            call = self._calls.get(request_id)
            if call is not None and call.state is not CallState.DONE:
                call.settle(result)

        reader._when_done(settle)

    def handle_participant_disconnected(self, identity: str) -> None:
        """Fail every call to a participant who left (1503)."""
        for call in list(self._calls.values()):
            if call.destination == identity and call.state is not CallState.DONE:
                call.settle(RpcError.built_in(E.RECIPIENT_DISCONNECTED))

    def close(self) -> None:
        """Local disconnect: fail every pending call at once (1503) instead of by timers."""
        self._closed = True
        for call in list(self._calls.values()):
            if call.state is not CallState.DONE:
                call.settle(
                    RpcError.built_in(E.RECIPIENT_DISCONNECTED, "local participant disconnected")
                )
