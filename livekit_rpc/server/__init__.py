"""A LiveKit-compatible dev room server (``livekit-rpc server``).

Official LiveKit SDKs can join it and exchange data packets, RPCs and data streams. It serves
one aiortc peer connection per participant and forwards data between participants; there is no
media. See :class:`DevServer` and :class:`ServerConfig`.
"""

from .app import DevServer
from .auth import DEV_API_KEY, DEV_API_SECRET, TokenClaims, TokenError, mint_token, verify_token
from .config import ServerConfig
from .run import serve

__all__ = [
    "DEV_API_KEY",
    "DEV_API_SECRET",
    "DevServer",
    "ServerConfig",
    "TokenClaims",
    "TokenError",
    "mint_token",
    "serve",
    "verify_token",
]
