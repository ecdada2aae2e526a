"""Access tokens in LiveKit's format: HS256 JWTs carrying a ``video`` grant.

Pure functions, no I/O. :func:`mint_token` produces a token that both this project's server and
a real LiveKit server accept; :func:`verify_token` checks one and returns :class:`TokenClaims`.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt

__all__ = [
    "DEFAULT_LEEWAY",
    "DEFAULT_TTL",
    "DEV_API_KEY",
    "DEV_API_SECRET",
    "TokenClaims",
    "TokenError",
    "bearer_token",
    "mint_token",
    "verify_token",
]

DEV_API_KEY = "devkey"
"""API key of a server started in dev mode."""
DEV_API_SECRET = "secret"
"""API secret of a server started in dev mode."""
DEFAULT_TTL = 6 * 3600.0
"""Default token lifetime in seconds (six hours)."""
DEFAULT_LEEWAY = 60.0
"""Clock skew tolerated when checking ``exp`` and ``nbf``, in seconds."""

_ALGORITHM = "HS256"
# LiveKit secrets (the dev one is ``secret``) are often shorter than PyJWT recommends.
_KEY_LENGTH_WARNING: type[Warning] | None = getattr(jwt, "InsecureKeyLengthWarning", None)


@contextlib.contextmanager
def _short_keys_allowed() -> Iterator[None]:
    if _KEY_LENGTH_WARNING is None:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _KEY_LENGTH_WARNING)
        yield


class TokenError(Exception):
    """A token was missing, malformed, expired, signed with another key, or lacks a grant."""


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says about the participant it admits."""

    identity: str
    room: str
    name: str = ""
    metadata: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)
    kind: str = ""
    can_publish_data: bool = True
    can_update_own_metadata: bool = False
    expires_at: float = 0.0


def mint_token(
    api_key: str,
    api_secret: str,
    identity: str,
    room: str,
    *,
    ttl: float = DEFAULT_TTL,
    name: str | None = None,
    metadata: str | None = None,
    attributes: Mapping[str, str] | None = None,
    can_publish_data: bool = True,
    can_update_own_metadata: bool = True,
    now: float | None = None,
) -> str:
    """Create a signed join token for ``identity`` in ``room``.

    :param ttl: lifetime in seconds; a negative value yields an already expired token.
    :param now: the issue time (Unix seconds); defaults to the current time.
    :raises ValueError: if ``identity`` or ``room`` is empty.
    """
    if not identity:
        raise ValueError("identity must not be empty")
    if not room:
        raise ValueError("room must not be empty")
    issued = int(time.time() if now is None else now)
    video: dict[str, Any] = {
        "roomJoin": True,
        "room": room,
        "canPublish": True,
        "canSubscribe": True,
        "canPublishData": can_publish_data,
        "canUpdateOwnMetadata": can_update_own_metadata,
    }
    claims: dict[str, Any] = {
        "iss": api_key,
        "sub": identity,
        "nbf": issued,
        "iat": issued,
        "exp": issued + int(ttl),
        "video": video,
    }
    if name is not None:
        claims["name"] = name
    if metadata is not None:
        claims["metadata"] = metadata
    if attributes:
        claims["attributes"] = dict(attributes)
    with _short_keys_allowed():
        return jwt.encode(claims, api_secret, algorithm=_ALGORITHM)


def verify_token(
    token: str,
    api_key: str,
    api_secret: str,
    *,
    expected_room: str | None = None,
    leeway: float = DEFAULT_LEEWAY,
) -> TokenClaims:
    """Verify ``token`` and return its claims.

    Checks the HS256 signature with ``api_secret``, that ``iss`` equals ``api_key``, that
    ``exp`` is present and not past (with ``leeway``), that the ``video`` grant has
    ``roomJoin`` and a non-empty ``room`` (equal to ``expected_room`` when given), and that the
    identity (``sub``) is not empty.

    :raises TokenError: with a human-readable reason when any check fails.
    """
    if not token:
        raise TokenError("missing token")
    try:
        with _short_keys_allowed():
            claims = jwt.decode(
                token,
                api_secret,
                algorithms=[_ALGORITHM],
                issuer=api_key,
                leeway=leeway,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token expired") from exc
    except jwt.InvalidIssuerError as exc:
        raise TokenError("token issued for another API key") from exc
    except jwt.InvalidSignatureError as exc:
        raise TokenError("invalid token signature") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token: {exc}") from exc

    video = claims.get("video")
    if not isinstance(video, dict):
        raise TokenError("token has no video grant")
    if video.get("roomJoin") is not True:
        raise TokenError("token does not grant roomJoin")
    room = video.get("room")
    if not isinstance(room, str) or not room:
        raise TokenError("token names no room")
    if expected_room is not None and room != expected_room:
        raise TokenError(f"token is for room {room!r}, not {expected_room!r}")
    identity = claims.get("sub") or claims.get("jti")
    if not isinstance(identity, str) or not identity:
        raise TokenError("token has no identity")

    attributes = claims.get("attributes") or {}
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise TokenError("token attributes must map strings to strings")

    return TokenClaims(
        identity=identity,
        room=room,
        name=_str_claim(claims, "name"),
        metadata=_str_claim(claims, "metadata"),
        attributes=dict(attributes),
        kind=_str_claim(claims, "kind"),
        can_publish_data=_bool_grant(video, "canPublishData", default=True),
        can_update_own_metadata=_bool_grant(video, "canUpdateOwnMetadata", default=False),
        expires_at=float(claims["exp"]),
    )


def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """Pick the token from an ``Authorization: Bearer`` header, else from a query value."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def _str_claim(claims: Mapping[str, Any], key: str) -> str:
    value = claims.get(key)
    return value if isinstance(value, str) else ""


def _bool_grant(video: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = video.get(key)
    return value if isinstance(value, bool) else default
