"""The callee's side of RPC: method registry, v1 packets and v2 request streams."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from livekit.protocol import models

from ..emitter import PacketEmitter, SendPacket
from ..peers import PeerDirectory
from ..streams.outgoing import OutgoingDataStreamManager
from ..streams.reader import ByteStreamReader, TextStreamReader
from ..wire import constants as c
from ..wire.packets import (
    DataPacket,
    rpc_ack_packet,
    rpc_error_packet,
    rpc_response_packet,
)
from ..wire.utf8 import utf8_len
from .errors import RpcError
from .streaming_server import (
    RequestUpload,
    StreamingResponse,
    collect,
    is_streaming_handler,
    join_chunks,
)
from .types import RpcInvocationData

logger = logging.getLogger(__name__)

RpcHandler = Callable[[RpcInvocationData], Awaitable[str] | str]
F = TypeVar("F", bound=RpcHandler)
E = RpcError.ErrorCode

_COMPRESS_CHUNKS_FROM = 1024
_ACK_HOLD_S = 0.002
"""How long the ack of a streaming call may wait to leave with the call's first chunk."""
DEFAULT_MAX_REQUESTS_PER_CALLER = 1024
# What JavaScript's parseInt skips before a number (WhiteSpace and LineTerminator), and
# the ASCII digits it reads: Python's \s and \d would accept more.
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_LEADING_INT = re.compile(f"[{_JS_SPACE}]*([+-]?)0*([0-9]+)")
_MAX_DIGITS = 100
"""Longer numbers are refused: no attribute means them, and int() would refuse 4300+ digits."""
_MAX_TIMEOUT_MS = 2**32 - 1
"""The largest response timeout a v1 request can carry (uint32); v2 values are capped to it."""


def parse_int_leniently(value: str | None) -> int | None:
    """Integer prefix of ``value`` the way LiveKit's SDKs read numeric attributes, or None."""
    if value is None:
        return None
    match = _LEADING_INT.match(value)
    if match is None or len(match.group(2)) > _MAX_DIGITS:
        return None
    return int(match.group(1) + match.group(2))


def _timeout_s(timeout_ms: int) -> float:
    """A wire response timeout in seconds, within [0, 2**32 - 1 ms]."""
    return min(max(timeout_ms, 0), _MAX_TIMEOUT_MS) / 1000


class RpcServerManager(PacketEmitter):
    """Runs registered methods for incoming calls and sends acks, responses and errors.

    Packets go out through ``send_packet`` or, without it, as ``"send_packet"`` events of this
    pyee emitter; response streams go through ``streams``.

    Every request is acknowledged at once; each handler runs in its own task (owned here and
    cancelled by :meth:`aclose`) and is cancelled when the caller's response timeout passes.
    One caller may have at most ``max_requests_per_caller`` requests in progress; beyond that
    a request is acknowledged and refused with 1500 at once, so a peer cannot make us hold an
    unbounded number of handler tasks.
    """

    def __init__(
        self,
        *,
        streams: OutgoingDataStreamManager,
        peers: PeerDirectory,
        send_packet: SendPacket | None = None,
        max_requests_per_caller: int = DEFAULT_MAX_REQUESTS_PER_CALLER,
    ) -> None:
        super().__init__(send_packet)
        self.max_requests_per_caller = max_requests_per_caller
        self._in_progress: dict[str, int] = {}
        self._streams = streams
        self._peers = peers
        self._handlers: dict[str, RpcHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._streaming: dict[tuple[str, str], StreamingResponse] = {}
        self._uploads: dict[tuple[str, str], RequestUpload] = {}
        self._serving: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._held_acks: dict[tuple[str, str], asyncio.TimerHandle] = {}

    # -- registry ----------------------------------------------------------------------------

    @overload
    def register_rpc_method(self, method_name: str) -> Callable[[F], F]: ...

    @overload
    def register_rpc_method(self, method_name: str, handler: F) -> F: ...

    def register_rpc_method(
        self, method_name: str, handler: F | None = None
    ) -> F | Callable[[F], F]:
        """Serve ``method_name`` with ``handler(data: RpcInvocationData) -> str``.

        The handler may be sync or async; it raises :class:`RpcError` to send a specific
        error. Works as a call or as a decorator. Registering a name twice raises ValueError.
        """

        def register(fn: F) -> F:
            if method_name in self._handlers:
                raise ValueError(f"RPC method {method_name!r} is already registered")
            self._handlers[method_name] = fn
            return fn

        return register(handler) if handler is not None else register

    def unregister_rpc_method(self, method_name: str) -> None:
        """Stop serving ``method_name`` (no-op if it is not registered)."""
        self._handlers.pop(method_name, None)

    # -- incoming ----------------------------------------------------------------------------

    def handle_request(self, request: models.RpcRequest, caller_identity: str) -> None:
        """A v1 ``RpcRequest`` packet arrived."""
        if self._admit(caller_identity, request.id):
            self._spawn(self._serve_v1(request, caller_identity), caller_identity)

    def handle_request_stream(self, reader: TextStreamReader, caller_identity: str) -> None:
        """A v2 request stream (topic ``lk.rpc_request``) started arriving."""
        attributes = reader.info.attributes
        request_id = attributes.get(c.ATTR_REQUEST_ID, "")
        if not self._admit(caller_identity, request_id):
            return
        if request_id and attributes.get(c.ATTR_CLIENT_STREAMING) == "1":
            # Registered now, not in the task: its chunks may arrive before the task runs.
            window = parse_int_leniently(attributes.get(c.ATTR_WINDOW)) or 0
            window = min(max(window, 1), c.MAX_STREAM_WINDOW)

            async def send_credit(credit: int) -> None:
                await self._send_control(
                    caller_identity, request_id, c.OP_CREDIT, {c.ATTR_CREDIT: str(credit)}
                )

            self._uploads[(caller_identity, request_id)] = RequestUpload(window, send_credit)
        self._spawn(self._serve_v2(reader, caller_identity), caller_identity)

    def _admit(self, caller: str, request_id: str) -> bool:
        """Whether ``caller`` may start another request; if not, refuse it right away."""
        if self._in_progress.get(caller, 0) < self.max_requests_per_caller:
            return True
        logger.warning("RPC request %s from %s refused: too many in progress", request_id, caller)
        error = RpcError.built_in(
            E.APPLICATION_ERROR,
            f"too many requests in progress (limit {self.max_requests_per_caller})",
        )

        async def refuse() -> None:
            await self._send_quietly(rpc_ack_packet(request_id=request_id, destination=caller))
            await self._send_error(request_id, caller, error)

        self._spawn(refuse(), None)
        return False

    def handle_upload_chunk(
        self, reader: TextStreamReader | ByteStreamReader, sender_identity: str
    ) -> bool:
        """A request chunk of a client-streaming call; False if no such upload is open."""
        upload = self._uploads.get(
            (sender_identity, reader.info.attributes.get(c.ATTR_REQUEST_ID, ""))
        )
        if upload is None:
            return False
        upload.push(reader)
        return True

    async def _send_control(
        self, caller: str, request_id: str, op: str, extra: dict[str, str] | None = None
    ) -> None:
        try:
            await self._streams.send_text(
                "",
                topic=c.STREAM_CONTROL_TOPIC,
                destination_identities=[caller],
                attributes={c.ATTR_REQUEST_ID: request_id, c.ATTR_OP: op, **(extra or {})},
                compress=False,
            )
        except Exception as exc:
            logger.warning("streaming RPC %s: %s could not be sent: %s", request_id, op, exc)

    async def _serve_v1(self, request: models.RpcRequest, caller: str) -> None:
        await self._send_quietly(rpc_ack_packet(request_id=request.id, destination=caller))
        if request.version != c.RPC_VERSION_V1:
            await self._send_error(request.id, caller, RpcError.built_in(E.UNSUPPORTED_VERSION))
            return
        await self._invoke(
            request.id, request.method, request.payload, request.response_timeout_ms, caller, False
        )

    async def _serve_v2(self, reader: TextStreamReader, caller: str) -> None:
        attributes = reader.info.attributes
        key = (caller, attributes.get(c.ATTR_REQUEST_ID, ""))
        extension = attributes.get(c.ATTR_STREAMING) or attributes.get(c.ATTR_CLIENT_STREAMING)
        task = asyncio.current_task()
        if extension and task is not None and key[1]:
            self._serving[key] = task
        try:
            await self._serve_v2_request(reader, caller, attributes)
        finally:
            self._uploads.pop(key, None)
            self._serving.pop(key, None)

    async def _serve_v2_request(
        self, reader: TextStreamReader, caller: str, attributes: dict[str, str]
    ) -> None:
        request_id = attributes.get(c.ATTR_REQUEST_ID, "")
        method = attributes.get(c.ATTR_METHOD, "")
        timeout_ms = parse_int_leniently(attributes.get(c.ATTR_RESPONSE_TIMEOUT_MS))
        version = parse_int_leniently(attributes.get(c.ATTR_VERSION))
        if not request_id or not method or timeout_ms is None or version is None:
            logger.warning("malformed RPC request stream from %s: %s", caller, attributes)
            error = RpcError.built_in(E.APPLICATION_ERROR, "RPC data stream malformed")
            await self._send_error(request_id, caller, error)
            return
        key = (caller, request_id)
        streaming = attributes.get(c.ATTR_STREAMING) == "1"
        if streaming and version == c.RPC_VERSION_V2 and method in self._handlers:
            self._hold_ack(key)
        else:
            await self._send_quietly(rpc_ack_packet(request_id=request_id, destination=caller))
        try:
            await self._serve_acknowledged(reader, key, method, version, timeout_ms, attributes)
        finally:
            if key in self._held_acks:  # ended (or was cancelled) before sending anything
                self._spawn(self._release_ack(key), None)

    async def _serve_acknowledged(
        self,
        reader: TextStreamReader,
        key: tuple[str, str],
        method: str,
        version: int,
        timeout_ms: int,
        attributes: dict[str, str],
    ) -> None:
        caller, request_id = key
        if version != c.RPC_VERSION_V2:
            await self._send_error(request_id, caller, RpcError.built_in(E.UNSUPPORTED_VERSION))
            return
        if method not in self._handlers:
            await self._send_error(request_id, caller, RpcError.built_in(E.UNSUPPORTED_METHOD))
            return
        try:
            payload = await reader.read_all()
        except Exception as exc:
            logger.warning("RPC request %s: payload stream failed: %s", request_id, exc)
            error = RpcError.built_in(E.APPLICATION_ERROR, "Error reading RPC request payload")
            await self._release_ack(key)
            await self._send_error(request_id, caller, error)
            return
        handler = self._handlers.get(method)
        if handler is None:  # unregistered while the payload was arriving
            await self._release_ack(key)
            await self._send_error(request_id, caller, RpcError.built_in(E.UNSUPPORTED_METHOD))
            return
        data = RpcInvocationData(
            request_id,
            caller,
            payload,
            _timeout_s(timeout_ms),
            self._uploads.get((caller, request_id)),
        )
        if attributes.get(c.ATTR_STREAMING) == "1" and is_streaming_handler(handler):
            await self._serve_streaming(handler, data, attributes)
            return
        await self._release_ack(key)
        await self._answer(handler, data, via_stream=True)

    def _hold_ack(self, key: tuple[str, str]) -> None:
        """Hold the ack of a streaming call briefly, so that it leaves in the same transport
        packet as the first chunk (or heartbeat, or error) instead of on its own."""

        def expire() -> None:
            if key in self._held_acks:
                self._spawn(self._release_ack(key), None)

        loop = asyncio.get_running_loop()
        self._held_acks[key] = loop.call_later(_ACK_HOLD_S, expire)

    async def _release_ack(self, key: tuple[str, str]) -> None:
        """Send the held ack of ``key``, if any; called before any other packet of the call."""
        held = self._held_acks.pop(key, None)
        if held is not None:
            held.cancel()
            await self._send_quietly(rpc_ack_packet(request_id=key[1], destination=key[0]))

    async def _serve_streaming(
        self, handler: RpcHandler, data: RpcInvocationData, attributes: dict[str, str]
    ) -> None:
        request_id, caller = data.request_id, data.caller_identity
        key = (caller, request_id)
        window = parse_int_leniently(attributes.get(c.ATTR_WINDOW)) or c.DEFAULT_STREAM_WINDOW
        heartbeat_ms = parse_int_leniently(attributes.get(c.ATTR_HEARTBEAT_MS))
        deadline_ms = parse_int_leniently(attributes.get(c.ATTR_DEADLINE_MS))

        async def send_chunks(items: list[str | bytes], seq: int) -> None:
            await self._release_ack(key)
            chunk_attributes = {c.ATTR_REQUEST_ID: request_id, c.ATTR_SEQ: str(seq)}
            content = join_chunks(items, chunk_attributes)
            send = self._streams.send_text if isinstance(content, str) else self._streams.send_bytes
            await send(
                content,  # type: ignore[arg-type]
                topic=c.STREAM_CHUNK_TOPIC,
                destination_identities=[caller],
                attributes=chunk_attributes,
                compress=len(content) > _COMPRESS_CHUNKS_FROM,
            )

        async def send_heartbeat() -> None:
            await self._release_ack(key)
            await self._send_control(caller, request_id, c.OP_HEARTBEAT)

        response = StreamingResponse(
            send_chunks=send_chunks,
            send_heartbeat=send_heartbeat,
            window=min(window, c.MAX_STREAM_WINDOW),
            realtime=attributes.get(c.ATTR_REALTIME) == "1",
            heartbeat_interval=(heartbeat_ms or int(c.DEFAULT_HEARTBEAT_S * 1000)) / 1000,
        )
        self._streaming[key] = response
        deadline = asyncio.timeout(deadline_ms / 1000 if deadline_ms else None)
        failure: RpcError | None = None
        try:
            async with deadline:
                await response.run(handler(data))  # type: ignore[arg-type]
        except RpcError as exc:
            failure = exc
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                failure = RpcError.built_in(E.RESPONSE_TIMEOUT, "deadline exceeded")
            else:
                logger.warning("streaming RPC handler raised %r", exc)
                failure = RpcError.built_in(E.APPLICATION_ERROR, f"Uncaught error: {exc}")
        finally:
            self._streaming.pop(key, None)
        await self._release_ack(key)
        if response.realtime and response.dropped:
            # Chunks dropped at the tail leave no gap for the caller to see: say how many.
            await self._send_control(caller, request_id, c.OP_END, {c.ATTR_SEQ: str(response.seq)})
        if failure is not None:
            await self._send_error(request_id, caller, failure)
        else:
            await self._send_quietly(
                rpc_response_packet(request_id=request_id, payload="", destination=caller)
            )

    def handle_control(self, attributes: dict[str, str], sender_identity: str) -> bool:
        """Credit, cancel or end-of-request from the caller of an extension call.

        Returns False when no call of this manager matches (the message may be for the
        local caller's side instead).
        """
        key = (sender_identity, attributes.get(c.ATTR_REQUEST_ID, ""))
        op = attributes.get(c.ATTR_OP)
        response, upload = self._streaming.get(key), self._uploads.get(key)
        if op == c.OP_CREDIT and response is not None:
            response.grant(parse_int_leniently(attributes.get(c.ATTR_CREDIT)) or 0)
        elif op == c.OP_END and upload is not None:
            upload.end()
        elif op == c.OP_ABORT and upload is not None:
            upload.abort("the caller's request stream failed")
        elif op == c.OP_CANCEL and key in self._serving:
            self._serving[key].cancel()
        else:
            return False
        return True

    async def _invoke(
        self,
        request_id: str,
        method: str,
        payload: str,
        timeout_ms: int,
        caller: str,
        via_stream: bool,
    ) -> None:
        handler = self._handlers.get(method)
        if handler is None:
            await self._send_error(request_id, caller, RpcError.built_in(E.UNSUPPORTED_METHOD))
            return
        data = RpcInvocationData(request_id, caller, payload, _timeout_s(timeout_ms))
        await self._answer(handler, data, via_stream=via_stream)

    async def _answer(
        self, handler: RpcHandler, data: RpcInvocationData, *, via_stream: bool
    ) -> None:
        outcome = await self._run_handler(handler, data)
        if isinstance(outcome, RpcError):
            await self._send_error(data.request_id, data.caller_identity, outcome)
        else:
            await self._respond(data.request_id, data.caller_identity, outcome, via_stream)

    async def _run_handler(self, handler: RpcHandler, data: RpcInvocationData) -> str | RpcError:
        """The handler's response, or the error to send; cancelled at the caller's timeout."""
        deadline = asyncio.timeout(data.response_timeout or None)
        try:
            async with deadline:
                result = await _call(handler, data)
        except RpcError as error:
            return error
        except Exception as exc:
            if isinstance(exc, TimeoutError) and deadline.expired():
                logger.warning("RPC handler outlived the caller's timeout; cancelled")
                return RpcError.built_in(E.RESPONSE_TIMEOUT)
            logger.warning("RPC handler raised %r", exc)
            return RpcError.built_in(E.APPLICATION_ERROR, f"Uncaught error: {exc}")
        if result is None:
            return ""
        if not isinstance(result, str):
            message = f"handler returned {type(result).__name__}, not str"
            return RpcError.built_in(E.APPLICATION_ERROR, message)
        return result

    async def _respond(self, request_id: str, caller: str, result: str, via_stream: bool) -> None:
        # A caller that sent a stream reads streams; otherwise trust what it advertised.
        if via_stream or self._peers.client_protocol(caller) >= c.CLIENT_PROTOCOL_DATA_STREAM_RPC:
            try:
                await self._streams.send_text(
                    result,
                    topic=c.RPC_RESPONSE_TOPIC,
                    destination_identities=[caller],
                    attributes={c.ATTR_REQUEST_ID: request_id},
                )
            except Exception as exc:
                logger.warning("RPC response %s could not be sent: %s", request_id, exc)
                error = RpcError.built_in(E.SEND_FAILED, str(exc))
                await self._send_error(request_id, caller, error)
            return
        if utf8_len(result) > c.MAX_V1_PAYLOAD_BYTES:
            error = RpcError.built_in(E.RESPONSE_PAYLOAD_TOO_LARGE)
            await self._send_error(request_id, caller, error)
            return
        await self._send_quietly(
            rpc_response_packet(request_id=request_id, payload=result, destination=caller)
        )

    # -- plumbing ----------------------------------------------------------------------------

    async def _send_error(self, request_id: str, caller: str, error: RpcError) -> None:
        packet = rpc_error_packet(request_id=request_id, error=error.to_proto(), destination=caller)
        await self._send_quietly(packet)

    async def _send_quietly(self, packet: DataPacket) -> None:
        try:
            await self._send(packet)
        except Exception as exc:
            logger.warning("RPC packet could not be sent: %s", exc)

    def _spawn(self, coro: Awaitable[None], caller: str | None) -> None:
        """Run ``coro`` as a task owned here, counted against ``caller`` while it runs."""
        if caller is not None:
            self._in_progress[caller] = self._in_progress.get(caller, 0) + 1

        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("unexpected error while serving an RPC request")
            finally:
                if caller is not None:
                    left = self._in_progress.pop(caller) - 1
                    if left:
                        self._in_progress[caller] = left

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel running handlers and wait for them to finish."""
        for held in self._held_acks.values():
            held.cancel()
        self._held_acks.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _call(handler: RpcHandler, data: RpcInvocationData) -> Any:
    result = handler(data)
    if inspect.isasyncgen(result) or inspect.isgenerator(result):
        return await collect(result)
    if inspect.isawaitable(result):
        return await result
    return result
