"""Builders for the ``SignalResponse`` messages the server sends (sans-I/O)."""

from __future__ import annotations

import time
from collections.abc import Iterable

from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

__all__ = [
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "SERVER_VERSION",
    "answer",
    "join_response",
    "leave",
    "pong",
    "pong_resp",
    "request_response",
    "update",
]

SERVER_VERSION = "1.9.0"
"""Version reported to clients. Must be semver and at least 1.8.0, or clients refuse RPC."""
SERVER_PROTOCOL = 16
"""Signalling protocol version reported in ``ServerInfo``."""
PING_INTERVAL = 5
"""Seconds between client pings. Must not be 0: some clients crash on it."""
PING_TIMEOUT = 15
"""Seconds of signalling silence after which clients give up. Must not be 0."""


def now_ms() -> int:
    """The current time in Unix milliseconds."""
    return int(time.time() * 1000)


def join_response(
    room: models.Room,
    participant: models.ParticipantInfo,
    others: Iterable[models.ParticipantInfo],
    *,
    node_id: str = "",
) -> proto_rtc.SignalResponse:
    """The first message of every session.

    One peer connection, offered by the client (``subscriber_primary`` false), no ICE servers.
    """
    join = proto_rtc.JoinResponse(
        room=room,
        participant=participant,
        other_participants=list(others),
        server_version=SERVER_VERSION,
        subscriber_primary=False,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        server_info=models.ServerInfo(
            edition=models.ServerInfo.Edition.Standard,
            version=SERVER_VERSION,
            protocol=SERVER_PROTOCOL,
            node_id=node_id,
        ),
    )
    # ice_servers stays empty: no STUN or TURN, clients use host candidates only.
    return proto_rtc.SignalResponse(join=join)


def update(infos: Iterable[models.ParticipantInfo]) -> proto_rtc.SignalResponse:
    """A participant update carrying full ``ParticipantInfo`` snapshots."""
    return proto_rtc.SignalResponse(
        update=proto_rtc.ParticipantUpdate(participants=list(infos)),
    )


def answer(sdp: str, offer_id: int) -> proto_rtc.SignalResponse:
    """An SDP answer echoing the id of the offer it answers."""
    return proto_rtc.SignalResponse(
        answer=proto_rtc.SessionDescription(type="answer", sdp=sdp, id=offer_id),
    )


def leave(
    reason: int, action: int = proto_rtc.LeaveRequest.Action.DISCONNECT
) -> proto_rtc.SignalResponse:
    """Tell the client to leave (``DISCONNECT``) or to rejoin from scratch (``RECONNECT``)."""
    return proto_rtc.SignalResponse(
        leave=proto_rtc.LeaveRequest(
            reason=reason,  # type: ignore[arg-type]
            action=action,  # type: ignore[arg-type]
            can_reconnect=action != proto_rtc.LeaveRequest.Action.DISCONNECT,
        ),
    )


def pong(_client_timestamp: int) -> proto_rtc.SignalResponse:
    """Answer to the legacy ``ping``: the server time."""
    return proto_rtc.SignalResponse(pong=now_ms())


def pong_resp(ping: proto_rtc.Ping) -> proto_rtc.SignalResponse:
    """Answer to ``ping_req``: echo its timestamp and add the server time."""
    return proto_rtc.SignalResponse(
        pong_resp=proto_rtc.Pong(last_ping_timestamp=ping.timestamp, timestamp=now_ms()),
    )


def request_response(request_id: int, reason: int, message: str = "") -> proto_rtc.SignalResponse:
    """Outcome of a client request that carried a ``request_id``."""
    return proto_rtc.SignalResponse(
        request_response=proto_rtc.RequestResponse(
            request_id=request_id,
            reason=reason,  # type: ignore[arg-type]
            message=message,
        ),
    )
