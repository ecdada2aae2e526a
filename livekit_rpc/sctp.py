"""Faster SCTP for aiortc data channels: chunk bundling and, on same-host paths, large packets.

aiortc sends every SCTP chunk in a packet of its own (one DTLS record, one UDP datagram) and
cuts messages into 1,160-byte chunks. Both cost CPU per packet, not per byte, so data-channel
throughput is bounded by packet rate and a forwarding server spends most of its time in
packet handling. :class:`SctpTuner` changes two things on one ``RTCPeerConnection``:

* **Bundling** (RFC 4960 §6.10), always: chunks produced while one received packet is handled,
  or while queued data-channel messages are flushed, leave in as few packets as fit the
  packet size, control chunks (SACK, FORWARD TSN) first. A packet holding a SACK plus the
  replies it triggered, or an RPC acknowledgement plus its response, is one datagram.
* **Delayed SACKs** (RFC 4960 §6.2): every second packet is acknowledged at once; a SACK for
  a lone packet waits up to :data:`SACK_DELAY` for data going back to the same peer and rides
  with it, so a request's SACK travels with the reply.
* **Large packets**, only when both ends opted in and the connection never leaves the host.
  Each side that can receive them adds ``a=x-lkrpc-sctp-max-packet-size:N`` to the
  application section of the SDP it sends; LiveKit servers and other WebRTC stacks ignore
  the attribute and keep getting standard packets. Once ICE has chosen its pair, a side whose
  peer advertised the attribute, on a direct pair (no relay) whose remote address is one of
  its own (or loopback), sends SCTP packets of up to ``min(N, local)`` bytes. That path is
  the loopback device, whose MTU is 64 KiB, so nothing is fragmented. A peer on another host
  always gets standard packets, as IP fragmentation over a real network loses whole packets.

What large packets change inside aiortc (pinned to the version in ``pyproject.toml``): the
chunk size, which aiortc reads from its module constant ``USERDATA_MAX_LENGTH`` in four
methods (fragmentation, the burst limit and the congestion window's steps), is replaced for
this association only by re-binding those methods to a namespace with a larger value; DTLS
records are read and flushed with room for the larger packets; the congestion window is
capped (a same-host path needs little in flight, and a smaller flight cannot overrun the
receiving socket's buffer, whose size is also raised).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import socket
import struct
import types
from collections.abc import AsyncIterator, Callable, Iterable
from functools import cache
from typing import Any

from aiortc import RTCPeerConnection
from aiortc import rtcsctptransport as _aiortc_sctp
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcsctptransport import (
    Chunk,
    DataChunk,
    ForwardTsnChunk,
    HeartbeatAckChunk,
    ReconfigChunk,
    RTCSctpTransport,
    SackChunk,
)
from google_crc32c import value as crc32c

__all__ = [
    "LARGE_PACKET_SIZE",
    "PACKET_SIZE_ATTRIBUTE",
    "STANDARD_PACKET_SIZE",
    "SctpTuner",
    "advertised_packet_size",
    "is_same_host",
    "with_packet_size_attribute",
]

logger = logging.getLogger(__name__)

PACKET_SIZE_ATTRIBUTE = "x-lkrpc-sctp-max-packet-size"
"""SDP attribute (application m-section): the largest SCTP packet the sender can receive."""

STANDARD_PACKET_SIZE: int = _aiortc_sctp.SCTP_MAX_PACKET_LENGTH
"""aiortc's packet size, safe on any path: 1,189 bytes."""

LARGE_PACKET_SIZE = 16_000
"""Packet size offered and used on same-host paths: one DTLS record carries up to 16,384."""

LARGE_PACKET_CWND_LIMIT = 8 * LARGE_PACKET_SIZE
"""Most bytes in flight with large packets: same-host round trips are well under 1 ms."""

RECEIVE_BUFFER_BYTES = 1 << 21
"""``SO_RCVBUF`` asked for on same-host paths (the kernel caps it at ``rmem_max``)."""

SACK_DELAY = 0.02
"""Seconds a SACK for a lone packet waits for outgoing data to ride with."""

_DTLS_RECORD_ROOM = 16_384 + 512
"""Bytes to read for one DTLS datagram: the largest record plus its header and AEAD tag."""

_HEADER = struct.Struct("!HHL")
_CHECKSUM = struct.Struct("<L")
_CHUNK_HEADER_LENGTH = 12 + 16  # common header + DATA chunk header
_ATTRIBUTE_LINE = re.compile(rf"^a={re.escape(PACKET_SIZE_ATTRIBUTE)}:(\d+)\s*$", re.MULTILINE)

_CONTROL_CHUNKS = (SackChunk, ForwardTsnChunk, HeartbeatAckChunk, ReconfigChunk)
_BUNDLED_CHUNKS = (DataChunk, *_CONTROL_CHUNKS)

# The methods of RTCSctpTransport that read USERDATA_MAX_LENGTH while an association runs.
_SIZED_METHODS = ("_receive_sack_chunk", "_send", "_t3_expired", "_transmit")


def with_packet_size_attribute(sdp: str, size: int) -> str:
    """``sdp`` with ``a=x-lkrpc-sctp-max-packet-size:<size>`` in each application section."""
    lines = sdp.splitlines()
    out: list[str] = []
    in_application = False
    for line in lines:
        if line.startswith("m="):
            in_application = line.startswith("m=application")
        elif in_application and line.startswith(f"a={PACKET_SIZE_ATTRIBUTE}:"):
            continue
        out.append(line)
        if in_application and line.startswith("a=sctp-port:"):
            out.append(f"a={PACKET_SIZE_ATTRIBUTE}:{size}")
    return "\r\n".join(out) + "\r\n"


def advertised_packet_size(sdp: str) -> int | None:
    """The packet size a remote SDP advertises, or ``None`` (also for nonsense values)."""
    match = _ATTRIBUTE_LINE.search(sdp)
    if match is None:
        return None
    size = int(match.group(1))
    return size if STANDARD_PACKET_SIZE <= size <= 65_535 else None


def is_same_host(local_host: str, remote_host: str, local_hosts: Iterable[str] = ()) -> bool:
    """Whether ``remote_host`` is this machine: loopback, or one of our own addresses."""
    try:
        remote = ipaddress.ip_address(remote_host)
    except ValueError:
        return False
    if remote.is_loopback:
        return True
    own = {local_host, *local_hosts}
    return remote_host in own


def _user_data_size(packet_size: int) -> int:
    return (packet_size - _CHUNK_HEADER_LENGTH) // 4 * 4


def _rebind(func: Callable[..., Any], **names: Any) -> Callable[..., Any]:
    """A copy of ``func`` whose module-level names ``names`` have other values."""
    namespace = dict(func.__globals__, **names)
    clone = types.FunctionType(
        func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__
    )
    clone.__kwdefaults__ = func.__kwdefaults__
    clone.__qualname__ = func.__qualname__
    clone.__doc__ = func.__doc__
    return clone


class BundlingSctpTransport(RTCSctpTransport):
    """aiortc's SCTP association, sending chunks bundled.

    Instances are made by switching the class of an existing ``RTCSctpTransport`` (see
    :meth:`SctpTuner.install`); :meth:`_init_bundling` then sets the extra state.
    """

    packet_size: int = STANDARD_PACKET_SIZE
    """Largest packet this association sends."""

    def _init_bundling(self) -> None:
        self._bundle_depth = 0
        self._bundle_control: list[bytes] = []
        self._bundle_data: list[bytes] = []
        self._unacked_packets = 0
        self._sack_handle: asyncio.Handle | None = None
        self._sack_task: asyncio.Task[None] | None = None

    async def _handle_data(self, data: bytes) -> None:
        async with self._bundling():
            await super()._handle_data(data)

    async def _data_channel_flush(self) -> None:
        async with self._bundling():
            await super()._data_channel_flush()

    @contextlib.asynccontextmanager
    async def _bundling(self) -> AsyncIterator[None]:
        """Chunks sent inside leave, bundled, when the outermost such scope ends; a pending
        SACK rides in the packet carrying the data."""
        self._bundle_depth += 1
        try:
            yield
            if self._sack_needed and self._bundle_data:
                await self._sack_now()
        finally:
            self._bundle_depth -= 1
            if not self._bundle_depth:
                await self._flush_bundle()

    async def _send_sack(self) -> None:
        # aiortc calls this after each received packet that needs acknowledging. Every second
        # such packet is acknowledged at once; a lone one waits (RFC 4960 §6.2 allows 200 ms)
        # for data going back to the peer, such as an RPC's reply, and rides with it. That
        # saves a datagram at each end, and the waking of a process that had nothing to do.
        self._unacked_packets += 1
        if self._unacked_packets >= 2:
            await self._sack_now()
        elif self._sack_handle is None:
            loop = asyncio.get_running_loop()
            self._sack_handle = loop.call_later(SACK_DELAY, self._sack_later)

    async def _sack_now(self) -> None:
        self._unacked_packets = 0
        if self._sack_handle is not None:
            self._sack_handle.cancel()
            self._sack_handle = None
        await super()._send_sack()

    def _sack_later(self) -> None:
        self._sack_handle = None
        if self._sack_needed and self._sack_task is None:
            self._sack_task = asyncio.ensure_future(self._send_delayed_sack())

    async def _send_delayed_sack(self) -> None:
        try:
            if self._sack_needed and self._association_state == self.State.ESTABLISHED:
                await self._sack_now()
        except ConnectionError:
            pass  # the association is going away; nothing is left to acknowledge
        finally:
            self._sack_task = None

    def _set_state(self, state: RTCSctpTransport.State) -> None:
        super()._set_state(state)
        if state == self.State.CLOSED:
            if self._sack_handle is not None:
                self._sack_handle.cancel()
                self._sack_handle = None
            if self._sack_task is not None:
                self._sack_task.cancel()

    async def _send_chunk(self, chunk: Chunk) -> None:
        if not self._bundle_depth or not isinstance(chunk, _BUNDLED_CHUNKS):
            await self._flush_bundle()
            await super()._send_chunk(chunk)
            return
        if isinstance(chunk, _CONTROL_CHUNKS):
            self._bundle_control.append(bytes(chunk))
        else:
            self._bundle_data.append(bytes(chunk))

    async def _flush_bundle(self) -> None:
        if not self._bundle_control and not self._bundle_data:
            return
        chunks = self._bundle_control + self._bundle_data
        self._bundle_control = []
        self._bundle_data = []
        limit = self.packet_size - 12
        packet: list[bytes] = []
        size = 0
        for chunk in chunks:
            if packet and size + len(chunk) > limit:
                await self._send_packet(packet)
                packet, size = [], 0
            packet.append(chunk)
            size += len(chunk)
        await self._send_packet(packet)

    async def _send_packet(self, chunks: list[bytes]) -> None:
        header = _HEADER.pack(self._local_port, self._remote_port, self._remote_verification_tag)
        body = b"".join(chunks)
        checksum = crc32c(header + b"\x00\x00\x00\x00" + body)
        await self.transport._send_data(header + _CHECKSUM.pack(checksum) + body)


@cache
def _large_packet_class(packet_size: int) -> type[BundlingSctpTransport]:
    """A :class:`BundlingSctpTransport` whose chunks carry up to ``packet_size`` bytes."""
    user_data = _user_data_size(packet_size)
    methods: dict[str, Any] = {
        name: _rebind(getattr(RTCSctpTransport, name), USERDATA_MAX_LENGTH=user_data)
        for name in _SIZED_METHODS
    }
    sized_sack = methods["_receive_sack_chunk"]
    cwnd_limit = max(LARGE_PACKET_CWND_LIMIT, 4 * packet_size)

    async def _receive_sack_chunk(self: BundlingSctpTransport, chunk: SackChunk) -> None:
        await sized_sack(self, chunk)
        self._cwnd = min(self._cwnd, cwnd_limit)

    methods["_receive_sack_chunk"] = _receive_sack_chunk
    methods["packet_size"] = packet_size
    return type(f"LargePacketSctpTransport{packet_size}", (BundlingSctpTransport,), methods)


def _read_large_records(ssl: Any) -> None:
    """Make aiortc's fixed 1,500-byte DTLS reads and BIO flushes take whole large records."""
    connection_class = type(ssl)
    ssl.recv = lambda bufsiz, flags=None: connection_class.recv(ssl, _DTLS_RECORD_ROOM, flags)
    ssl.bio_read = lambda bufsiz: connection_class.bio_read(ssl, _DTLS_RECORD_ROOM)


class SctpTuner:
    """Bundling, and large packets where allowed, for one ``RTCPeerConnection``.

    Call :meth:`local_description` on every SDP about to be sent (it returns the SDP to send)
    and :meth:`remote_description` on every SDP received, before handing it to aiortc.

    :param large_packets: offer and use large packets on same-host paths; ``False`` keeps
        aiortc's packet size everywhere (bundling stays on).
    """

    def __init__(self, pc: RTCPeerConnection, *, large_packets: bool = True) -> None:
        self._pc = pc
        self._large_packets = large_packets
        self._remote_size: int | None = None
        self._installed: Any = None
        self.packet_size = STANDARD_PACKET_SIZE
        """SCTP packet size this side sends with (known once DTLS starts)."""

    def local_description(self, sdp: str) -> str:
        """Install the tuning (the association exists by now) and return ``sdp`` to send."""
        self.install()
        if not self._large_packets:
            return sdp
        return with_packet_size_attribute(sdp, LARGE_PACKET_SIZE)

    def remote_description(self, sdp: str) -> None:
        """Note what the remote SDP advertises."""
        self._remote_size = advertised_packet_size(sdp)

    def install(self) -> None:
        """Switch the connection's SCTP transport to bundling, once; a no-op before it exists."""
        sctp = self._pc.sctp
        if sctp is None or self._installed is sctp:
            return
        if type(sctp) is not RTCSctpTransport:  # pragma: no cover - aiortc changed
            logger.warning("not tuning unexpected SCTP transport %r", type(sctp))
            return
        sctp.__class__ = BundlingSctpTransport
        assert isinstance(sctp, BundlingSctpTransport)
        sctp._init_bundling()
        self._installed = sctp
        dtls = sctp.transport
        dtls.on("statechange", lambda: self._dtls_state_changed(sctp))

    def _dtls_state_changed(self, sctp: BundlingSctpTransport) -> None:
        dtls = sctp.transport
        if dtls._state is not DtlsState.CONNECTING or self._installed is not sctp:
            return
        if self._large_packets:
            _read_large_records(dtls._ssl)
        size = self._choose_packet_size(dtls)
        if size is None:
            return
        sctp.__class__ = _large_packet_class(size)
        sctp._cwnd = min(4 * size, max(2 * size, 4380))
        self.packet_size = size
        logger.debug("same-host path: SCTP packets of up to %d bytes", size)

    def _choose_packet_size(self, dtls: Any) -> int | None:
        if not self._large_packets or self._remote_size is None:
            return None
        connection = getattr(dtls.transport, "_connection", None)
        pair = getattr(connection, "_nominated", {}).get(1)
        if pair is None:
            return None
        local, remote = pair.local_candidate, pair.remote_candidate
        if local.type != "host" or remote.type not in ("host", "prflx"):
            return None  # a relay on this host may forward to anywhere
        local_hosts = [c.host for c in getattr(connection, "local_candidates", [])]
        if not is_same_host(local.host, remote.host, local_hosts):
            return None
        _raise_receive_buffer(pair.protocol)
        return min(self._remote_size, LARGE_PACKET_SIZE)


def _raise_receive_buffer(protocol: Any) -> None:
    transport = getattr(protocol, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < RECEIVE_BUFFER_BYTES:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    except OSError:  # pragma: no cover - a platform without the option
        logger.debug("could not raise the receive buffer", exc_info=True)
