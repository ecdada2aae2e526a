"""Runs the demo: the dev server in this process, each participant in its own process."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

from ..server.app import DevServer
from ..server.auth import DEV_API_KEY, DEV_API_SECRET, mint_token
from ..server.config import ServerConfig

ROOM = "demo"


async def _spawn(role: str, url: str) -> asyncio.subprocess.Process:
    token = mint_token(DEV_API_KEY, DEV_API_SECRET, identity=role, room=ROOM)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "livekit_rpc.demo.participant", role, url, token
    )


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


async def run_demo(port: int = 0) -> int:
    """Start the server on loopback, run robot, flaky and caller; return the caller's status."""
    started = time.perf_counter()
    async with DevServer(ServerConfig(port=port, rtc_hosts=("127.0.0.1",))) as server:
        print(f"dev server on {server.url} (loopback only), room {ROOM!r}", flush=True)
        servers = [await _spawn("robot", server.url), await _spawn("flaky", server.url)]
        caller = await _spawn("caller", server.url)
        try:
            status = await asyncio.wait_for(caller.wait(), 120)
        except TimeoutError:
            caller.kill()
            await caller.wait()
            status = 1
        finally:
            for process in servers:
                await _stop(process)
    print(f"demo finished in {time.perf_counter() - started:.1f} s (exit {status})", flush=True)
    return status
