"""The callee's side of RPC: method registry, v1 packets and v2 request streams."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

from livekit.protocol import models

from ..peers import PeerDirectory
from ..streams.outgoing import OutgoingDataStreamManager
from ..streams.reader import TextStreamReader
from ..wire import constants as c
from ..wire.packets import (
    DataPacket,
    rpc_ack_packet,
    rpc_error_packet,
    rpc_response_packet,
)
from ..wire.utf8 import utf8_len
from .errors import RpcError
from .types import RpcInvocationData

logger = logging.getLogger(__name__)

SendPacket = Callable[[DataPacket], Awaitable[None]]
RpcHandler = Callable[[RpcInvocationData], Awaitable[str] | str]
F = TypeVar("F", bound=RpcHandler)
E = RpcError.ErrorCode

_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


def parse_int_leniently(value: str | None) -> int | None:
    """Integer prefix of ``value`` the way LiveKit's SDKs read numeric attributes, or None."""
    if value is None:
        return None
    match = _LEADING_INT.match(value)
    return int(match.group(1)) if match else None


class RpcServerManager:
    """Runs registered methods for incoming calls and sends acks, responses and errors.

    Every request is acknowledged at once; each handler runs in its own task (owned here and
    cancelled by :meth:`aclose`) and is cancelled when the caller's response timeout passes.
    """

    def __init__(
        self,
        *,
        send_packet: SendPacket,
        streams: OutgoingDataStreamManager,
        peers: PeerDirectory,
    ) -> None:
        self._send = send_packet
        self._streams = streams
        self._peers = peers
        self._handlers: dict[str, RpcHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()

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
        self._spawn(self._serve_v1(request, caller_identity))

    def handle_request_stream(self, reader: TextStreamReader, caller_identity: str) -> None:
        """A v2 request stream (topic ``lk.rpc_request``) started arriving."""
        self._spawn(self._serve_v2(reader, caller_identity))

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
        request_id = attributes.get(c.ATTR_REQUEST_ID, "")
        method = attributes.get(c.ATTR_METHOD, "")
        timeout_ms = parse_int_leniently(attributes.get(c.ATTR_RESPONSE_TIMEOUT_MS))
        version = parse_int_leniently(attributes.get(c.ATTR_VERSION))
        if not request_id or not method or timeout_ms is None or version is None:
            logger.warning("malformed RPC request stream from %s: %s", caller, attributes)
            error = RpcError.built_in(E.APPLICATION_ERROR, "RPC data stream malformed")
            await self._send_error(request_id, caller, error)
            return
        await self._send_quietly(rpc_ack_packet(request_id=request_id, destination=caller))
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
            await self._send_error(request_id, caller, error)
            return
        await self._invoke(request_id, method, payload, timeout_ms, caller, True)

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
        timeout = max(timeout_ms, 0) / 1000
        data = RpcInvocationData(request_id, caller, payload, timeout)
        outcome = await self._run_handler(handler, data)
        if isinstance(outcome, RpcError):
            await self._send_error(request_id, caller, outcome)
        else:
            await self._respond(request_id, caller, outcome, via_stream)

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

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("unexpected error while serving an RPC request")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancel running handlers and wait for them to finish."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _call(handler: RpcHandler, data: RpcInvocationData) -> Any:
    result = handler(data)
    if inspect.isawaitable(result):
        return await result
    return result
