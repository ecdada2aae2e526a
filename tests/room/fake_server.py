"""A scripted signalling server for one client, for the paths the dev server does not take.

It answers like a LiveKit server in **subscriber-primary** mode: after the join it offers a
subscriber peer connection carrying its own ``_reliable`` and ``_lossy`` channels, and trickles
that connection's candidates separately (JSON ``RTCIceCandidateInit``, ``final`` on the last)
instead of leaving them in the SDP. It answers the client's publisher offer, echoes every data
packet back as if sent by a participant ``echo``, answers pings and metadata updates, and can be
told to misbehave (no join, a wrong first message, silence) or to send ``leave``.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import jwt
from aiohttp import web
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from livekit_rpc import ice

ECHO = models.ParticipantInfo(
    sid="PA_echo",
    identity="echo",
    state=models.ParticipantInfo.State.ACTIVE,
    version=1,
    client_protocol=2,
)


class FakeServer:
    """See the module docstring. ``first_message``: ``"join"``, ``"none"`` or ``"update"``."""

    def __init__(
        self,
        *,
        subscriber_primary: bool = True,
        first_message: str = "join",
        ping_interval: int = 5,
        ping_timeout: int = 15,
        answer_pings: bool = True,
    ) -> None:
        self.subscriber_primary = subscriber_primary
        self.first_message = first_message
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.answer_pings = answer_pings
        self.requests: list[proto_rtc.SignalRequest] = []
        self.query: dict[str, str] = {}
        self.headers: dict[str, str] = {}
        self.ws: web.WebSocketResponse | None = None
        self.subscriber: RTCPeerConnection | None = None
        self.publisher: RTCPeerConnection | None = None
        self.sub_channels: dict[str, Any] = {}
        self.pub_channels: dict[str, Any] = {}
        self.received: list[models.DataPacket] = []
        self.pings = 0
        self._sequence = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FakeServer:
        app = web.Application()
        app.add_routes([web.get("/rtc", self._handle)])
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pc in (self.subscriber, self.publisher):
            if pc is not None:
                await pc.close()
        if self.ws is not None:
            await self.ws.close()
        assert self._runner is not None
        await self._runner.cleanup()

    async def send(self, response: proto_rtc.SignalResponse) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(response.SerializeToString())

    async def leave(self, reason: int) -> None:
        """Send ``leave{reason, DISCONNECT}`` and close the socket."""
        await self.send(
            proto_rtc.SignalResponse(
                leave=proto_rtc.LeaveRequest(
                    reason=reason,  # type: ignore[arg-type]
                    action=proto_rtc.LeaveRequest.Action.DISCONNECT,
                )
            )
        )
        assert self.ws is not None
        await self.ws.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.query = dict(request.query)
        self.headers = dict(request.headers)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws = ws
        token = request.query.get("access_token", "")
        identity = jwt.decode(token, options={"verify_signature": False})["sub"]
        if self.first_message == "none":
            async for _ in ws:  # say nothing until the client gives up
                pass
            return ws
        if self.first_message == "update":
            await self.send(
                proto_rtc.SignalResponse(update=proto_rtc.ParticipantUpdate(participants=[ECHO]))
            )
        me = models.ParticipantInfo(
            sid="PA_me",
            identity=identity,
            state=models.ParticipantInfo.State.JOINED,
            version=1,
            client_protocol=int(request.query.get("client_protocol", "0")),
        )
        join = proto_rtc.JoinResponse(
            room=models.Room(sid="RM_fake", name="fake"),
            participant=me,
            other_participants=[ECHO],
            server_version="1.9.0",
            server_info=models.ServerInfo(version="1.9.0", protocol=16),
            subscriber_primary=self.subscriber_primary,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
        )
        await self.send(proto_rtc.SignalResponse(join=join))
        if self.subscriber_primary:
            await self._offer_subscriber()
        async for msg in ws:
            if msg.type != web.WSMsgType.BINARY:
                continue
            req = proto_rtc.SignalRequest()
            req.ParseFromString(msg.data)
            self.requests.append(req)
            await self._on_request(req)
        return ws

    async def _offer_subscriber(self) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.subscriber = pc
        for label, kwargs in (
            ("_reliable", {}),
            ("_lossy", {"ordered": False, "maxRetransmits": 0}),
        ):
            self.sub_channels[label] = pc.createDataChannel(label, **kwargs)
        with ice.use_host_addresses(["127.0.0.1"]):
            await pc.setLocalDescription(await pc.createOffer())
        lines = pc.localDescription.sdp.splitlines()
        candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
        sdp = "\r\n".join(
            line
            for line in lines
            if not line.startswith("a=candidate:") and line != "a=end-of-candidates"
        )
        await self.send(
            proto_rtc.SignalResponse(
                offer=proto_rtc.SessionDescription(type="offer", sdp=sdp + "\r\n", id=1)
            )
        )
        for index, candidate in enumerate(candidates):
            init = {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0}
            await self.send(
                proto_rtc.SignalResponse(
                    trickle=proto_rtc.TrickleRequest(
                        candidateInit=json.dumps(init),
                        target=proto_rtc.SignalTarget.SUBSCRIBER,
                        final=index == len(candidates) - 1,
                    )
                )
            )

    async def _on_request(self, req: proto_rtc.SignalRequest) -> None:
        which = req.WhichOneof("message")
        if which == "answer":
            assert self.subscriber is not None and req.answer.id == 1
            await self.subscriber.setRemoteDescription(
                RTCSessionDescription(sdp=req.answer.sdp, type="answer")
            )
        elif which == "offer":
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.publisher = pc
            pc.on("datachannel", self._on_pub_channel)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=req.offer.sdp, type="offer"))
            with ice.use_host_addresses(["127.0.0.1"]):
                await pc.setLocalDescription(await pc.createAnswer())
            await self.send(
                proto_rtc.SignalResponse(
                    answer=proto_rtc.SessionDescription(
                        type="answer", sdp=pc.localDescription.sdp, id=req.offer.id
                    )
                )
            )
        elif which == "ping_req":
            self.pings += 1
            if self.answer_pings:
                await self.send(
                    proto_rtc.SignalResponse(
                        pong_resp=proto_rtc.Pong(
                            last_ping_timestamp=req.ping_req.timestamp,
                            timestamp=int(time.time() * 1000),
                        )
                    )
                )
        elif which == "update_metadata":
            await self.send(
                proto_rtc.SignalResponse(
                    request_response=proto_rtc.RequestResponse(
                        request_id=req.update_metadata.request_id,
                        reason=proto_rtc.RequestResponse.Reason.OK,
                    )
                )
            )
        elif which == "leave":
            assert self.ws is not None
            await self.ws.close()

    def _on_pub_channel(self, channel: Any) -> None:
        self.pub_channels[channel.label] = channel

        def on_message(message: bytes | str) -> None:
            assert isinstance(message, bytes)
            packet = models.DataPacket()
            packet.ParseFromString(message)
            self.received.append(packet)
            packet.participant_identity = "echo"
            packet.participant_sid = "PA_echo"
            if packet.HasField("user"):
                packet.user.participant_identity = "echo"
            packet.destination_identities[:] = []
            out = self.sub_channels if self.subscriber_primary else self.pub_channels
            target = out.get(channel.label)
            if target is not None and target.readyState == "open":
                target.send(packet.SerializeToString())
                if channel.label == "_reliable" and packet.sequence:
                    # A duplicate, as a resuming server might replay: the client must drop it.
                    with contextlib.suppress(Exception):
                        target.send(packet.SerializeToString())

        channel.on("message", on_message)
