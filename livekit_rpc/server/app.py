"""The HTTP side of the dev room server: routes, authentication, session start-up.

Routes:

* ``GET /rtc``: the signalling WebSocket (binary protobuf). The token comes from
  ``Authorization: Bearer`` or the ``access_token`` query parameter and is checked before
  the upgrade: a bad token gets HTTP 401.
* ``GET /rtc/validate``: 200 ``success`` for a good token, 401 with the reason otherwise.
* ``/rtc/v1`` and ``/rtc/v1/validate`` are not served (404) unless ``enable_v1`` is set, which
  makes LiveKit clients fall back to the ``/rtc`` path. With ``enable_v1`` they serve the
  single-peer-connection flavour: client details and the first offer come in the
  ``join_request`` query parameter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from types import TracebackType

from aiohttp import web
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from . import messages
from .auth import TokenClaims, TokenError, bearer_token, verify_token
from .client_info import (
    ClientInfoError,
    decode_join_request,
    details_from_join_request,
    parse_query,
)
from .config import ServerConfig
from .room import DataTap, Room
from .session import Session
from .state import ClientDetails

__all__ = ["DevServer"]

logger = logging.getLogger(__name__)


class DevServer:
    """A small LiveKit-compatible room server for development and tests.

    Use as an async context manager, or call :meth:`start` and :meth:`close`::

        async with DevServer(ServerConfig(port=0)) as server:
            print(server.url)
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self._rooms: dict[str, Room] = {}
        self._sessions: set[Session] = set()
        self._taps: list[DataTap] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._closing = False
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/", self._handle_root),
                web.get("/rtc", self._handle_rtc),
                web.get("/rtc/validate", self._handle_validate),
            ]
        )
        if self.config.enable_v1:
            self.app.add_routes(
                [
                    web.get("/rtc/v1", self._handle_rtc_v1),
                    web.get("/rtc/v1/validate", self._handle_validate),
                ]
            )

    @property
    def port(self) -> int:
        """The TCP port actually bound (useful with ``port=0``)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port`` for clients."""
        host = self.config.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"ws://{host}:{self.port}"

    def rooms(self) -> dict[str, Room]:
        """A snapshot of the live rooms by name."""
        return dict(self._rooms)

    def add_data_tap(self, tap: DataTap) -> Callable[[], None]:
        """Observe every forwarded data packet (for debugging and tests).

        ``tap`` is called synchronously with the room name and the
        :class:`~livekit_rpc.server.forwarding.Forward` decision; it must not block. Returns a
        function that removes the tap.
        """
        self._taps.append(tap)

        def remove() -> None:
            if tap in self._taps:
                self._taps.remove(tap)

        return remove

    async def start(self) -> None:
        """Bind and start serving."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            shutdown_timeout=self.config.shutdown_timeout,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])
        logger.info(
            "room server on %s (ICE host candidates: %s)",
            self.url,
            ", ".join(self.config.candidate_hosts() or ["all interfaces"]),
        )

    async def close(self) -> None:
        """Ask every client to leave (``SERVER_SHUTDOWN``), wait for them, stop serving."""
        if self._closing:
            return
        self._closing = True
        sessions = list(self._sessions)
        for session in sessions:
            session.disconnect(models.DisconnectReason.SERVER_SHUTDOWN)
        if sessions:
            _done, pending = await asyncio.wait(
                [asyncio.ensure_future(s.wait_finished()) for s in sessions],
                timeout=self.config.shutdown_timeout,
            )
            for future in pending:
                future.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DevServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _authenticate(self, request: web.Request) -> TokenClaims:
        token = bearer_token(
            request.headers.get("Authorization"), request.query.get("access_token")
        )
        if token is None:
            raise TokenError("missing token")
        return verify_token(token, self.config.api_key, self.config.api_secret)

    async def _handle_root(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="OK")

    async def _handle_validate(self, request: web.Request) -> web.StreamResponse:
        try:
            self._authenticate(request)
        except TokenError as exc:
            return web.Response(status=401, text=str(exc))
        return web.Response(text="success")

    async def _handle_rtc(self, request: web.Request) -> web.StreamResponse:
        try:
            claims = self._authenticate(request)
        except TokenError as exc:
            logger.info("refused connection: %s", exc)
            return web.Response(status=401, text=str(exc))
        try:
            details = parse_query(request.query, request.query.getall("capabilities", []))
        except ClientInfoError as exc:
            return web.Response(status=400, text=str(exc))
        return await self._upgrade(request, claims, details, None)

    async def _handle_rtc_v1(self, request: web.Request) -> web.StreamResponse:
        try:
            claims = self._authenticate(request)
        except TokenError as exc:
            logger.info("refused connection: %s", exc)
            return web.Response(status=401, text=str(exc))
        encoded = request.query.get("join_request")
        if not encoded:
            return web.Response(status=400, text="join_request is required on /rtc/v1")
        try:
            join_request = decode_join_request(encoded)
        except ClientInfoError as exc:
            return web.Response(status=400, text=str(exc))
        details = details_from_join_request(join_request)
        offer = join_request.publisher_offer if join_request.publisher_offer.sdp else None
        return await self._upgrade(request, claims, details, offer)

    async def _upgrade(
        self,
        request: web.Request,
        claims: TokenClaims,
        details: ClientDetails,
        initial_offer: proto_rtc.SessionDescription | None,
    ) -> web.StreamResponse:
        if self._closing:
            return web.Response(status=503, text="server shutting down")

        ws = web.WebSocketResponse(
            timeout=self.config.close_timeout,
            heartbeat=10.0,
            max_msg_size=self.config.max_signal_message_size,
        )
        if not ws.can_prepare(request).ok:
            return web.Response(status=404, text="not a websocket request")
        await ws.prepare(request)

        refusal = None
        if self._closing:
            refusal = messages.leave(models.DisconnectReason.SERVER_SHUTDOWN)
        elif details.reconnect:
            # No resume support: ask the client for a full rejoin.
            refusal = messages.leave(
                models.DisconnectReason.STATE_MISMATCH, proto_rtc.LeaveRequest.Action.RECONNECT
            )
        if refusal is not None:
            await ws.send_bytes(refusal.SerializeToString())
            await ws.close()
            return ws

        await self._serve(ws, claims, details, initial_offer)
        return ws

    async def _serve(
        self,
        ws: web.WebSocketResponse,
        claims: TokenClaims,
        details: ClientDetails,
        initial_offer: proto_rtc.SessionDescription | None,
    ) -> None:
        room = self._rooms.get(claims.room)
        if room is None:
            room = self._rooms[claims.room] = Room(claims.room, self._taps)
        client_protocol = self.config.client_protocol_overrides.get(
            claims.identity, details.client_protocol
        )
        participant = room.admit(claims, details, client_protocol=client_protocol)
        session = Session(
            ws,
            room,
            participant,
            self.config,
            single_pc=initial_offer is not None or details.single_pc,
            initial_offer=initial_offer,
        )
        self._sessions.add(session)
        logger.info(
            "%s joined %s as %s (client_protocol %d)",
            claims.identity,
            claims.room,
            participant.sid,
            client_protocol,
        )
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            logger.info("%s left %s", claims.identity, claims.room)
            if room.empty and self._rooms.get(claims.room) is room:
                del self._rooms[claims.room]
