"""Values handed to RPC method handlers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RpcInvocationData:
    """One incoming call, as a handler sees it."""

    request_id: str
    caller_identity: str
    payload: str
    response_timeout: float
    """Seconds the caller will wait for the response (as sent on the wire)."""
