"""Run the dev room server until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from .app import DevServer
from .config import ServerConfig

__all__ = ["serve"]

logger = logging.getLogger(__name__)


async def serve(
    config: ServerConfig,
    *,
    stop: asyncio.Event | None = None,
    on_ready: Callable[[DevServer], None] | None = None,
) -> None:
    """Serve until ``stop`` is set or the process gets SIGINT/SIGTERM, then shut down cleanly.

    On shutdown every client gets a ``leave`` (``SERVER_SHUTDOWN``) and its socket is closed.

    :param on_ready: called once the server listens.
    """
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    server = DevServer(config)
    try:
        await server.start()
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
        logger.info("shutting down")
    finally:
        await server.close()
        for sig in installed:
            loop.remove_signal_handler(sig)
