"""Fixtures for the room client tests: a dev server, rooms, and peers in other processes.

All WebRTC traffic uses loopback ICE host candidates (the server is bound to 127.0.0.1 and the
clients set ``gather_loopback``); when the suite runs as root it is additionally inside the
test network namespace set up by the top-level conftest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from livekit_rpc.room import Room, RoomOptions, RtcConfiguration
from livekit_rpc.server import DevServer, ServerConfig, mint_token

KEY, SECRET = "devkey", "secret"
ROOM = "r1"
REPO = Path(__file__).resolve().parents[2]
PEER_SCRIPT = Path(__file__).with_name("peer_process.py")

pytestmark = pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")


def room_options(**kwargs: Any) -> RoomOptions:
    """Options every test client uses: loopback candidates only."""
    return RoomOptions(rtc_config=RtcConfiguration(gather_loopback=True), **kwargs)


async def wait_until(predicate: Callable[[], object], within: float = 10.0) -> None:
    """Poll ``predicate`` until it is true; ``TimeoutError`` after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.01)


OUR_TASK_NAMES = frozenset({"signal-reader", "signal-ping", "publisher-negotiation"})


@pytest.fixture(autouse=True)
async def no_task_left_behind() -> AsyncIterator[None]:
    """After each test (and its fixtures' teardown), none of the room client's tasks runs."""
    yield
    await asyncio.sleep(0)
    leftover = [
        task
        for task in asyncio.all_tasks()
        if task.get_name() in OUR_TASK_NAMES and not task.done()
    ]
    assert leftover == [], leftover


def token(identity: str, room: str = ROOM, **kwargs: Any) -> str:
    """A dev-key token for ``identity`` in ``room``."""
    return mint_token(KEY, SECRET, identity, room, **kwargs)


@pytest.fixture
async def server() -> AsyncIterator[DevServer]:
    """A dev server on a free loopback port."""
    async with DevServer(ServerConfig(port=0, pc_connect_timeout=10.0)) as srv:
        yield srv


ConnectRoom = Callable[..., Awaitable[Room]]


@pytest.fixture
async def connect_room(server: DevServer) -> AsyncIterator[ConnectRoom]:
    """``await connect_room("alice", **token_kwargs)``: a connected Room, disconnected at
    teardown."""
    rooms: list[Room] = []

    async def connect(
        identity: str, *, options: RoomOptions | None = None, **token_kwargs: Any
    ) -> Room:
        room = Room()
        rooms.append(room)
        await room.connect(server.url, token(identity, **token_kwargs), options or room_options())
        return room

    yield connect
    for room in rooms:
        await room.disconnect()


class PeerProcess:
    """A participant running ``peer_process.py`` in a child process."""

    def __init__(self, proc: asyncio.subprocess.Process, identity: str) -> None:
        self.proc = proc
        self.identity = identity
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._reader = asyncio.ensure_future(self._read())
        self.ready: dict[str, Any] = {}

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if "event" in message:
                await self.events.put(message)
                continue
            future = self._replies.pop(message["id"], None)
            if future is not None and not future.done():
                future.set_result(message)
        for future in self._replies.values():
            if not future.done():
                future.set_exception(ConnectionError(f"{self.identity} exited"))

    async def wait_event(self, name: str, within: float = 20.0) -> dict[str, Any]:
        """The next event called ``name`` (earlier other events are dropped)."""
        async with asyncio.timeout(within):
            while True:
                event = await self.events.get()
                if event["event"] == name:
                    return event

    async def command(self, within: float = 60.0, **cmd: Any) -> dict[str, Any]:
        """Send one command and wait for its reply."""
        assert self.proc.stdin is not None
        self._next_id += 1
        cmd["id"] = self._next_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._replies[self._next_id] = future
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        async with asyncio.timeout(within):
            return await future

    def kill(self) -> None:
        """SIGKILL the process: no leave, no socket shutdown handshake."""
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def close(self) -> None:
        """Ask the peer to quit; kill it if it does not within a few seconds."""
        if self.proc.returncode is None and self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write(b'{"op": "quit", "id": 0}\n')
                await self.proc.stdin.drain()
                self.proc.stdin.close()
            try:
                async with asyncio.timeout(5):
                    await self.proc.wait()
            except TimeoutError:
                self.kill()
        await self.proc.wait()
        await self._reader


SpawnPeer = Callable[..., Awaitable[PeerProcess]]


@pytest.fixture
async def spawn_peer(server: DevServer) -> AsyncIterator[SpawnPeer]:
    """``await spawn_peer("bob")``: a participant in a child process, joined and ready."""
    peers: list[PeerProcess] = []

    async def spawn(identity: str, **token_kwargs: Any) -> PeerProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.pop("PYTHONASYNCIODEBUG", None)  # debug mode slows the child's SCTP a lot
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(PEER_SCRIPT),
            server.url,
            token(identity, **token_kwargs),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        peer = PeerProcess(proc, identity)
        peers.append(peer)
        peer.ready = await peer.wait_event("ready", within=30)
        return peer

    yield spawn
    await asyncio.gather(*(peer.close() for peer in peers))
