"""Settings of the dev room server."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .. import ice
from .auth import DEV_API_KEY, DEV_API_SECRET

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServerConfig"]

DEFAULT_HOST = "127.0.0.1"
"""Bind address by default: loopback only."""
DEFAULT_PORT = 7880
"""Port by default, the same as a LiveKit server's."""


@dataclass(frozen=True)
class ServerConfig:
    """How a :class:`~livekit_rpc.server.app.DevServer` runs.

    The defaults mirror a LiveKit server in dev mode: key ``devkey``, secret ``secret``,
    port 7880, bound to ``127.0.0.1``.
    """

    host: str = DEFAULT_HOST
    """Address the HTTP/WebSocket listener binds to."""
    port: int = DEFAULT_PORT
    """TCP port; 0 picks a free one (see ``DevServer.port``)."""
    api_key: str = DEV_API_KEY
    api_secret: str = DEV_API_SECRET
    rtc_hosts: tuple[str, ...] | None = None
    """IP addresses offered as ICE host candidates. ``None`` derives them from ``host``: a loopback
    or specific bind address offers only itself, a wildcard bind offers every interface."""
    pc_connect_timeout: float = 20.0
    """Seconds a participant's peer connection may take to connect before it is removed."""
    close_timeout: float = 2.0
    """Seconds to wait for a client to acknowledge a WebSocket close."""
    shutdown_timeout: float = 5.0
    """Seconds :meth:`DevServer.close` waits for sessions to finish."""
    max_pending_reliable_bytes: int = 4 * 1024 * 1024
    """Reliable data held per participant while its ``_reliable`` channel is not open yet."""
    max_signal_message_size: int = 1024 * 1024
    """Largest accepted signalling message, in bytes."""
    enable_v1: bool = False
    """Also serve the single-peer-connection path ``/rtc/v1``. Off by default: ``/rtc/v1``
    answers 404 and LiveKit clients fall back to ``/rtc``."""
    large_sctp_packets: bool = True
    """Offer and use SCTP packets of up to 16,000 bytes with participants on this machine that
    offer them too (:mod:`livekit_rpc.sctp`); others always get standard packets."""
    client_protocol_overrides: Mapping[str, int] = field(default_factory=dict)
    """Identity -> ``client_protocol`` to report instead of the client's own value. For tests:
    reporting 0 makes LiveKit SDKs talk to that participant with RPC v1 packets."""

    def __post_init__(self) -> None:
        if self.rtc_hosts is not None:
            object.__setattr__(self, "rtc_hosts", ice.normalize_addresses(self.rtc_hosts))
        if self.pc_connect_timeout <= 0:
            raise ValueError("pc_connect_timeout must be positive")

    def candidate_hosts(self) -> tuple[str, ...] | None:
        """The ICE host candidate addresses in force (see :attr:`rtc_hosts`)."""
        if self.rtc_hosts is not None:
            return self.rtc_hosts
        return ice.default_host_addresses_for_bind(self.host)
