"""Read what a connecting client says about itself (sans-I/O).

The v0 signalling path (``/rtc``) carries client details as query parameters; the v1 path
(``/rtc/v1``) carries a base64url ``join_request`` holding a possibly gzipped ``JoinRequest``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
from collections.abc import Iterable, Mapping

from google.protobuf.message import DecodeError
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from .state import ClientDetails

__all__ = ["ClientInfoError", "decode_join_request", "details_from_join_request", "parse_query"]

_CAPABILITY_BY_NAME = dict(models.ClientInfo.Capability.items())


class ClientInfoError(ValueError):
    """The client's connection parameters could not be understood."""


def _int(value: str | None, default: int = 0) -> int:
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ClientInfoError(f"not an integer: {value!r}") from exc


def parse_capabilities(values: Iterable[str]) -> tuple[int, ...]:
    """Turn ``capabilities`` query values into integers.

    Each value is a comma-separated list of enum names (``CAP_PACKET_TRAILER``) or integers
    (``10001``). Integers are kept even when the enum does not know them; unknown names are
    skipped. Duplicates are removed, first occurrence wins.
    """
    result: list[int] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if item.lstrip("-").isdigit():
                number = int(item)
            elif item in _CAPABILITY_BY_NAME:
                number = _CAPABILITY_BY_NAME[item]
            else:
                continue
            if number not in result:
                result.append(number)
    return tuple(result)


def parse_query(query: Mapping[str, str], capabilities: Iterable[str] = ()) -> ClientDetails:
    """Client details from v0 query parameters.

    ``capabilities`` are all values of the repeated ``capabilities`` parameter (a plain
    mapping keeps only one).

    :raises ClientInfoError: if a numeric parameter is not a number.
    """
    reconnect = query.get("reconnect", "") in ("1", "true")
    return ClientDetails(
        client_protocol=_int(query.get("client_protocol")),
        capabilities=parse_capabilities(capabilities),
        protocol=_int(query.get("protocol")),
        sdk=query.get("sdk", ""),
        version=query.get("version", ""),
        reconnect=reconnect,
    )


def decode_join_request(value: str) -> proto_rtc.JoinRequest:
    """Decode the v1 ``join_request`` query value.

    It is base64url (padding optional) of a ``WrappedJoinRequest`` whose ``join_request``
    bytes are a ``JoinRequest``, gzipped when ``compression`` is GZIP.

    :raises ClientInfoError: if any layer fails to decode.
    """
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
        wrapped = proto_rtc.WrappedJoinRequest.FromString(raw)
        inner = wrapped.join_request
        if wrapped.compression == proto_rtc.WrappedJoinRequest.Compression.GZIP:
            inner = gzip.decompress(inner)
        return proto_rtc.JoinRequest.FromString(inner)
    except (binascii.Error, ValueError, OSError, EOFError, DecodeError) as exc:
        raise ClientInfoError(f"bad join_request: {exc}") from exc


def details_from_join_request(request: proto_rtc.JoinRequest) -> ClientDetails:
    """Client details from a decoded v1 ``JoinRequest``."""
    info = request.client_info
    capabilities: list[int] = []
    for cap in info.capabilities:
        if int(cap) not in capabilities:
            capabilities.append(int(cap))
    return ClientDetails(
        client_protocol=info.client_protocol,
        capabilities=tuple(capabilities),
        protocol=info.protocol,
        sdk=models.ClientInfo.SDK.Name(info.sdk)
        if info.sdk in models.ClientInfo.SDK.values()
        else str(info.sdk),
        version=info.version,
        reconnect=request.reconnect,
        single_pc=True,
    )
