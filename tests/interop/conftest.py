"""Fixtures for tests that talk to livekit-client running in Node (see node_peer.py), and for
the interop suite proper: our :class:`~livekit_rpc.RpcEndpoint` ("py") and a JS peer ("js")
exchanging serialized DataPackets through the fake SFU (:func:`make_pair`)."""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from livekit.protocol import models

from livekit_rpc import RpcEndpoint, RpcInvocationData, StaticPeerDirectory, StreamLimits
from livekit_rpc.wire import constants as c
from tests.hygiene import ErrorRecords, asyncio_reports_nothing, no_leftover_tasks

from .node_peer import NodePeer, RemotePeer, ensure_built
from .sfu import Crossing, FakeSfu

__all__ = ["asyncio_reports_nothing", "no_leftover_tasks"]

DataPacket = models.DataPacket
DEFLATE_RAW = models.DataStream.CompressionType.DEFLATE_RAW
NONE = models.DataStream.CompressionType.NONE
CHUNK = c.STREAM_CHUNK_SIZE

JS_CAPABILITIES: tuple[int, ...] = (c.CAP_COMPRESSION_DEFLATE_RAW,)
"""What livekit-client advertises (it can always deflate-raw in Node 20)."""
PY_CAPABILITIES: tuple[int, ...] = tuple(c.LOCAL_CAPABILITIES)
"""What this library advertises: deflate-raw plus its own extension capabilities."""


# ---- generic checks every interop test gets -----------------------------------------------


# asyncio_reports_nothing and no_leftover_tasks (imported above) apply to every test here.


HANG_TIMEOUT_S = 60.0
"""No interop test needs more than a few seconds; one stuck this long is failed, with the
stacks of every task, instead of stalling the whole run."""


@pytest.fixture(autouse=True)
async def hang_guard(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    name = request.node.originalname

    def expire() -> None:
        stacks = io.StringIO()
        for task in asyncio.all_tasks(loop):
            stacks.write(f"--- {task!r}\n")
            task.print_stack(file=stacks)
        sys.stderr.write(
            f"{request.node.nodeid} hung for {HANG_TIMEOUT_S:g} s:\n{stacks.getvalue()}"
        )
        for task in asyncio.all_tasks(loop):
            if getattr(task.get_coro(), "__name__", None) == name:
                task.cancel()

    handle = loop.call_later(HANG_TIMEOUT_S, expire)
    yield
    handle.cancel()


# ---- harness fixtures -------------------------------------------------------------------------


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


# ---- our endpoint against the JS peer ---------------------------------------------------------


def is_extension_name(name: str) -> bool:
    return name.startswith("lkrpc.")


def extension_leaks(sfu: FakeSfu, recipient: str = "js") -> list[str]:
    """Everything of this library's extensions that crossed the SFU towards ``recipient``:
    zstd compression, ``lkrpc.*`` topics and ``lkrpc.*`` attributes (header or trailer)."""
    leaks: list[str] = []
    for crossing in sfu.packets(include_dropped=True):
        if recipient not in crossing.recipients:
            continue
        packet = crossing.packet
        case = crossing.case
        if case == "stream_header":
            header = packet.stream_header
            if header.compression == c.COMPRESSION_LKRPC_ZSTD:
                leaks.append(f"#{crossing.index}: zstd header")
            if header.compression not in (NONE, DEFLATE_RAW):
                leaks.append(f"#{crossing.index}: compression {header.compression}")
            if is_extension_name(header.topic):
                leaks.append(f"#{crossing.index}: topic {header.topic}")
            leaks += [
                f"#{crossing.index}: attribute {k}"
                for k in header.attributes
                if is_extension_name(k)
            ]
        elif case == "stream_trailer":
            leaks += [
                f"#{crossing.index}: trailer attribute {k}"
                for k in packet.stream_trailer.attributes
                if is_extension_name(k)
            ]
    return leaks


@dataclass
class Pair:
    """Our endpoint ("py") and livekit-client ("js") in one room of the fake SFU.

    ``py_sees_js`` is our directory entry for "js" (it decides how we send to it);
    ``js_sees_py`` is the JS participant-table entry for "py" (it decides how JS sends to us).
    """

    sfu: FakeSfu
    js: NodePeer
    py: RpcEndpoint
    directory: StaticPeerDirectory
    js_sees_py: RemotePeer
    py_sees_js: tuple[int, tuple[int, ...]]
    invocations: list[RpcInvocationData] = field(default_factory=list)
    allowed_js_events: set[str] = field(default_factory=set)
    """JS event kinds (``dispatch_error``, ``packet_dropped``) a test expects to see."""
    _delivering: bool = True
    _py_connected: bool = True
    _errors: ErrorRecords = field(default_factory=ErrorRecords)

    # -- wiring ----------------------------------------------------------------------------

    def _deliver(self, packet: DataPacket) -> None:
        # As a room's receive loop would: the serialized message goes to handle_bytes.
        if self._delivering:
            self.py.handle_bytes(packet.SerializeToString())

    def _left(self, identity: str) -> None:
        if self._delivering:
            self.py.handle_participant_disconnected(identity)
            self.directory.remove(identity)

    async def disconnect_py(self) -> None:
        """Our endpoint leaves the SFU (the JS side is told, as a room would be)."""
        self._py_connected = False
        await self.sfu.disconnect("py")

    async def disconnect_js(self) -> None:
        """The JS peer leaves the SFU: we are told (``handle_participant_disconnected``)."""
        await self.sfu.disconnect("js")

    async def close(self) -> None:
        """Teardown: stop feeding our endpoint, close it, then check nothing went wrong."""
        if self._py_connected:
            await self.sfu.drain()
        self._delivering = False
        await self.py.aclose()
        logging.getLogger("livekit_rpc").removeHandler(self._errors)
        self.sfu.raise_errors()
        assert extension_leaks(self.sfu) == []
        assert self.js.problems == []
        unexpected = [
            e
            for e in self.js.events
            if e.get("ev") in ("dispatch_error", "packet_dropped")
            and e["ev"] not in self.allowed_js_events
        ]
        assert unexpected == []
        assert [r.getMessage() for r in self._errors.records] == []

    # -- Python-side handlers --------------------------------------------------------------

    def serve(self, method: str, reply: Callable[[RpcInvocationData], Any]) -> None:
        """Registers ``method`` on our server; every invocation is recorded."""

        async def handler(data: RpcInvocationData) -> Any:
            self.invocations.append(data)
            result = reply(data)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        self.py.server.register_rpc_method(method, handler)

    def serve_echo(self, method: str = "echo") -> None:
        self.serve(method, lambda data: data.payload)

    # -- wire inspection -------------------------------------------------------------------

    def sent_by(self, identity: str, case: str | None = None) -> list[Crossing]:
        return self.sfu.packets(sender=identity, case=case)

    async def settle(self) -> None:
        """Waits until every packet in flight has been delivered and handled."""
        await self.sfu.drain()
        await asyncio.sleep(0)


MakePair = Callable[..., Awaitable[Pair]]


def default_view(protocol: int, capabilities: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    return protocol, tuple(capabilities)


@pytest.fixture
async def make_pair(
    sfu: FakeSfu, make_node_peer: Callable[..., Awaitable[NodePeer]]
) -> AsyncIterator[MakePair]:
    """``await make_pair(protocol)``: our endpoint "py" and a JS peer "js", both in ``sfu``.

    ``protocol`` sets both views: what JS believes about "py" (``client_protocol`` =
    protocol, with this library's real capabilities) and what our directory says about "js"
    (protocol, with livekit-client's capabilities). ``js_sees_py``/``py_sees_js`` override
    either view. The pair is torn down (and checked) at the end of the test.
    """
    pairs: list[Pair] = []

    async def make(
        protocol: int = 2,
        *,
        js_sees_py: RemotePeer | None = None,
        py_sees_js: tuple[int, Sequence[int]] | None = None,
        limits: StreamLimits | None = None,
        inline_limit: int | None = None,
    ) -> Pair:
        js_view = js_sees_py or RemotePeer(protocol, PY_CAPABILITIES)
        py_view = default_view(*(py_sees_js or (protocol, JS_CAPABILITIES)))
        js = await make_node_peer("js", peers={"py": js_view}, inline_limit=inline_limit)
        await js.join(sfu, client_protocol=py_view[0], capabilities=py_view[1])
        directory = StaticPeerDirectory()
        directory.add("js", *py_view)
        endpoint = RpcEndpoint(peers=directory, send_packet=sfu.sender("py"), limits=limits)
        pair = Pair(sfu, js, endpoint, directory, js_view, py_view)
        logging.getLogger("livekit_rpc").addHandler(pair._errors)
        sfu.connect(
            "py",
            pair._deliver,
            on_participant_left=pair._left,
            client_protocol=js_view.client_protocol,
            capabilities=js_view.capabilities,
        )
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        await pair.close()


# ---- payload helpers --------------------------------------------------------------------------


def deflate_raw(data: bytes) -> bytes:
    codec = zlib.compressobj(-1, zlib.DEFLATED, -15)
    return codec.compress(data) + codec.flush()


def inflate_raw(data: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    out = d.decompress(data) + d.flush()
    assert d.eof and not d.unused_data
    return out


_MIXED_ALPHABET = (
    [chr(x) for x in range(0x61, 0x7B)]  # 1 byte
    + [chr(x) for x in range(0xC0, 0x100)]  # 2 bytes
    + [chr(0x4E00 + 37 * i) for i in range(64)]  # 3 bytes
    + [chr(0x1F600 + i) for i in range(64)]  # 4 bytes
)


def mixed_text(size: int, seed: int = 1) -> str:
    """Poorly compressible text of exactly ``size`` UTF-8 bytes mixing 1-, 2-, 3- and 4-byte
    characters, so chunk cuts (raw or after inflating) fall inside characters."""
    import random

    rng = random.Random(seed)
    out: list[str] = []
    used = 0
    while size - used >= 4:
        ch = rng.choice(_MIXED_ALPHABET)
        out.append(ch)
        used += len(ch.encode())
    out.append("a" * (size - used))
    return "".join(out)


@dataclass(frozen=True)
class StreamOnWire:
    """One data stream as it crossed the SFU: its header, chunks and trailer."""

    header: Crossing
    chunks: list[Crossing]
    trailer: Crossing | None

    @property
    def info(self) -> models.DataStream.Header:
        return self.header.packet.stream_header

    @property
    def inline(self) -> bool:
        return self.info.HasField("inline_content")

    @property
    def chunk_sizes(self) -> list[int]:
        return [len(c.packet.stream_chunk.content) for c in self.chunks]

    def content(self) -> bytes:
        """The payload as the wire carries it, decompressed (independent of any receiver)."""
        raw = (
            self.info.inline_content
            if self.inline
            else b"".join(c.packet.stream_chunk.content for c in self.chunks)
        )
        if self.info.compression == DEFLATE_RAW:
            return inflate_raw(raw)
        assert self.info.compression == NONE
        return raw

    def _chunking(self) -> dict[str, Any]:
        indices = [c.packet.stream_chunk.chunk_index for c in self.chunks]
        assert indices == list(range(len(indices)))
        if self.info.compression == NONE:
            return {"chunk_sizes": self.chunk_sizes}
        # Deflate output differs between zlib builds (Node bundles Chromium's), so compressed
        # streams are compared by their rule: exact 15,000-byte chunks, then the rest.
        sizes = self.chunk_sizes
        exact = all(s == CHUNK for s in sizes[:-1]) and all(0 < s <= CHUNK for s in sizes[-1:])
        return {"chunked": bool(sizes), "exact_chunks": exact}

    def shape(self) -> dict[str, Any]:
        """What must match between two senders of the same payload (no ids, no timestamps)."""
        return {
            "form": "inline" if self.inline else "chunked",
            "compression": self.info.compression,
            "total_length": self.info.total_length if self.info.HasField("total_length") else None,
            "content_header": self.info.WhichOneof("content_header"),
            "mime_type": self.info.mime_type,
            **self._chunking(),
            "trailer": None
            if self.trailer is None
            else (
                self.trailer.packet.stream_trailer.reason,
                dict(self.trailer.packet.stream_trailer.attributes),
            ),
        }


def streams_on_wire(sfu: FakeSfu, sender: str, topic: str | None = None) -> list[StreamOnWire]:
    """Every stream ``sender`` sent (optionally only on ``topic``), in header order."""
    out: list[StreamOnWire] = []
    for header in sfu.packets(sender=sender, case="stream_header"):
        if topic is not None and header.packet.stream_header.topic != topic:
            continue
        sid = header.packet.stream_header.stream_id
        chunks = [
            x
            for x in sfu.packets(sender=sender, case="stream_chunk")
            if x.packet.stream_chunk.stream_id == sid
        ]
        trailers = [
            x
            for x in sfu.packets(sender=sender, case="stream_trailer")
            if x.packet.stream_trailer.stream_id == sid
        ]
        assert len(trailers) <= 1
        assert all(x.index > header.index for x in chunks)
        out.append(StreamOnWire(header, chunks, trailers[0] if trailers else None))
    return out


def expected_form(
    payload: bytes, *, v2: bool, deflate: bool, observed: Crossing
) -> tuple[str, int]:
    """How livekit-client sends a whole payload (sendText/sendBytes), by its rules: inline
    only to v2 recipients, compressed inline only when strictly smaller, inline only if the
    serialized packet (without sequence) fits 15,000 bytes; otherwise chunked, compressed
    whenever allowed. The header fields other than the content are taken from ``observed``."""
    if v2:
        content, compression = payload, NONE
        if deflate:
            packed = deflate_raw(payload)
            if len(packed) < len(payload):
                content, compression = packed, DEFLATE_RAW
        probe = DataPacket()
        probe.ParseFromString(observed.raw)
        probe.ClearField("sequence")
        probe.stream_header.inline_content = content
        probe.stream_header.compression = compression  # type: ignore[assignment]
        probe.stream_header.total_length = len(payload)
        if probe.ByteSize() <= CHUNK:
            return "inline", compression
    return "chunked", DEFLATE_RAW if (v2 and deflate) else NONE


def normalized(crossing: Crossing) -> DataPacket:
    """The sender's packet with what legitimately differs between two senders blanked:
    the engine's sequence number, request ids and the (2-letter) destination."""
    packet = DataPacket()
    packet.ParseFromString(crossing.raw)
    packet.ClearField("sequence")
    if packet.destination_identities:
        assert list(packet.destination_identities) in (["py"], ["js"])
        packet.destination_identities[:] = ["XX"]
    case = packet.WhichOneof("value")
    if case == "rpc_request":
        packet.rpc_request.id = "I" * 36
    elif case == "rpc_ack":
        packet.rpc_ack.request_id = "I" * 36
    elif case == "rpc_response":
        packet.rpc_response.request_id = "I" * 36
    elif case == "stream_header":
        header = packet.stream_header
        header.stream_id = "S" * 36
        header.timestamp = 1
        if header.HasField("inline_content") and header.compression == DEFLATE_RAW:
            # zlib builds differ (Node bundles Chromium's): compare what the bytes mean.
            header.inline_content = inflate_raw(header.inline_content)
        if c.ATTR_REQUEST_ID in header.attributes:
            header.attributes[c.ATTR_REQUEST_ID] = "I" * 36
    elif case == "stream_chunk":
        packet.stream_chunk.stream_id = "S" * 36
    elif case == "stream_trailer":
        packet.stream_trailer.stream_id = "S" * 36
    return packet
