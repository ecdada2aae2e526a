"""Data forwarding decisions: stamping, routing, permissions."""

from __future__ import annotations

from livekit.protocol import models

from livekit_rpc.server.forwarding import (
    LOSSY_LABEL,
    RELIABLE_LABEL,
    Drop,
    Forward,
    Peer,
    Sender,
    route_data_message,
)

ALICE = Sender("PA_alice", "alice")
PEERS = [
    Peer("PA_alice", "alice"),
    Peer("PA_bob", "bob"),
    Peer("PA_carol", "carol"),
    Peer("PA_dave", "dave", active=False),
]


def _route(packet: models.DataPacket, label: str = RELIABLE_LABEL, sender: Sender = ALICE):
    return route_data_message(packet.SerializeToString(), label, sender, PEERS)


def _forward(packet: models.DataPacket, label: str = RELIABLE_LABEL) -> Forward:
    result = _route(packet, label)
    assert isinstance(result, Forward), result
    return result


def test_broadcast_reaches_everyone_but_the_sender() -> None:
    result = _forward(models.DataPacket(user=models.UserPacket(payload=b"hi")))
    assert set(result.recipients) == {"PA_bob", "PA_carol", "PA_dave"}
    assert result.label == RELIABLE_LABEL


def test_sender_never_receives_its_own_packet() -> None:
    packet = models.DataPacket(destination_identities=["alice", "bob"])
    packet.rpc_ack.request_id = "r"
    assert _forward(packet).recipients == ("PA_bob",)
    only_self = models.DataPacket(destination_identities=["alice"])
    only_self.rpc_ack.request_id = "r"
    assert isinstance(_route(only_self), Drop)


def test_sender_identity_and_sid_are_overwritten() -> None:
    packet = models.DataPacket(
        participant_identity="mallory",
        participant_sid="PA_fake",
        user=models.UserPacket(
            payload=b"x", participant_identity="mallory", participant_sid="PA_fake"
        ),
    )
    result = _forward(packet)
    stamped = models.DataPacket.FromString(result.payload)
    assert stamped.participant_identity == "alice"
    assert stamped.participant_sid == "PA_alice"
    assert stamped.user.participant_identity == "alice"
    assert stamped.user.participant_sid == "PA_alice"
    assert result.packet == stamped


def test_destination_identities_route_and_are_kept() -> None:
    packet = models.DataPacket(destination_identities=["carol"], sequence=7)
    packet.stream_chunk.stream_id = "s"
    result = _forward(packet)
    assert result.recipients == ("PA_carol",)
    stamped = models.DataPacket.FromString(result.payload)
    assert list(stamped.destination_identities) == ["carol"]
    assert stamped.sequence == 7
    assert stamped.stream_chunk.stream_id == "s"


def test_unknown_destination_goes_nowhere() -> None:
    packet = models.DataPacket(destination_identities=["nobody"])
    packet.rpc_request.id = "r"
    result = _route(packet)
    assert isinstance(result, Drop)


def test_user_packet_destinations_are_reconciled() -> None:
    inner_only = models.DataPacket(
        user=models.UserPacket(payload=b"x", destination_identities=["bob"])
    )
    result = _forward(inner_only)
    assert result.recipients == ("PA_bob",)
    assert list(models.DataPacket.FromString(result.payload).destination_identities) == ["bob"]

    both = models.DataPacket(
        destination_identities=["carol"],
        user=models.UserPacket(payload=b"x", destination_identities=["bob"]),
    )
    result = _forward(both)
    assert result.recipients == ("PA_carol",)
    assert list(models.DataPacket.FromString(result.payload).user.destination_identities) == [
        "carol"
    ]


def test_legacy_destination_sids() -> None:
    packet = models.DataPacket(user=models.UserPacket(payload=b"x", destination_sids=["PA_carol"]))
    assert _forward(packet).recipients == ("PA_carol",)


def test_kind_follows_the_channel() -> None:
    packet = models.DataPacket(kind=models.DataPacket.Kind.RELIABLE, user=models.UserPacket())
    result = _forward(packet, LOSSY_LABEL)
    assert result.label == LOSSY_LABEL
    assert models.DataPacket.FromString(result.payload).kind == models.DataPacket.Kind.LOSSY
    packet = models.DataPacket(kind=models.DataPacket.Kind.LOSSY, user=models.UserPacket())
    result = _forward(packet, RELIABLE_LABEL)
    assert models.DataPacket.FromString(result.payload).kind == models.DataPacket.Kind.RELIABLE


def test_lossy_only_to_active_participants() -> None:
    result = _forward(models.DataPacket(user=models.UserPacket(payload=b"x")), LOSSY_LABEL)
    assert set(result.recipients) == {"PA_bob", "PA_carol"}


def test_sender_without_can_publish_data_is_dropped() -> None:
    muted = Sender("PA_alice", "alice", can_publish_data=False)
    result = _route(models.DataPacket(user=models.UserPacket(payload=b"x")), sender=muted)
    assert isinstance(result, Drop)
    assert "canPublishData" in result.reason


def test_text_garbage_and_other_channels_are_dropped() -> None:
    assert isinstance(route_data_message("text", RELIABLE_LABEL, ALICE, PEERS), Drop)
    assert isinstance(route_data_message(b"\xff\xff\xff", RELIABLE_LABEL, ALICE, PEERS), Drop)
    good = models.DataPacket(user=models.UserPacket()).SerializeToString()
    assert isinstance(route_data_message(good, "_data_track", ALICE, PEERS), Drop)
    assert isinstance(route_data_message(good, "custom", ALICE, PEERS), Drop)


def test_alone_in_room_is_dropped() -> None:
    packet = models.DataPacket(user=models.UserPacket(payload=b"x"))
    result = route_data_message(packet.SerializeToString(), RELIABLE_LABEL, ALICE, PEERS[:1])
    assert isinstance(result, Drop)


def test_unknown_fields_survive_forwarding() -> None:
    # Field 1000, varint 5: not in the schema, must still reach the recipient.
    raw = models.DataPacket(destination_identities=["bob"]).SerializeToString() + b"\xc0\x3e\x05"
    result = route_data_message(raw, RELIABLE_LABEL, ALICE, PEERS)
    assert isinstance(result, Forward)
    assert result.payload.endswith(b"\xc0\x3e\x05") or b"\xc0\x3e\x05" in result.payload
