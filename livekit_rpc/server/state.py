"""Room and participant bookkeeping, without I/O.

:class:`RoomState` holds the participants of one room and turns joins, activations, metadata
updates and departures into the ``ParticipantInfo`` snapshots to broadcast. Every change bumps
the participant's ``version``, which clients use to discard stale updates.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from livekit.protocol import models

__all__ = ["ClientDetails", "Participant", "RoomState", "new_sid"]

State = models.ParticipantInfo.State
_ACTIVE = State.ACTIVE  # read per forwarded packet: protobuf enum attributes are slow
_SID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_sid(prefix: str) -> str:
    """A random identifier in LiveKit's style, e.g. ``PA_k3J9...`` (prefix plus 12 chars)."""
    return prefix + "".join(secrets.choice(_SID_ALPHABET) for _ in range(12))


@dataclass(frozen=True)
class ClientDetails:
    """What a client said about itself when connecting."""

    client_protocol: int = 0
    """Client protocol (0: legacy, 1: RPC v2, 2: data streams v2)."""
    capabilities: tuple[int, ...] = ()
    """Capability values, kept as raw integers so unknown ones survive."""
    protocol: int = 0
    """Signalling protocol version."""
    sdk: str = ""
    version: str = ""
    reconnect: bool = False
    """The client asked to resume a previous session."""
    single_pc: bool = False
    """The client connected on the single-peer-connection path (``/rtc/v1``)."""


@dataclass
class Participant:
    """One participant of a room and everything the server reports about it."""

    sid: str
    identity: str
    name: str = ""
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    kind: int = models.ParticipantInfo.Kind.STANDARD
    state: int = State.JOINED
    version: int = 1
    joined_at_ms: int = 0
    client_protocol: int = 0
    capabilities: tuple[int, ...] = ()
    can_publish_data: bool = True
    can_update_own_metadata: bool = False
    disconnect_reason: int = models.DisconnectReason.UNKNOWN_REASON

    @property
    def active(self) -> bool:
        """Whether the participant's peer connection is up."""
        return self.state == _ACTIVE

    def to_info(self) -> models.ParticipantInfo:
        """A ``ParticipantInfo`` snapshot of the current state."""
        info = models.ParticipantInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            metadata=self.metadata,
            state=self.state,  # type: ignore[arg-type]
            version=self.version,
            joined_at=self.joined_at_ms // 1000,
            joined_at_ms=self.joined_at_ms,
            kind=self.kind,  # type: ignore[arg-type]
            client_protocol=self.client_protocol,
            permission=models.ParticipantPermission(
                can_subscribe=True,
                can_publish=True,
                can_publish_data=self.can_publish_data,
                can_update_metadata=self.can_update_own_metadata,
            ),
            disconnect_reason=self.disconnect_reason,  # type: ignore[arg-type]
        )
        info.attributes.update(self.attributes)
        # Capabilities is an open enum: append raw integers so unknown values survive.
        info.capabilities.extend(self.capabilities)  # type: ignore[arg-type]
        return info


@dataclass(frozen=True)
class MetadataResult:
    """Outcome of :meth:`RoomState.update_metadata`."""

    allowed: bool
    info: models.ParticipantInfo | None


class RoomState:
    """The participants of one room, keyed by sid."""

    def __init__(self, name: str, sid: str | None = None) -> None:
        self.name = name
        self.sid = sid or new_sid("RM_")
        self.created_at = int(time.time())
        self._participants: dict[str, Participant] = {}

    def __iter__(self) -> Iterator[Participant]:
        return iter(list(self._participants.values()))

    def __len__(self) -> int:
        return len(self._participants)

    def get(self, sid: str) -> Participant | None:
        """The participant with ``sid``, if present."""
        return self._participants.get(sid)

    def by_identity(self, identity: str) -> Participant | None:
        """The participant with ``identity``, if present."""
        for participant in self._participants.values():
            if participant.identity == identity:
                return participant
        return None

    def to_proto(self) -> models.Room:
        """A ``Room`` snapshot."""
        return models.Room(
            sid=self.sid,
            name=self.name,
            creation_time=self.created_at,
            creation_time_ms=self.created_at * 1000,
            num_participants=len(self._participants),
        )

    def add(
        self,
        identity: str,
        *,
        name: str = "",
        metadata: str = "",
        attributes: Mapping[str, str] | None = None,
        client_protocol: int = 0,
        capabilities: Sequence[int] = (),
        can_publish_data: bool = True,
        can_update_own_metadata: bool = False,
        kind: int = models.ParticipantInfo.Kind.STANDARD,
    ) -> Participant:
        """Admit a new participant in state ``JOINED`` with version 1.

        :raises ValueError: if ``identity`` is already present (remove it first).
        """
        if self.by_identity(identity) is not None:
            raise ValueError(f"identity {identity!r} already in room")
        participant = Participant(
            sid=new_sid("PA_"),
            identity=identity,
            name=name,
            metadata=metadata,
            attributes=dict(attributes or {}),
            kind=kind,
            joined_at_ms=int(time.time() * 1000),
            client_protocol=client_protocol,
            capabilities=tuple(capabilities),
            can_publish_data=can_publish_data,
            can_update_own_metadata=can_update_own_metadata,
        )
        self._participants[participant.sid] = participant
        return participant

    def others(self, sid: str) -> list[Participant]:
        """Everyone except the participant with ``sid``."""
        return [p for p in self._participants.values() if p.sid != sid]

    def activate(self, sid: str) -> models.ParticipantInfo | None:
        """Mark ``sid`` ACTIVE; returns the new info, or ``None`` if absent or already active."""
        participant = self._participants.get(sid)
        if participant is None or participant.state == State.ACTIVE:
            return None
        participant.state = State.ACTIVE
        participant.version += 1
        return participant.to_info()

    def update_metadata(
        self,
        sid: str,
        *,
        name: str = "",
        metadata: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> MetadataResult:
        """Apply a participant's own metadata update.

        Non-empty ``name`` and ``metadata`` replace the old values; ``attributes`` are merged,
        an empty value deleting the key. Refused without ``canUpdateOwnMetadata``.
        """
        participant = self._participants.get(sid)
        if participant is None:
            return MetadataResult(allowed=False, info=None)
        if not participant.can_update_own_metadata:
            return MetadataResult(allowed=False, info=None)
        if name:
            participant.name = name
        if metadata:
            participant.metadata = metadata
        for key, value in (attributes or {}).items():
            if value:
                participant.attributes[key] = value
            else:
                participant.attributes.pop(key, None)
        participant.version += 1
        return MetadataResult(allowed=True, info=participant.to_info())

    def remove(self, sid: str, reason: int) -> models.ParticipantInfo | None:
        """Remove ``sid``; returns its final DISCONNECTED info, or ``None`` if absent."""
        participant = self._participants.pop(sid, None)
        if participant is None:
            return None
        participant.state = State.DISCONNECTED
        participant.disconnect_reason = reason
        participant.version += 1
        return participant.to_info()
