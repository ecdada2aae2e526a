"""``RpcError``: the error every failed call raises, and what travels in ``RpcResponse.error``."""

from __future__ import annotations

import enum
from typing import ClassVar

from livekit.protocol import models

from ..wire.constants import MAX_ERROR_DATA_BYTES, MAX_ERROR_MESSAGE_BYTES
from ..wire.utf8 import truncate_utf8


class RpcError(Exception):
    """An RPC failure with a numeric code, a message and optional data.

    Codes 1001–1999 are reserved for built-in errors; applications may use any other code.
    ``message`` is cut to 256 UTF-8 bytes and ``data`` to 15,360, on whole characters;
    an empty ``data`` counts as absent.
    """

    class ErrorCode(enum.IntEnum):
        APPLICATION_ERROR = 1500
        CONNECTION_TIMEOUT = 1501
        RESPONSE_TIMEOUT = 1502
        RECIPIENT_DISCONNECTED = 1503
        RESPONSE_PAYLOAD_TOO_LARGE = 1504
        SEND_FAILED = 1505
        UNSUPPORTED_METHOD = 1400
        RECIPIENT_NOT_FOUND = 1401
        REQUEST_PAYLOAD_TOO_LARGE = 1402
        UNSUPPORTED_SERVER = 1403
        UNSUPPORTED_VERSION = 1404

    MESSAGES: ClassVar[dict[int, str]] = {
        ErrorCode.APPLICATION_ERROR: "Application error in method handler",
        ErrorCode.CONNECTION_TIMEOUT: "Connection timeout",
        ErrorCode.RESPONSE_TIMEOUT: "Response timeout",
        ErrorCode.RECIPIENT_DISCONNECTED: "Recipient disconnected",
        ErrorCode.RESPONSE_PAYLOAD_TOO_LARGE: "Response payload too large",
        ErrorCode.SEND_FAILED: "Failed to send",
        ErrorCode.UNSUPPORTED_METHOD: "Method not supported at destination",
        ErrorCode.RECIPIENT_NOT_FOUND: "Recipient not found",
        ErrorCode.REQUEST_PAYLOAD_TOO_LARGE: "Request payload too large",
        ErrorCode.UNSUPPORTED_SERVER: "RPC not supported by server",
        ErrorCode.UNSUPPORTED_VERSION: "Unsupported RPC version",
    }

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        self._code = int(code)
        self._message = truncate_utf8(message, MAX_ERROR_MESSAGE_BYTES)
        self._data = truncate_utf8(data, MAX_ERROR_DATA_BYTES) if data else None
        super().__init__(self._message)

    @property
    def code(self) -> int:
        return self._code

    @property
    def message(self) -> str:
        return self._message

    @property
    def data(self) -> str | None:
        return self._data

    @classmethod
    def built_in(cls, code: ErrorCode, data: str | None = None) -> RpcError:
        """A built-in error with its standard message."""
        return cls(code, cls.MESSAGES[code], data)

    @classmethod
    def from_proto(cls, proto: models.RpcError) -> RpcError:
        return cls(proto.code, proto.message, proto.data)

    def to_proto(self) -> models.RpcError:
        return models.RpcError(code=self._code, message=self._message, data=self._data or "")

    def __repr__(self) -> str:
        return f"RpcError(code={self._code}, message={self._message!r}, data={self._data!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RpcError):
            return NotImplemented
        return (self._code, self._message, self._data) == (other.code, other.message, other.data)

    __hash__ = Exception.__hash__
