"""Decide what happens to a data-channel message a participant sent to the server.

Sans-I/O: :func:`route_data_message` takes the raw message, the label of the channel it came on,
the sender and the other participants, and returns either a :class:`Forward` (the stamped bytes
and the sids to deliver them to, on the channel with the same label) or a :class:`Drop` with the
reason. Delivering the bytes is the caller's job.

Rules:

* Only binary messages on ``_reliable`` and ``_lossy`` are forwarded; each is one
  ``DataPacket``. The channel decides the kind, whatever the packet says.
* A sender without the ``canPublishData`` grant is dropped.
* The sender's identity and sid are written into the packet (and into a ``user`` payload),
  overwriting whatever the sender claimed.
* For ``user`` payloads the destination lists are reconciled: a non-empty top-level
  ``destination_identities`` wins, otherwise the user packet's list is copied up.
* With destinations (identities, or the legacy ``user.destination_sids``), only participants
  matching one of them receive the packet; without, everyone does. The sender never does.
* Lossy packets go only to participants whose connection is active.
* Nothing else is changed or stripped; ``sequence`` is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from livekit.protocol import models

__all__ = [
    "LOSSY_LABEL",
    "RELIABLE_LABEL",
    "Drop",
    "Forward",
    "Peer",
    "Sender",
    "route_data_message",
]

RELIABLE_LABEL = "_reliable"
"""Label of the ordered, reliable data channel."""
LOSSY_LABEL = "_lossy"
"""Label of the unordered, unreliable data channel."""

_LOSSY = models.DataPacket.Kind.LOSSY  # read per packet: protobuf enum attributes are slow
_KIND_BY_LABEL = {
    RELIABLE_LABEL: models.DataPacket.Kind.RELIABLE,
    LOSSY_LABEL: _LOSSY,
}


@dataclass(frozen=True)
class Sender:
    """The participant a message came from."""

    sid: str
    identity: str
    can_publish_data: bool = True


@dataclass(frozen=True)
class Peer:
    """A participant that might receive a message."""

    sid: str
    identity: str
    active: bool = True


@dataclass(frozen=True)
class Forward:
    """Deliver ``payload`` on the ``label`` channel of each participant in ``recipients``."""

    label: str
    payload: bytes
    recipients: tuple[str, ...]
    packet: models.DataPacket


@dataclass(frozen=True)
class Drop:
    """The message is not forwarded, for ``reason``."""

    reason: str


def route_data_message(
    message: bytes | str,
    label: str,
    sender: Sender,
    peers: Iterable[Peer],
) -> Forward | Drop:
    """Stamp a data-channel message from ``sender`` and pick its recipients among ``peers``.

    ``peers`` may include the sender; it is skipped.
    """
    if isinstance(message, str):
        return Drop("text message")
    kind = _KIND_BY_LABEL.get(label)
    if kind is None:
        return Drop(f"channel {label!r} is not forwarded")
    if not sender.can_publish_data:
        return Drop("sender lacks canPublishData")
    packet = models.DataPacket()
    try:
        packet.ParseFromString(message)
    except DecodeError:
        return Drop("not a DataPacket")

    packet.kind = kind
    packet.participant_identity = sender.identity
    packet.participant_sid = sender.sid
    destination_sids: set[str] = set()
    if packet.HasField("user"):
        user = packet.user
        user.participant_identity = sender.identity
        user.participant_sid = sender.sid
        if packet.destination_identities:
            del user.destination_identities[:]
            user.destination_identities.extend(packet.destination_identities)
        elif user.destination_identities:
            packet.destination_identities.extend(user.destination_identities)
        destination_sids.update(user.destination_sids)
    destination_identities = set(packet.destination_identities)
    targeted = bool(destination_identities or destination_sids)

    recipients = []
    for peer in peers:
        if peer.sid == sender.sid:
            continue
        if kind == _LOSSY and not peer.active:
            continue
        if targeted and not (
            peer.identity in destination_identities or peer.sid in destination_sids
        ):
            continue
        recipients.append(peer.sid)
    if not recipients:
        return Drop("no recipients")
    return Forward(
        label=label,
        payload=packet.SerializeToString(),
        recipients=tuple(recipients),
        packet=packet,
    )
