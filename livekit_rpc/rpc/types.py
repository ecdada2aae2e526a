"""Values handed to RPC method handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass


@dataclass(frozen=True)
class RpcInvocationData:
    """One incoming call, as a handler sees it."""

    request_id: str
    caller_identity: str
    payload: str
    response_timeout: float
    """Seconds the caller will wait for the response (as sent on the wire)."""
    request_chunks: AsyncIterator[str | bytes] | None = None
    """For a client-streaming call, the caller's request chunks in order; otherwise None."""
