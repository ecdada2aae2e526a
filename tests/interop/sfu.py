"""A tiny in-process stand-in for the LiveKit SFU's data-packet forwarding, for tests.

Endpoints are any number of ``(identity, async deliver(packet))`` pairs: a :class:`NodePeer`
running livekit-client, or one of our own Python endpoints. What the SFU does, following the
real server's data path:

* stamps ``participant_identity`` (and, if configured, ``participant_sid``) on every packet;
* forwards it to the identities in ``destination_identities``, or to every other connected
  endpoint when that list is empty; ``destination_identities`` stays in the forwarded packet;
* preserves per-recipient order; a publisher never waits for recipients to process a packet
  (each recipient has its own delivery queue and task, like a network link);
* drops packets from endpoints that are not connected.

Every packet crossing it is captured (the sender's bytes and the stamped packet) for byte-level
assertions. An optional interceptor can drop or rewrite packets for fault injection.
Participant join/leave notifications travel through the same per-recipient queues, so a
recipient sees a leaving participant's last packets before the leave notice.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal

from livekit.protocol import models

DataPacket = models.DataPacket

Deliver = Callable[[DataPacket], Awaitable[None] | None]
"""Hands a forwarded packet to an endpoint (a coroutine function or a plain function)."""
Send = Callable[[DataPacket], Awaitable[None]]
"""What an endpoint calls to publish a packet (see :meth:`FakeSfu.sender`)."""
OnLeft = Callable[[str], Awaitable[None] | None]
"""Told the identity of a participant that left."""
OnJoined = Callable[[str, int, tuple[int, ...]], Awaitable[None] | None]
"""Told (identity, client_protocol, capabilities) of a participant that is in the room."""
Interceptor = Callable[["Crossing"], DataPacket | None]
"""Sees each packet before routing; returns the packet to forward (possibly changed) or None."""

CAP_COMPRESSION_DEFLATE_RAW = 2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Crossing:
    """One packet that crossed the SFU."""

    index: int
    sender: str
    raw: bytes
    """The packet as the sender serialized it, before stamping."""
    packet: DataPacket
    """The stamped packet as forwarded (after the interceptor, if it changed it)."""
    recipients: tuple[str, ...]
    dropped: bool = False

    @property
    def case(self) -> str | None:
        """Which ``DataPacket.value`` oneof is set (``rpc_request``, ``stream_header``...)."""
        case = self.packet.WhichOneof("value")
        return None if case is None else str(case)

    @property
    def forwarded_bytes(self) -> bytes:
        return self.packet.SerializeToString()


@dataclass
class _Endpoint:
    identity: str
    sid: str | None
    deliver: Deliver
    on_left: OnLeft | None
    on_joined: OnJoined | None
    client_protocol: int
    capabilities: tuple[int, ...]
    queue: asyncio.Queue[_Delivery] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class _Delivery:
    what: Literal["packet", "left", "joined"]
    packet: DataPacket | None = None
    identity: str = ""
    client_protocol: int = 0
    capabilities: tuple[int, ...] = ()


class FakeSfu:
    """Routes DataPackets between connected endpoints; use as ``async with FakeSfu() as sfu``."""

    def __init__(self, *, stamp_sid: bool = False) -> None:
        self._stamp_sid = stamp_sid
        self._endpoints: dict[str, _Endpoint] = {}
        self.captured: list[Crossing] = []
        self.errors: list[tuple[str, BaseException]] = []
        self.interceptor: Interceptor | None = None
        self._closed = False

    async def __aenter__(self) -> FakeSfu:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- membership ------------------------------------------------------------------------

    @property
    def identities(self) -> list[str]:
        return list(self._endpoints)

    def connect(
        self,
        identity: str,
        deliver: Deliver,
        *,
        on_participant_left: OnLeft | None = None,
        on_participant_joined: OnJoined | None = None,
        client_protocol: int = 2,
        capabilities: Sequence[int] = (CAP_COMPRESSION_DEFLATE_RAW,),
        sid: str | None = None,
    ) -> None:
        """Adds an endpoint. ``client_protocol``/``capabilities`` are only what joined-hooks of
        the other endpoints are told; the SFU itself never looks at them."""
        if self._closed:
            raise RuntimeError("the SFU is closed")
        if identity in self._endpoints:
            raise ValueError(f"{identity!r} is already connected")
        if sid is None and self._stamp_sid:
            sid = f"PA_{identity}"
        ep = _Endpoint(
            identity=identity,
            sid=sid,
            deliver=deliver,
            on_left=on_participant_left,
            on_joined=on_participant_joined,
            client_protocol=client_protocol,
            capabilities=tuple(capabilities),
        )
        ep.task = asyncio.create_task(self._run(ep), name=f"sfu-deliver-{identity}")
        for other in self._endpoints.values():
            if other.on_joined is not None:
                other.queue.put_nowait(
                    _Delivery("joined", None, identity, ep.client_protocol, ep.capabilities)
                )
            if ep.on_joined is not None:
                ep.queue.put_nowait(
                    _Delivery(
                        "joined", None, other.identity, other.client_protocol, other.capabilities
                    )
                )
        self._endpoints[identity] = ep

    async def disconnect(self, identity: str) -> None:
        """Removes an endpoint (packets still queued for it are lost) and tells the others."""
        ep = self._endpoints.pop(identity)
        await self._stop(ep)
        for other in self._endpoints.values():
            if other.on_left is not None:
                other.queue.put_nowait(_Delivery("left", identity=identity))

    def sender(self, identity: str) -> Send:
        """An ``async send_packet(packet)`` callable publishing as ``identity``."""

        async def send(packet: DataPacket) -> None:
            await self.publish(identity, packet)

        return send

    # ---- forwarding ------------------------------------------------------------------------

    async def publish(self, sender: str, packet: DataPacket) -> None:
        """Forwards ``packet`` from ``sender``. Returns once it is queued for every recipient."""
        raw = packet.SerializeToString()
        stamped = DataPacket()
        stamped.CopyFrom(packet)
        src = self._endpoints.get(sender)
        stamped.participant_identity = sender
        if src is not None and src.sid is not None:
            stamped.participant_sid = src.sid
        index = len(self.captured)
        if src is None:
            log.warning("dropping a packet from %r, which is not connected", sender)
            self.captured.append(Crossing(index, sender, raw, stamped, (), dropped=True))
            return

        crossing = Crossing(index, sender, raw, stamped, self._route(sender, stamped))
        if self.interceptor is not None:
            changed = self.interceptor(crossing)
            if changed is None:
                self.captured.append(
                    Crossing(index, sender, raw, stamped, crossing.recipients, dropped=True)
                )
                return
            crossing = Crossing(index, sender, raw, changed, self._route(sender, changed))
        self.captured.append(crossing)
        for identity in crossing.recipients:
            copy = DataPacket()
            copy.CopyFrom(crossing.packet)
            self._endpoints[identity].queue.put_nowait(_Delivery("packet", copy))

    def _route(self, sender: str, packet: DataPacket) -> tuple[str, ...]:
        targets = list(packet.destination_identities)
        if not targets:
            return tuple(i for i in self._endpoints if i != sender)
        return tuple(dict.fromkeys(i for i in targets if i in self._endpoints and i != sender))

    async def _run(self, ep: _Endpoint) -> None:
        while True:
            item = await ep.queue.get()
            try:
                result: Awaitable[None] | None = None
                if item.what == "packet":
                    assert item.packet is not None
                    result = ep.deliver(item.packet)
                elif item.what == "left" and ep.on_left is not None:
                    result = ep.on_left(item.identity)
                elif item.what == "joined" and ep.on_joined is not None:
                    result = ep.on_joined(item.identity, item.client_protocol, item.capabilities)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("delivering to %r failed", ep.identity)
                self.errors.append((ep.identity, e))
            finally:
                ep.queue.task_done()

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Waits until every queued delivery has been handed over (and processed, for
        endpoints whose deliver waits for processing). Raises the first delivery error."""
        async with asyncio.timeout(timeout):
            while True:
                pending = [ep.queue.join() for ep in self._endpoints.values()]
                await asyncio.gather(*pending)
                if all(ep.queue.empty() for ep in self._endpoints.values()):
                    break
        self.raise_errors()

    def raise_errors(self) -> None:
        if self.errors:
            identity, error = self.errors[0]
            raise RuntimeError(f"delivery to {identity!r} failed: {error!r}") from error

    # ---- inspection ------------------------------------------------------------------------

    def packets(
        self,
        *,
        sender: str | None = None,
        case: str | None = None,
        include_dropped: bool = False,
    ) -> list[Crossing]:
        return [
            c
            for c in self.captured
            if (sender is None or c.sender == sender)
            and (case is None or c.case == case)
            and (include_dropped or not c.dropped)
        ]

    # ---- shutdown --------------------------------------------------------------------------

    async def _stop(self, ep: _Endpoint) -> None:
        if ep.task is not None:
            # asyncio.wait never raises the task's CancelledError but still lets a
            # cancellation of the caller through. Cancel until it is done: a deliver callable
            # may swallow one cancellation (asyncio.wait_for does on Python 3.11 when its
            # inner future completes at the same moment), which used to hang disconnect().
            while not ep.task.done():
                ep.task.cancel()
                await asyncio.wait([ep.task], timeout=1.0)
            ep.task = None

    async def close(self) -> None:
        self._closed = True
        endpoints = list(self._endpoints.values())
        self._endpoints.clear()
        for ep in endpoints:
            await self._stop(ep)
