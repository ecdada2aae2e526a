"""Python driver for the Node test peer (tests/interop/node), which runs livekit-client's own
RPC and data-stream managers. See tests/interop/node/README.md for the JSON-lines protocol.

Typical use::

    async with FakeSfu() as sfu, NodePeer("js", peers={"py": RemotePeer()}) as js:
        await js.join(sfu, announce=False)
        await js.register_rpc("echo")
        call = await js.perform_rpc("py", "echo", "hi")
        result = await js.rpc_result(call)

Every waiting helper takes a ``timeout`` (hence the ASYNC109 waivers): a broken peer must fail
a test, never hang the run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import os
import shutil
import subprocess
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from livekit.protocol import models

from .sfu import FakeSfu

DataPacket = models.DataPacket
Json = dict[str, Any]

NODE_DIR = Path(__file__).resolve().parent / "node"
PEER_SCRIPT = NODE_DIR / "dist" / "peer.js"

CAP_PACKET_TRAILER = 1
CAP_COMPRESSION_DEFLATE_RAW = 2

_STREAM_LIMIT = 64 * 1024 * 1024  # longest stdout line accepted from the peer

log = logging.getLogger(__name__)


class NodePeerError(RuntimeError):
    """The peer process is gone or misbehaved."""


class NodeCommandError(NodePeerError):
    """A command was rejected by the peer (for example, registering a method twice)."""

    def __init__(self, op: str, error: Mapping[str, Any]) -> None:
        self.op = op
        self.error = dict(error)
        super().__init__(f"{op}: {error.get('name')}: {error.get('message')}")


@dataclass(frozen=True)
class RemotePeer:
    """What the JS side believes about a remote participant (its participant-table entry)."""

    client_protocol: int = 2
    capabilities: tuple[int, ...] = (CAP_COMPRESSION_DEFLATE_RAW,)

    def to_json(self) -> Json:
        return {"client_protocol": self.client_protocol, "capabilities": list(self.capabilities)}


PeerTable = Mapping[str, RemotePeer | Mapping[str, Any]]


def _peer_json(spec: RemotePeer | Mapping[str, Any]) -> Json:
    return spec.to_json() if isinstance(spec, RemotePeer) else dict(spec)


# ---- deterministic payload generators (twins of node/src/generate.ts) -------------------------

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_JSON_HEAD = '{"items":['
_JSON_PAD_OPEN = '],"pad":"'
_JSON_TAIL = '"}'


def gen_repeat(text: str, count: int) -> Json:
    return {"type": "repeat", "text": text, "count": count}


def gen_json(size: int) -> Json:
    """A JSON document of exactly ``size`` bytes."""
    return {"type": "json", "size": size}


def gen_random(size: int, seed: int = 1) -> Json:
    """``size`` pseudo-random base-36 characters (poorly compressible ASCII)."""
    return {"type": "random", "size": size, "seed": seed}


def gen_fill(byte: int, count: int) -> Json:
    return {"type": "fill", "byte": byte, "count": count}


def gen_random_bytes(size: int, seed: int = 1) -> Json:
    return {"type": "random_bytes", "size": size, "seed": seed}


def _lcg_bytes(size: int, seed: int) -> bytes:
    state = seed & 0xFFFFFFFF
    out = bytearray(size)
    for i in range(size):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        out[i] = state >> 24
    return bytes(out)


def _json_item(i: int) -> str:
    value = (i * 7919) % 100003
    active = "true" if i % 3 == 0 else "false"
    return (
        f'{{"id":{i},"name":"item-{i}","value":{value},"active":{active},'
        f'"tags":["t{i % 7}","t{i % 11}"]}}'
    )


def _generate_json(size: int) -> str:
    overhead = len(_JSON_HEAD) + len(_JSON_PAD_OPEN) + len(_JSON_TAIL)
    if size < overhead:
        raise ValueError(f"json size must be at least {overhead}")
    items: list[str] = []
    used = overhead
    i = 0
    while True:
        item = _json_item(i)
        extra = len(item) + (1 if items else 0)
        if used + extra > size:
            break
        items.append(item)
        used += extra
        i += 1
    return _JSON_HEAD + ",".join(items) + _JSON_PAD_OPEN + "x" * (size - used) + _JSON_TAIL


def generate_text(spec: Mapping[str, Any]) -> str:
    kind = spec["type"]
    if kind == "repeat":
        return str(spec["text"]) * int(spec["count"])
    if kind == "json":
        return _generate_json(int(spec["size"]))
    if kind == "random":
        data = _lcg_bytes(int(spec["size"]), int(spec.get("seed", 1)))
        return "".join(_BASE36[b % 36] for b in data)
    raise ValueError(f"unknown text generator {spec!r}")


def generate_bytes(spec: Mapping[str, Any]) -> bytes:
    kind = spec["type"]
    if kind == "fill":
        return bytes([int(spec["byte"])]) * int(spec["count"])
    if kind == "random_bytes":
        return _lcg_bytes(int(spec["size"]), int(spec.get("seed", 1)))
    return generate_text(spec).encode()


def sha256_hex(data: str | bytes) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


# ---- build ------------------------------------------------------------------------------------


def ensure_built() -> Path:
    """Builds dist/peer.js when it is missing or older than its sources; returns its path.

    Needs ``npm ci`` to have run in tests/interop/node (``make install`` does both)."""
    sources = [*NODE_DIR.joinpath("src").glob("*.ts"), NODE_DIR / "package-lock.json"]
    newest = max(p.stat().st_mtime for p in sources)
    if PEER_SCRIPT.exists() and PEER_SCRIPT.stat().st_mtime >= newest:
        return PEER_SCRIPT
    if not (NODE_DIR / "node_modules" / "livekit-client").is_dir():
        raise NodePeerError(
            f"{NODE_DIR}/node_modules is missing: run `make install` "
            f"(or `cd {NODE_DIR} && npm ci && npm run build`)"
        )
    npm = shutil.which("npm")
    if npm is None:
        raise NodePeerError("npm is not on PATH")
    subprocess.run([npm, "run", "--silent", "build"], cwd=NODE_DIR, check=True)
    return PEER_SCRIPT


# ---- the driver -------------------------------------------------------------------------------


class NodePeer:
    """One livekit-client participant (RPC + data streams) in a Node child process.

    Outgoing packets (as the JS engine would put them on the wire) land in :attr:`packets` as
    parsed ``DataPacket`` objects, unless :meth:`forward_to` / :meth:`join` pumps them
    elsewhere; :attr:`sent_raw` keeps the bytes of every one. Other events are read with
    :meth:`next_event`.
    """

    def __init__(
        self,
        identity: str = "js",
        peers: PeerTable | None = None,
        *,
        auto_setup: bool = True,
        server_version: str | None = None,
        max_payload_bytes: int | None = None,
        inline_limit: int | None = None,
        connected: bool = True,
        log_level: str | None = None,
        script: Path = PEER_SCRIPT,
        node: str = "node",
        start_timeout: float = 20.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.identity = identity
        self.packets: asyncio.Queue[DataPacket] = asyncio.Queue()
        self.sent_raw: list[bytes] = []
        self.events: list[Json] = []
        """Every event other than ``done`` and ``packet``, in arrival order (a log)."""
        self.problems: list[Json] = []
        """``unhandled_error``, ``protocol_error`` and forwarding failures."""
        self.stderr_tail: deque[str] = deque(maxlen=400)
        self.ready_info: Json = {}
        self._peers = peers
        self._auto_setup = auto_setup
        self._setup_options: Json = {
            "server_version": server_version,
            "max_payload_bytes": max_payload_bytes,
            "inline_limit": inline_limit,
            "connected": connected,
        }
        self._log_level = log_level
        self._script = script
        self._node = node
        self._start_timeout = start_timeout
        self.command_timeout = command_timeout
        self._proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._pump: asyncio.Task[None] | None = None
        self._unconsumed: list[Json] = []
        self._changed = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[Json]] = {}
        self._cmd_ids = itertools.count(1)
        self._call_ids = itertools.count(1)
        self._write_lock = asyncio.Lock()
        self._dead: str | None = None
        self._closed = False
        self._log = logging.getLogger(f"{__name__}.{identity}")

    # ---- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> NodePeer:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        if self._proc is not None:
            raise NodePeerError("already started")
        if not self._script.exists():
            raise NodePeerError(f"{self._script} is missing: run `make install`")
        env = dict(os.environ)
        if self._log_level is not None:
            env["LK_PEER_LOG_LEVEL"] = self._log_level
        self._proc = await asyncio.create_subprocess_exec(
            self._node,
            "--enable-source-maps",
            str(self._script),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=_STREAM_LIMIT,
            env=env,
        )
        self._readers = [
            asyncio.create_task(self._read_stdout(), name=f"node-peer-{self.identity}-stdout"),
            asyncio.create_task(self._read_stderr(), name=f"node-peer-{self.identity}-stderr"),
        ]
        self.ready_info = await self.next_event("ready", timeout=self._start_timeout)
        if self._auto_setup:
            await self.setup(self._peers or {}, **self._setup_options)

    async def close(self) -> None:
        """Stops the pump, asks the peer to exit, and kills it if it does not."""
        if self._closed:
            return
        self._closed = True
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.wait([self._pump])
        proc = self._proc
        if proc is None:
            return
        if proc.returncode is None and self._dead is None:
            try:
                await asyncio.wait_for(self.command("shutdown"), 2.0)
            except (NodePeerError, TimeoutError, ConnectionError) as e:
                self._log.debug("shutdown command failed: %r", e)
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 3.0)
        except TimeoutError:
            self._log.warning("node peer did not exit; killing it")
            proc.kill()
            await proc.wait()
        if proc.stdin is not None:
            try:
                await proc.stdin.wait_closed()
            except (BrokenPipeError, ConnectionResetError):
                pass
        _, pending = await asyncio.wait(self._readers, timeout=3.0)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    # ---- reading ---------------------------------------------------------------------------

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            while line := await stdout.readline():
                try:
                    event = json.loads(line)
                except ValueError:
                    self._log.warning("non-JSON line on stdout: %r", line[:200])
                    continue
                self._on_event(event)
        finally:
            self._mark_dead("the node peer's stdout closed")

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        stderr = self._proc.stderr
        while line := await stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self.stderr_tail.append(text)
            self._log.debug("%s", text)

    def _mark_dead(self, why: str) -> None:
        if self._dead is None:
            self._dead = why
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(NodePeerError(f"{why}{self._stderr_hint()}"))
        self._waiting.clear()
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_event(self, event: Json) -> None:
        kind = event.get("ev")
        if kind == "done":
            fut = self._waiting.pop(event.get("cmd", -1), None)
            if fut is not None and not fut.done():
                fut.set_result(event)
            return
        if kind == "packet":
            raw = base64.b64decode(event["data"])
            self.sent_raw.append(raw)
            packet = DataPacket()
            packet.ParseFromString(raw)
            self.packets.put_nowait(packet)
            return
        self.events.append(event)
        if kind in ("unhandled_error", "protocol_error"):
            self.problems.append(event)
            self._log.warning("%s", event)
        self._unconsumed.append(event)
        self._wake()

    def _stderr_hint(self) -> str:
        tail = list(self.stderr_tail)[-15:]
        return ("\n--- node stderr (tail) ---\n" + "\n".join(tail)) if tail else ""

    async def next_event(self, kind: str, /, timeout: float = 10.0, **match: Any) -> Json:  # noqa: ASYNC109
        """Removes and returns the oldest not-yet-consumed event ``{"ev": kind, ...}`` whose
        fields equal ``match``, waiting up to ``timeout`` seconds for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, event in enumerate(self._unconsumed):
                if event.get("ev") == kind and all(event.get(k) == v for k, v in match.items()):
                    del self._unconsumed[i]
                    return event
            if self._dead is not None:
                raise NodePeerError(
                    f"{self.identity}: {self._dead} while waiting for {kind} {match}"
                    f"{self._stderr_hint()}"
                )
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = [e.get("ev") for e in self.events[-20:]]
                raise TimeoutError(
                    f"{self.identity}: no {kind} event matching {match} within {timeout}s; "
                    f"recent events: {recent}{self._stderr_hint()}"
                )
            changed = self._changed
            try:
                # Not asyncio.wait_for: on Python 3.11 it can swallow a cancellation that
                # races with the inner completion, leaving the cancelled task running.
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                pass

    def take_events(self, kind: str, /, **match: Any) -> list[Json]:
        """Removes and returns every already-received event of ``kind`` matching ``match``."""
        taken = [
            e
            for e in self._unconsumed
            if e.get("ev") == kind and all(e.get(k) == v for k, v in match.items())
        ]
        self._unconsumed = [e for e in self._unconsumed if not any(e is t for t in taken)]
        return taken

    def drain_packets(self) -> list[DataPacket]:
        """Everything currently in :attr:`packets`, without waiting."""
        out: list[DataPacket] = []
        while not self.packets.empty():
            out.append(self.packets.get_nowait())
        return out

    async def next_packet(self, timeout: float = 10.0) -> DataPacket:  # noqa: ASYNC109
        return await asyncio.wait_for(self.packets.get(), timeout)

    # ---- writing ---------------------------------------------------------------------------

    async def command(self, op: str, /, **fields: Any) -> Json:
        """Sends one command and waits for its ``done`` reply (fields that are None are
        omitted). Raises :class:`NodeCommandError` when the peer rejects it."""
        if self._proc is None or self._proc.stdin is None:
            raise NodePeerError("not started")
        if self._dead is not None:
            raise NodePeerError(f"{self.identity}: {self._dead}{self._stderr_hint()}")
        cmd_id = next(self._cmd_ids)
        fut: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._waiting[cmd_id] = fut
        message = {"op": op, "cmd": cmd_id}
        message.update({k: v for k, v in fields.items() if v is not None})
        stdin = self._proc.stdin
        try:
            stdin.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            async with self._write_lock:
                await stdin.drain()
            async with asyncio.timeout(self.command_timeout):  # not wait_for: see next_event
                reply = await fut
        except (BrokenPipeError, ConnectionResetError) as e:
            raise NodePeerError(f"{self.identity}: cannot write to the peer: {e!r}") from e
        finally:
            self._waiting.pop(cmd_id, None)
        if not reply.get("ok"):
            raise NodeCommandError(op, reply.get("error") or {})
        return reply

    def _new_call(self, prefix: str) -> str:
        return f"{prefix}{next(self._call_ids)}"

    # ---- room / participant table ------------------------------------------------------------

    async def setup(
        self,
        peers: PeerTable,
        *,
        server_version: str | None = None,
        max_payload_bytes: int | None = None,
        inline_limit: int | None = None,
        connected: bool = True,
    ) -> None:
        await self.command(
            "setup",
            identity=self.identity,
            peers={identity: _peer_json(spec) for identity, spec in peers.items()},
            server_version=server_version,
            max_payload_bytes=max_payload_bytes,
            inline_limit=inline_limit,
            connected=connected,
        )

    async def add_peer(
        self,
        identity: str,
        client_protocol: int = 2,
        capabilities: Sequence[int] = (CAP_COMPRESSION_DEFLATE_RAW,),
    ) -> None:
        await self.command(
            "add_peer",
            identity=identity,
            client_protocol=client_protocol,
            capabilities=list(capabilities),
        )

    async def participant_disconnected(self, identity: str) -> None:
        await self.command("participant_disconnected", identity=identity)

    async def set_connected(self, connected: bool) -> None:
        await self.command("set_connected", connected=connected)

    async def room_disconnected(self) -> None:
        await self.command("room_disconnected")

    async def engine_closing(self) -> None:
        await self.command("engine_closing")

    # ---- packets -----------------------------------------------------------------------------

    async def deliver(self, packet: DataPacket, encryption_type: int = 0) -> None:
        """Hands an incoming packet (already stamped by the SFU) to the JS side; returns once
        the peer has dispatched it."""
        await self.deliver_bytes(packet.SerializeToString(), encryption_type)

    async def deliver_bytes(self, raw: bytes, encryption_type: int = 0) -> None:
        await self.command(
            "packet", data=base64.b64encode(raw).decode(), encryption_type=encryption_type
        )

    def forward_to(self, send: Callable[[DataPacket], Awaitable[None]]) -> None:
        """Pumps every outgoing packet into ``send`` (for example ``sfu.sender(identity)``)."""
        if self._pump is not None:
            raise NodePeerError("already forwarding")
        self._pump = asyncio.create_task(
            self._forward(send), name=f"node-peer-{self.identity}-forward"
        )

    async def _forward(self, send: Callable[[DataPacket], Awaitable[None]]) -> None:
        while True:
            packet = await self.packets.get()
            try:
                await send(packet)
            except Exception as e:
                self._log.exception("forwarding a packet failed")
                self.problems.append({"ev": "forward_error", "error": repr(e)})

    async def join(
        self,
        sfu: FakeSfu,
        *,
        client_protocol: int = 2,
        capabilities: Sequence[int] = (CAP_COMPRESSION_DEFLATE_RAW,),
        sid: str | None = None,
        announce: bool = False,
    ) -> None:
        """Connects to ``sfu`` as :attr:`identity` and forwards outgoing packets to it. Peers
        leaving are reported as ``participant_disconnected``; with ``announce``, peers joining
        are added to the participant table with what they connected with."""

        async def left(identity: str) -> None:
            await self.participant_disconnected(identity)

        async def joined(identity: str, protocol: int, caps: tuple[int, ...]) -> None:
            await self.add_peer(identity, protocol, caps)

        sfu.connect(
            self.identity,
            self.deliver,
            on_participant_left=left,
            on_participant_joined=joined if announce else None,
            client_protocol=client_protocol,
            capabilities=capabilities,
            sid=sid,
        )
        self.forward_to(sfu.sender(self.identity))

    # ---- RPC ---------------------------------------------------------------------------------

    async def register_rpc(self, method: str, behavior: str | Mapping[str, Any] = "echo") -> None:
        """Behaviors: ``echo``; ``{"kind": "sleep_ms", "ms": N}``; ``{"kind": "error", "code",
        "message", "data"}``; ``{"kind": "throw", "message"}``; ``{"kind": "throw_value",
        "value"}``; ``length``; ``{"kind": "repeat", "text", "count"}``; ``{"kind": "return",
        "value" | "value_gen"}``; ``return_undefined``; ``never``. Any may add ``delay_ms``."""
        await self.command(
            "register_rpc",
            method=method,
            behavior=behavior if isinstance(behavior, str) else dict(behavior),
        )

    async def unregister_rpc(self, method: str) -> None:
        await self.command("unregister_rpc", method=method)

    async def perform_rpc(
        self,
        destination: str,
        method: str,
        payload: str | None = None,
        *,
        payload_gen: Mapping[str, Any] | None = None,
        response_timeout_ms: int | None = None,
        call: str | None = None,
    ) -> str:
        """Starts ``performRpc``; returns the call id to pass to :meth:`rpc_result`."""
        call = call or self._new_call("rpc")
        await self.command(
            "perform_rpc",
            call=call,
            destination=destination,
            method=method,
            payload=payload,
            payload_gen=None if payload_gen is None else dict(payload_gen),
            response_timeout_ms=response_timeout_ms,
        )
        return call

    async def rpc_result(self, call: str, timeout: float = 30.0) -> Json:  # noqa: ASYNC109
        return await self.next_event("rpc_result", timeout=timeout, call=call)

    async def call_rpc(
        self,
        destination: str,
        method: str,
        payload: str | None = None,
        *,
        payload_gen: Mapping[str, Any] | None = None,
        response_timeout_ms: int | None = None,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> Json:
        """:meth:`perform_rpc` and wait for its ``rpc_result``."""
        call = await self.perform_rpc(
            destination,
            method,
            payload,
            payload_gen=payload_gen,
            response_timeout_ms=response_timeout_ms,
        )
        return await self.rpc_result(call, timeout)

    # ---- data streams ------------------------------------------------------------------------

    async def register_text_stream_handler(
        self, topic: str, *, mode: str = "read_all", delay_read_ms: int | None = None
    ) -> None:
        """``mode``: ``read_all`` (readAll), ``iterate`` (reports chunk sizes) or ``none``."""
        await self.command(
            "register_text_stream_handler", topic=topic, mode=mode, delay_read_ms=delay_read_ms
        )

    async def register_byte_stream_handler(
        self, topic: str, *, mode: str = "read_all", delay_read_ms: int | None = None
    ) -> None:
        await self.command(
            "register_byte_stream_handler", topic=topic, mode=mode, delay_read_ms=delay_read_ms
        )

    async def unregister_text_stream_handler(self, topic: str) -> None:
        await self.command("unregister_text_stream_handler", topic=topic)

    async def unregister_byte_stream_handler(self, topic: str) -> None:
        await self.command("unregister_byte_stream_handler", topic=topic)

    async def send_text(
        self,
        text: str | None = None,
        *,
        text_gen: Mapping[str, Any] | None = None,
        topic: str | None = None,
        destination_identities: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        compress: bool | None = None,
        attachments: Sequence[Mapping[str, Any]] | None = None,
        report_progress: bool = False,
        call: str | None = None,
    ) -> str:
        """``sendText``; attachments are ``{"name", "mime_type", "data" (base64) |
        "data_gen"}``. Returns the call id for :meth:`send_done`."""
        call = call or self._new_call("send")
        await self.command(
            "send_text",
            call=call,
            text=text,
            text_gen=None if text_gen is None else dict(text_gen),
            topic=topic,
            destination_identities=_list(destination_identities),
            attributes=_dict(attributes),
            compress=compress,
            attachments=None if attachments is None else [dict(a) for a in attachments],
            report_progress=report_progress or None,
        )
        return call

    async def send_bytes(
        self,
        data: bytes | None = None,
        *,
        data_gen: Mapping[str, Any] | None = None,
        topic: str | None = None,
        destination_identities: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        compress: bool | None = None,
        name: str | None = None,
        mime_type: str | None = None,
        report_progress: bool = False,
        call: str | None = None,
    ) -> str:
        call = call or self._new_call("send")
        await self.command(
            "send_bytes",
            call=call,
            data=None if data is None else base64.b64encode(data).decode(),
            data_gen=None if data_gen is None else dict(data_gen),
            topic=topic,
            destination_identities=_list(destination_identities),
            attributes=_dict(attributes),
            compress=compress,
            name=name,
            mime_type=mime_type,
            report_progress=report_progress or None,
        )
        return call

    async def send_file(
        self,
        data: bytes | None = None,
        *,
        data_gen: Mapping[str, Any] | None = None,
        file_name: str = "file.bin",
        file_type: str = "",
        topic: str | None = None,
        destination_identities: Sequence[str] | None = None,
        mime_type: str | None = None,
        compress: bool | None = None,
        report_progress: bool = False,
        call: str | None = None,
    ) -> str:
        """``sendFile`` of a File built from ``data``/``data_gen`` with ``file_name`` and
        ``file_type``; ``mime_type`` is the sendFile option."""
        call = call or self._new_call("send")
        file: Json = {"name": file_name, "mime_type": file_type}
        if data is not None:
            file["data"] = base64.b64encode(data).decode()
        if data_gen is not None:
            file["data_gen"] = dict(data_gen)
        await self.command(
            "send_file",
            call=call,
            file=file,
            topic=topic,
            destination_identities=_list(destination_identities),
            mime_type=mime_type,
            compress=compress,
            report_progress=report_progress or None,
        )
        return call

    async def stream_text(
        self,
        writes: Sequence[str | Mapping[str, Any]] = (),
        *,
        topic: str | None = None,
        destination_identities: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        total_size: int | None = None,
        type: str | None = None,
        version: int | None = None,
        reply_to_stream_id: str | None = None,
        attached_stream_ids: Sequence[str] | None = None,
        close: bool = True,
        call: str | None = None,
    ) -> str:
        """``streamText`` then one ``write`` per item (a string or a text generator), then
        ``close`` unless ``close=False`` (continue with :meth:`stream_write`). The call id
        also names the writer."""
        call = call or self._new_call("writer")
        await self.command(
            "stream_text",
            call=call,
            writes=[w if isinstance(w, str) else dict(w) for w in writes],
            topic=topic,
            destination_identities=_list(destination_identities),
            attributes=_dict(attributes),
            stream_id=stream_id,
            total_size=total_size,
            type=type,
            version=version,
            reply_to_stream_id=reply_to_stream_id,
            attached_stream_ids=_list(attached_stream_ids),
            close=close,
        )
        return call

    async def stream_bytes(
        self,
        writes: Sequence[bytes | Mapping[str, Any]] = (),
        *,
        topic: str | None = None,
        destination_identities: Sequence[str] | None = None,
        attributes: Mapping[str, str] | None = None,
        stream_id: str | None = None,
        total_size: int | None = None,
        name: str | None = None,
        mime_type: str | None = None,
        close: bool = True,
        call: str | None = None,
    ) -> str:
        call = call or self._new_call("writer")
        await self.command(
            "stream_bytes",
            call=call,
            writes=[_bytes_write(w) for w in writes],
            topic=topic,
            destination_identities=_list(destination_identities),
            attributes=_dict(attributes),
            stream_id=stream_id,
            total_size=total_size,
            name=name,
            mime_type=mime_type,
            close=close,
        )
        return call

    async def stream_write(
        self,
        writer: str,
        writes: Sequence[str | bytes | Mapping[str, Any]] = (),
        *,
        close: bool = False,
        call: str | None = None,
    ) -> str:
        """More writes (and optionally the close) on a writer left open; ``send_done`` for
        the returned call id reports them."""
        call = call or self._new_call("write")
        await self.command(
            "stream_write",
            call=call,
            writer=writer,
            writes=[
                w if isinstance(w, str) else _bytes_write(w) if isinstance(w, bytes) else dict(w)
                for w in writes
            ],
            close=close,
        )
        return call

    async def send_done(self, call: str, timeout: float = 30.0) -> Json:  # noqa: ASYNC109
        return await self.next_event("send_done", timeout=timeout, call=call)


def _list(items: Sequence[str] | None) -> list[str] | None:
    return None if items is None else list(items)


def _dict(items: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if items is None else dict(items)


def _bytes_write(w: bytes | Mapping[str, Any]) -> str | Json:
    return base64.b64encode(w).decode() if isinstance(w, bytes) else dict(w)
