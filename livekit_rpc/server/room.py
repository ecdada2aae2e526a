"""A live room: the sessions of its participants and the traffic between them.

:class:`Room` wires the pure pieces (:class:`~.state.RoomState`,
:func:`~.forwarding.route_data_message`) to the sessions that do the I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from . import messages
from .auth import TokenClaims
from .forwarding import Drop, Forward, Peer, Sender, route_data_message
from .state import ClientDetails, Participant, RoomState

if TYPE_CHECKING:
    from .session import Session

__all__ = ["DataTap", "Room"]

DataTap = Callable[[str, Forward], None]
"""Observer of forwarded data: called with the room name and the forwarding decision."""

logger = logging.getLogger(__name__)


class Room:
    """Participants of one room and their sessions."""

    def __init__(self, name: str, taps: Sequence[DataTap] = ()) -> None:
        self.state = RoomState(name)
        self._sessions: dict[str, Session] = {}
        self._taps = taps

    @property
    def name(self) -> str:
        """The room name (from the participants' tokens)."""
        return self.state.name

    @property
    def empty(self) -> bool:
        """Whether nobody is in the room."""
        return not self._sessions

    def sessions(self) -> list[Session]:
        """A snapshot of the current sessions."""
        return list(self._sessions.values())

    def admit(
        self,
        claims: TokenClaims,
        details: ClientDetails,
        *,
        client_protocol: int,
    ) -> Participant:
        """Add a participant, first removing any participant with the same identity.

        The previous holder of the identity is told to leave (``DUPLICATE_IDENTITY``).
        """
        existing = self.state.by_identity(claims.identity)
        if existing is not None:
            old = self._sessions.get(existing.sid)
            self.remove(existing.sid, models.DisconnectReason.DUPLICATE_IDENTITY)
            if old is not None:
                old.disconnect(models.DisconnectReason.DUPLICATE_IDENTITY)
        return self.state.add(
            claims.identity,
            name=claims.name,
            metadata=claims.metadata,
            attributes=claims.attributes,
            client_protocol=client_protocol,
            capabilities=details.capabilities,
            can_publish_data=claims.can_publish_data,
            can_update_own_metadata=claims.can_update_own_metadata,
            kind=_participant_kind(claims.kind),
        )

    def attach(self, session: Session) -> None:
        """Register ``session`` for its admitted participant, send it the join response and
        announce the participant to everyone else."""
        participant = session.participant
        self._sessions[participant.sid] = session
        others = [p.to_info() for p in self.state.others(participant.sid)]
        session.send(messages.join_response(self.state.to_proto(), participant.to_info(), others))
        self.broadcast(messages.update([participant.to_info()]), exclude=participant.sid)

    def broadcast(self, response: proto_rtc.SignalResponse, *, exclude: str | None = None) -> None:
        """Send ``response`` to every session except ``exclude``."""
        for sid, session in list(self._sessions.items()):
            if sid != exclude:
                session.send(response)

    def activate(self, sid: str) -> None:
        """The participant's peer connection is up: mark it ACTIVE and tell everyone."""
        info = self.state.activate(sid)
        if info is not None:
            self.broadcast(messages.update([info]))

    def update_metadata(self, sid: str, request: proto_rtc.UpdateParticipantMetadata) -> None:
        """Apply a participant's own name/metadata/attribute change and answer it."""
        session = self._sessions.get(sid)
        result = self.state.update_metadata(
            sid,
            name=request.name,
            metadata=request.metadata,
            attributes=dict(request.attributes),
        )
        if result.info is not None:
            self.broadcast(messages.update([result.info]))
        if session is not None:
            reason = (
                proto_rtc.RequestResponse.Reason.OK
                if result.allowed
                else proto_rtc.RequestResponse.Reason.NOT_ALLOWED
            )
            session.send(messages.request_response(request.request_id, reason))

    def remove(self, sid: str, reason: int) -> None:
        """Remove a participant (idempotent) and announce its departure to the others."""
        self._sessions.pop(sid, None)
        info = self.state.remove(sid, reason)
        if info is not None:
            self.broadcast(messages.update([info]))

    def forward(self, sender_sid: str, label: str, message: bytes | str) -> None:
        """Route one data-channel message from ``sender_sid`` to its recipients."""
        sender = self.state.get(sender_sid)
        if sender is None:
            return
        peers = [Peer(p.sid, p.identity, p.active) for p in self.state]
        decision = route_data_message(
            message,
            label,
            Sender(sender.sid, sender.identity, sender.can_publish_data),
            peers,
        )
        if isinstance(decision, Drop):
            logger.debug("data from %s dropped: %s", sender.identity, decision.reason)
            return
        for tap in self._taps:
            try:
                tap(self.name, decision)
            except Exception:
                logger.exception("data tap failed")
        for sid in decision.recipients:
            session = self._sessions.get(sid)
            if session is not None:
                session.send_data(decision.label, decision.payload)


def _participant_kind(kind: str) -> int:
    names = {name.lower(): value for name, value in models.ParticipantInfo.Kind.items()}
    return names.get(kind.lower(), models.ParticipantInfo.Kind.STANDARD)
