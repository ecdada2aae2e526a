"""Participant bookkeeping, client info parsing and signal message builders (no I/O)."""

from __future__ import annotations

import base64
import gzip

import pytest
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from livekit_rpc.server import messages
from livekit_rpc.server.client_info import (
    ClientInfoError,
    decode_join_request,
    details_from_join_request,
    parse_capabilities,
    parse_query,
)
from livekit_rpc.server.config import ServerConfig
from livekit_rpc.server.state import RoomState

State = models.ParticipantInfo.State


def test_add_activate_update_remove_bumps_versions() -> None:
    room = RoomState("r1")
    alice = room.add(
        "alice",
        name="A",
        attributes={"x": "1", "y": "2"},
        client_protocol=2,
        capabilities=[1, 10001],
        can_update_own_metadata=True,
    )
    assert alice.sid.startswith("PA_") and alice.version == 1 and alice.state == State.JOINED
    info = alice.to_info()
    assert info.client_protocol == 2
    assert list(info.capabilities) == [1, 10001]
    assert info.permission.can_publish_data

    active = room.activate(alice.sid)
    assert active is not None and active.state == State.ACTIVE and active.version == 2
    assert room.activate(alice.sid) is None  # no change, no broadcast

    result = room.update_metadata(alice.sid, name="", metadata="m", attributes={"x": "", "z": "3"})
    assert result.allowed and result.info is not None
    assert result.info.name == "A" and result.info.metadata == "m"
    assert dict(result.info.attributes) == {"y": "2", "z": "3"}
    assert result.info.version == 3

    gone = room.remove(alice.sid, models.DisconnectReason.CLIENT_INITIATED)
    assert gone is not None and gone.state == State.DISCONNECTED and gone.version == 4
    assert gone.disconnect_reason == models.DisconnectReason.CLIENT_INITIATED
    assert room.remove(alice.sid, 0) is None
    assert len(room) == 0


def test_metadata_update_needs_permission() -> None:
    room = RoomState("r1")
    bob = room.add("bob")
    result = room.update_metadata(bob.sid, metadata="m")
    assert not result.allowed and result.info is None
    assert bob.version == 1 and bob.metadata == ""


def test_identities_are_unique() -> None:
    room = RoomState("r1")
    room.add("alice")
    with pytest.raises(ValueError):
        room.add("alice")
    assert room.by_identity("alice") is not None
    assert room.by_identity("nobody") is None


def test_room_proto() -> None:
    room = RoomState("r1")
    room.add("a")
    proto = room.to_proto()
    assert proto.name == "r1" and proto.sid.startswith("RM_") and proto.num_participants == 1


def test_parse_query() -> None:
    details = parse_query(
        {"client_protocol": "2", "protocol": "18", "sdk": "python", "reconnect": "1"},
        ["CAP_PACKET_TRAILER,CAP_COMPRESSION_DEFLATE_RAW", "10001"],
    )
    assert details.client_protocol == 2 and details.protocol == 18
    assert details.capabilities == (1, 2, 10001)
    assert details.sdk == "python" and details.reconnect
    assert parse_query({}).client_protocol == 0
    with pytest.raises(ClientInfoError):
        parse_query({"client_protocol": "two"})


def test_parse_capabilities_skips_unknown_names_and_duplicates() -> None:
    assert parse_capabilities(["CAP_NOPE, 2 ,2", ""]) == (2,)


def _encode(request: proto_rtc.JoinRequest, gzipped: bool) -> str:
    inner = request.SerializeToString()
    wrapped = proto_rtc.WrappedJoinRequest(
        compression=proto_rtc.WrappedJoinRequest.Compression.GZIP
        if gzipped
        else proto_rtc.WrappedJoinRequest.Compression.NONE,
        join_request=gzip.compress(inner) if gzipped else inner,
    )
    return base64.urlsafe_b64encode(wrapped.SerializeToString()).decode().rstrip("=")


@pytest.mark.parametrize("gzipped", [True, False])
def test_decode_join_request(gzipped: bool) -> None:
    request = proto_rtc.JoinRequest(
        client_info=models.ClientInfo(
            sdk=models.ClientInfo.SDK.JS, client_protocol=2, protocol=17, version="2.23.0"
        ),
        reconnect=False,
    )
    request.client_info.capabilities.extend([2, 10001])  # type: ignore[list-item]
    decoded = decode_join_request(_encode(request, gzipped))
    assert decoded == request
    details = details_from_join_request(decoded)
    assert details.client_protocol == 2 and details.capabilities == (2, 10001)
    assert details.sdk == "JS" and details.protocol == 17


def test_decode_join_request_rejects_garbage() -> None:
    with pytest.raises(ClientInfoError):
        decode_join_request("!!!")
    bad_gzip = proto_rtc.WrappedJoinRequest(
        compression=proto_rtc.WrappedJoinRequest.Compression.GZIP, join_request=b"nope"
    )
    with pytest.raises(ClientInfoError):
        decode_join_request(base64.urlsafe_b64encode(bad_gzip.SerializeToString()).decode())


def test_join_response_fields() -> None:
    room = RoomState("r1")
    me = room.add("me", client_protocol=2)
    other = room.add("other")
    response = messages.join_response(room.to_proto(), me.to_info(), [other.to_info()])
    join = response.join
    assert join.server_version == join.server_info.version == "1.9.0"
    assert join.ping_interval == 5 and join.ping_timeout == 15
    assert not join.subscriber_primary
    assert len(join.ice_servers) == 0
    assert [p.identity for p in join.other_participants] == ["other"]


def test_small_builders() -> None:
    assert messages.answer("sdp", 3).answer.id == 3
    leave = messages.leave(
        models.DisconnectReason.STATE_MISMATCH, proto_rtc.LeaveRequest.Action.RECONNECT
    ).leave
    assert leave.can_reconnect and leave.action == proto_rtc.LeaveRequest.Action.RECONNECT
    assert not messages.leave(models.DisconnectReason.SERVER_SHUTDOWN).leave.can_reconnect
    pong = messages.pong_resp(proto_rtc.Ping(timestamp=42)).pong_resp
    assert pong.last_ping_timestamp == 42 and pong.timestamp > 0
    rr = messages.request_response(9, proto_rtc.RequestResponse.Reason.OK).request_response
    assert rr.request_id == 9


def test_server_config_candidate_hosts() -> None:
    assert ServerConfig().candidate_hosts() == ("127.0.0.1",)
    assert ServerConfig(host="0.0.0.0").candidate_hosts() is None
    assert ServerConfig(rtc_hosts=("10.0.0.1",)).candidate_hosts() == ("10.0.0.1",)
    assert ServerConfig().port == 7880
    assert (ServerConfig().api_key, ServerConfig().api_secret) == ("devkey", "secret")
    with pytest.raises(ValueError):
        ServerConfig(rtc_hosts=("nope",))
    with pytest.raises(ValueError):
        ServerConfig(pc_connect_timeout=0)
