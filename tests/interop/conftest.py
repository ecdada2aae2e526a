"""Fixtures for tests that talk to livekit-client running in Node (see node_peer.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from .node_peer import NodePeer, ensure_built
from .sfu import FakeSfu


@pytest.fixture(scope="session")
def node_peer_script() -> Path:
    """dist/peer.js, rebuilt first if its sources are newer."""
    return ensure_built()


@pytest.fixture
async def sfu() -> AsyncIterator[FakeSfu]:
    async with FakeSfu() as s:
        yield s


@pytest.fixture
async def make_node_peer(
    node_peer_script: Path,
) -> AsyncIterator[Callable[..., Awaitable[NodePeer]]]:
    """``await make_node_peer("alice", peers={...}, ...)`` starts a NodePeer (arguments as for
    NodePeer) that is shut down when the test ends."""
    async with AsyncExitStack() as stack:

        async def make(identity: str, /, **kwargs: Any) -> NodePeer:
            kwargs.setdefault("script", node_peer_script)
            return await stack.enter_async_context(NodePeer(identity, **kwargs))

        yield make
