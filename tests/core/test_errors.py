"""rpc/errors.py: RpcError codes, messages, truncation and proto conversion."""

from __future__ import annotations

import pytest
from livekit.protocol import models

from livekit_rpc import RpcError

E = RpcError.ErrorCode


@pytest.mark.parametrize(
    ("code", "value", "message"),
    [
        (E.APPLICATION_ERROR, 1500, "Application error in method handler"),
        (E.CONNECTION_TIMEOUT, 1501, "Connection timeout"),
        (E.RESPONSE_TIMEOUT, 1502, "Response timeout"),
        (E.RECIPIENT_DISCONNECTED, 1503, "Recipient disconnected"),
        (E.RESPONSE_PAYLOAD_TOO_LARGE, 1504, "Response payload too large"),
        (E.SEND_FAILED, 1505, "Failed to send"),
        (E.UNSUPPORTED_METHOD, 1400, "Method not supported at destination"),
        (E.RECIPIENT_NOT_FOUND, 1401, "Recipient not found"),
        (E.REQUEST_PAYLOAD_TOO_LARGE, 1402, "Request payload too large"),
        (E.UNSUPPORTED_SERVER, 1403, "RPC not supported by server"),
        (E.UNSUPPORTED_VERSION, 1404, "Unsupported RPC version"),
    ],
)
def test_built_in_errors(code: E, value: int, message: str) -> None:
    error = RpcError.built_in(code)
    assert (error.code, error.message, error.data) == (value, message, None)
    assert str(error) == message


def test_message_truncated_to_256_bytes_on_whole_characters() -> None:
    error = RpcError(1500, "a" + "😀" * 100)
    assert error.message == "a" + "😀" * 63
    assert len(error.message.encode()) == 253


def test_data_truncated_to_15360_bytes() -> None:
    error = RpcError(1, "m", "é" * 10000)
    assert error.data == "é" * 7680
    assert RpcError(1, "m", "x" * 15360).data == "x" * 15360


def test_empty_data_counts_as_absent() -> None:
    assert RpcError(1, "m", "").data is None
    assert RpcError(1, "m", "").to_proto().data == ""


def test_proto_round_trip_and_truncation_on_receipt() -> None:
    proto = models.RpcError(code=101, message="m" * 300, data="d")
    error = RpcError.from_proto(proto)
    assert (error.code, error.message, error.data) == (101, "m" * 256, "d")
    back = error.to_proto()
    assert (back.code, back.message, back.data) == (101, "m" * 256, "d")
    assert RpcError.from_proto(models.RpcError(code=7, message="x")).data is None


def test_equality_and_repr() -> None:
    assert RpcError(1, "a", "b") == RpcError(1, "a", "b")
    assert RpcError(1, "a", "b") != RpcError(1, "a", "c")
    assert RpcError(1, "a") != "a"
    assert repr(RpcError(5, "m", "d")) == "RpcError(code=5, message='m', data='d')"
    assert isinstance(hash(RpcError(1, "a")), int)
