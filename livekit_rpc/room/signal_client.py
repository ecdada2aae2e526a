"""LiveKit signalling over a WebSocket: join, negotiation, keepalive, metadata and leave.

The client speaks the v0 signal path (``<url>/rtc``) with binary protobuf frames:
``SignalRequest`` up, ``SignalResponse`` down. The token travels both as an
``Authorization: Bearer`` header and as the ``access_token`` query parameter, and the client
describes itself with the query parameters of a ``ClientInfo``.

:class:`SignalClient` owns two tasks after :meth:`SignalClient.connect`: a reader that hands
every incoming message, in order, to a :class:`SignalHandler`, and a pinger. Both end in
:meth:`SignalClient.close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import platform
import time
import urllib.parse
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

import aiohttp
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from livekit_rpc.wire.constants import (
    CLIENT_PROTOCOL,
    LOCAL_CAPABILITIES,
    SIGNAL_PROTOCOL_VERSION,
)

logger = logging.getLogger(__name__)

JOIN_TIMEOUT: Final = 5.0
"""Seconds allowed between the WebSocket upgrade and the ``join`` response."""
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
"""Seconds allowed for the WebSocket upgrade."""
REQUEST_TIMEOUT: Final = 5.0
"""Seconds to wait for the ``request_response`` to a metadata or attribute update."""
VALIDATE_TIMEOUT: Final = 3.0
MAX_SIGNAL_MESSAGE_SIZE: Final = 8 * 1024 * 1024
"""Largest signalling message accepted from the server."""

SDK_NAME: Final = "python"


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("livekit-rpc")
    except Exception:
        return "0.0.0"


class ConnectError(Exception):
    """Connecting to the room failed (refused token, unreachable server, no join, no ICE).

    Attributes:
        message: human-readable description.
        status: the HTTP status of a refused WebSocket upgrade, when there was one.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class SignalRequestError(Exception):
    """The server refused or did not answer a signalling request (e.g. ``set_attributes``)."""

    def __init__(self, message: str, *, reason: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


class SignalHandler(Protocol):
    """What the signal client reports to its owner."""

    async def on_signal_message(self, message: proto_rtc.SignalResponse) -> None:
        """Handle one server message; messages are delivered one at a time, in order."""

    def on_signal_closed(self, reason: int, message: str, *, recoverable: bool) -> None:
        """The signal connection ended without a local ``close``; ``reason`` is a
        ``DisconnectReason`` value. ``recoverable`` is false only when the server said to
        leave for good (a ``LeaveRequest`` with action ``DISCONNECT``)."""


@dataclass(frozen=True)
class ClientDescription:
    """What the client tells the server about itself (a ``ClientInfo`` in query form)."""

    sdk: str = SDK_NAME
    version: str = ""
    protocol: int = SIGNAL_PROTOCOL_VERSION
    client_protocol: int = CLIENT_PROTOCOL
    capabilities: tuple[int, ...] = tuple(LOCAL_CAPABILITIES)
    os: str = ""
    os_version: str = ""
    device_model: str = ""

    @classmethod
    def default(cls) -> ClientDescription:
        """This library's own description, with the host OS filled in."""
        return cls(
            version=_package_version(),
            os=platform.system().lower(),
            os_version=platform.release(),
            device_model=platform.machine(),
        )


def capability_names(capabilities: Sequence[int]) -> str:
    """``capabilities`` as the comma-separated query value: enum names where the protocol
    knows them, decimal numbers otherwise."""
    names = []
    for value in capabilities:
        try:
            names.append(models.ClientInfo.Capability.Name(value))
        except ValueError:
            names.append(str(value))
    return ",".join(names)


def signal_url(
    url: str,
    token: str,
    *,
    client: ClientDescription,
    auto_subscribe: bool,
    path: str = "/rtc",
    extra: Mapping[str, str] | None = None,
) -> str:
    """Build the v0 signal URL: ``ws(s)://host[/prefix]/rtc?access_token=...&...``."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"unsupported URL scheme {parts.scheme!r}")
    base_path = parts.path.rstrip("/")
    if base_path.endswith("/rtc"):
        base_path = base_path[: -len("/rtc")]
    query: dict[str, str] = {
        "access_token": token,
        "auto_subscribe": "1" if auto_subscribe else "0",
        "sdk": client.sdk,
        "version": client.version,
        "protocol": str(client.protocol),
        "client_protocol": str(client.client_protocol),
        "adaptive_stream": "0",
    }
    if client.capabilities:
        query["capabilities"] = capability_names(client.capabilities)
    if client.os:
        query["os"] = client.os
    if client.os_version:
        query["os_version"] = client.os_version
    if client.device_model:
        query["device_model"] = client.device_model
    if extra:
        query.update(extra)
    return urllib.parse.urlunsplit(
        (scheme, parts.netloc, base_path + path, urllib.parse.urlencode(query), "")
    )


def _now_ms() -> int:
    return int(time.time() * 1000)


class SignalClient:
    """A WebSocket signalling session with a LiveKit-compatible server.

    Args:
        handler: receives server messages and the close notification.
        client: the ``ClientInfo`` to advertise (defaults to this library's).
    """

    def __init__(self, handler: SignalHandler, *, client: ClientDescription | None = None) -> None:
        self._handler = handler
        self._client = client or ClientDescription.default()
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._request_ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[proto_rtc.RequestResponse]] = {}
        self._closed = False
        self._last_message = time.monotonic()
        self._send_lock = asyncio.Lock()
        self.ping_interval = 0.0
        self.ping_timeout = 0.0
        self.rtt_ms = 0
        self.join: proto_rtc.JoinResponse | None = None

    @property
    def connected(self) -> bool:
        """Whether the WebSocket is open."""
        return self._ws is not None and not self._ws.closed and not self._closed

    async def connect(
        self,
        url: str,
        token: str,
        *,
        auto_subscribe: bool = False,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> proto_rtc.JoinResponse:
        """Open the WebSocket, wait for ``join`` and start the reader and pinger.

        Raises:
            ConnectError: the upgrade was refused (``status`` set) or failed, the server sent
                ``leave`` or something other than ``join`` first, or nothing came in time.
        """
        if self._session is not None:
            raise RuntimeError("SignalClient.connect called twice")
        target = signal_url(url, token, client=self._client, auto_subscribe=auto_subscribe)
        headers = {"Authorization": f"Bearer {token}"}
        self._session = aiohttp.ClientSession()
        try:
            try:
                self._ws = await asyncio.wait_for(
                    self._session.ws_connect(
                        target,
                        headers=headers,
                        autoping=True,
                        max_msg_size=MAX_SIGNAL_MESSAGE_SIZE,
                        timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
                    ),
                    connect_timeout,
                )
            except aiohttp.WSServerHandshakeError as exc:
                detail = await self._validate(url, token, auto_subscribe)
                raise ConnectError(
                    f"server refused the connection ({exc.status}): {detail or exc.message}",
                    status=exc.status,
                ) from exc
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise ConnectError(f"could not reach the signal server: {exc!r}") from exc
            join = await self._wait_join()
        except BaseException:
            await self._teardown()
            raise
        self.join = join
        self.ping_interval = float(join.ping_interval)
        self.ping_timeout = float(join.ping_timeout)
        self._last_message = time.monotonic()
        self._spawn(self._read_loop(), "signal-reader")
        if self.ping_interval > 0:
            self._spawn(self._ping_loop(), "signal-ping")
        return join

    async def _validate(self, url: str, token: str, auto_subscribe: bool) -> str:
        """Ask ``/rtc/validate`` why the upgrade failed (best effort)."""
        assert self._session is not None
        target = signal_url(
            url, token, client=self._client, auto_subscribe=auto_subscribe, path="/rtc/validate"
        )
        target = target.replace("ws://", "http://", 1).replace("wss://", "https://", 1)
        try:
            async with asyncio.timeout(VALIDATE_TIMEOUT):
                async with self._session.get(
                    target, headers={"Authorization": f"Bearer {token}"}
                ) as resp:
                    return (await resp.text()).strip()[:500]
        except Exception:
            return ""

    async def _wait_join(self) -> proto_rtc.JoinResponse:
        assert self._ws is not None
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                while True:
                    msg = await self._ws.receive()
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        break
                    if msg.type in (
                        aiohttp.WSMsgType.CLOSE,
                        aiohttp.WSMsgType.CLOSING,
                        aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.ERROR,
                    ):
                        raise ConnectError("signal connection closed before the join response")
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        raise ConnectError("server sent a text frame; only binary is supported")
        except TimeoutError as exc:
            raise ConnectError(f"no join response within {JOIN_TIMEOUT:g} s") from exc
        response = proto_rtc.SignalResponse()
        try:
            response.ParseFromString(msg.data)
        except Exception as exc:
            raise ConnectError("could not parse the first signal message") from exc
        which = response.WhichOneof("message")
        if which == "join":
            return response.join
        if which == "leave":
            reason = response.leave.reason
            try:
                name = models.DisconnectReason.Name(reason)
            except ValueError:
                name = str(reason)
            raise ConnectError(f"server refused the join: {name}")
        raise ConnectError(f"expected a join response, got {which!r}")

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_loop(self) -> None:
        assert self._ws is not None
        ws = self._ws
        reason = models.DisconnectReason.SIGNAL_CLOSE
        detail = "signal connection closed"
        recoverable = True
        try:
            async for msg in ws:
                self._last_message = time.monotonic()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                response = proto_rtc.SignalResponse()
                try:
                    response.ParseFromString(msg.data)
                except Exception:
                    logger.warning("dropping unparsable signal message")
                    continue
                which = response.WhichOneof("message")
                if which == "pong_resp":
                    self.rtt_ms = max(0, _now_ms() - response.pong_resp.last_ping_timestamp)
                    continue
                if which == "request_response":
                    self._resolve_request(response.request_response)
                    continue
                if which == "leave":
                    reason = response.leave.reason or models.DisconnectReason.UNKNOWN_REASON
                    detail = "server sent leave"
                    recoverable = response.leave.action != proto_rtc.LeaveRequest.Action.DISCONNECT
                    await self._handler.on_signal_message(response)
                    break
                try:
                    await self._handler.on_signal_message(response)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("error handling signal message %s", which)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            detail = f"signal connection failed: {exc!r}"
        if not self._closed:
            self._closed = True
            self._fail_pending(SignalRequestError(detail))
            self._handler.on_signal_closed(reason, detail, recoverable=recoverable)

    async def _ping_loop(self) -> None:
        timeout = self.ping_timeout if self.ping_timeout > 0 else max(3 * self.ping_interval, 5)
        while not self._closed:
            await asyncio.sleep(self.ping_interval)
            if time.monotonic() - self._last_message > timeout:
                logger.warning("signal ping timeout (%.1f s without a message)", timeout)
                if not self._closed:
                    self._closed = True
                    self._fail_pending(SignalRequestError("signal ping timeout"))
                    self._handler.on_signal_closed(
                        models.DisconnectReason.SIGNAL_CLOSE,
                        "signal ping timeout",
                        recoverable=True,
                    )
                return
            with contextlib.suppress(Exception):
                await self.send(
                    proto_rtc.SignalRequest(
                        ping_req=proto_rtc.Ping(timestamp=_now_ms(), rtt=self.rtt_ms)
                    )
                )

    async def send(self, request: proto_rtc.SignalRequest) -> None:
        """Send one request as a binary frame.

        Raises:
            ConnectionError: the signal connection is closed.
        """
        ws = self._ws
        if ws is None or ws.closed or self._closed:
            raise ConnectionError("signal connection is closed")
        data = request.SerializeToString()
        async with self._send_lock:
            await ws.send_bytes(data)

    async def send_offer(self, sdp: str, offer_id: int) -> None:
        """Send our publisher offer."""
        await self.send(
            proto_rtc.SignalRequest(
                offer=proto_rtc.SessionDescription(type="offer", sdp=sdp, id=offer_id)
            )
        )

    async def send_answer(self, sdp: str, answer_id: int) -> None:
        """Answer the server's subscriber offer, echoing its id."""
        await self.send(
            proto_rtc.SignalRequest(
                answer=proto_rtc.SessionDescription(type="answer", sdp=sdp, id=answer_id)
            )
        )

    async def send_trickle(self, candidate_init: str, target: int, *, final: bool = False) -> None:
        """Trickle one of our candidates (JSON ``RTCIceCandidateInit``)."""
        await self.send(
            proto_rtc.SignalRequest(
                trickle=proto_rtc.TrickleRequest(
                    candidateInit=candidate_init,
                    target=target,  # type: ignore[arg-type]
                    final=final,
                )
            )
        )

    async def update_metadata(
        self,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Send ``update_metadata`` and wait for the matching ``request_response``.

        Raises:
            SignalRequestError: the server answered with a reason other than ``OK``, or did
                not answer within :data:`REQUEST_TIMEOUT` seconds.
        """
        request_id = next(self._request_ids)
        update = proto_rtc.UpdateParticipantMetadata(request_id=request_id)
        if name is not None:
            update.name = name
        if metadata is not None:
            update.metadata = metadata
        if attributes:
            update.attributes.update(attributes)
        future: asyncio.Future[proto_rtc.RequestResponse] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[request_id] = future
        try:
            await self.send(proto_rtc.SignalRequest(update_metadata=update))
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    response = await future
            except TimeoutError as exc:
                raise SignalRequestError(
                    f"no response to metadata update within {REQUEST_TIMEOUT:g} s"
                ) from exc
        finally:
            self._pending.pop(request_id, None)
        if response.reason != proto_rtc.RequestResponse.Reason.OK:
            reason_name = proto_rtc.RequestResponse.Reason.Name(response.reason)
            raise SignalRequestError(
                f"metadata update refused: {reason_name} {response.message}".strip(),
                reason=response.reason,
            )

    def _resolve_request(self, response: proto_rtc.RequestResponse) -> None:
        future = self._pending.get(response.request_id)
        if future is not None and not future.done():
            future.set_result(response)

    def _fail_pending(self, exc: BaseException) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
                # Retrieved by the waiter; mark so an abandoned future does not warn.
                future.exception()

    async def close(self, *, send_leave: bool = True) -> None:
        """Send ``leave`` (unless the server already ended the session), close the socket and
        stop the reader and pinger. Idempotent."""
        already_closed = self._closed
        self._closed = True
        ws = self._ws
        if send_leave and not already_closed and ws is not None and not ws.closed:
            leave = proto_rtc.LeaveRequest(
                reason=models.DisconnectReason.CLIENT_INITIATED,
                action=proto_rtc.LeaveRequest.Action.DISCONNECT,
            )
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    async with self._send_lock:
                        await ws.send_bytes(
                            proto_rtc.SignalRequest(leave=leave).SerializeToString()
                        )
        self._fail_pending(SignalRequestError("signal connection closed"))
        await self._teardown()

    async def _teardown(self) -> None:
        # Close the socket while the reader still runs: aiohttp completes the closing
        # handshake through a pending receive, so cancelling the reader first would stall it.
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._ws.close()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None and not self._session.closed:
            await self._session.close()
