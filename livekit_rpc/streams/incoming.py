"""Asyncio side of incoming data streams: handler registry, readers and timers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from ..wire.packets import DataPacket
from .assembler import (
    StreamAssembler,
    StreamData,
    StreamEnded,
    StreamEvent,
    StreamFailed,
    StreamKind,
    StreamOpened,
)
from .reader import ByteStreamReader, TextStreamReader
from .types import (
    ByteStreamInfo,
    DataStreamError,
    DataStreamErrorReason,
    StreamLimits,
    TextStreamInfo,
)

logger = logging.getLogger(__name__)

TextStreamHandler = Callable[[TextStreamReader, str], Awaitable[None] | None]
ByteStreamHandler = Callable[[ByteStreamReader, str], Awaitable[None] | None]


class IncomingDataStreamManager:
    """Routes incoming stream packets to per-topic handlers.

    A handler is called once per stream with a reader and the sender's identity, as soon as
    the header arrives; it may be a plain function or a coroutine function (whose task this
    manager owns and cancels on :meth:`aclose`). Stream packets that arrive before
    :meth:`set_connected` are held (up to ``limits.max_pending_packets``) and replayed.
    """

    def __init__(self, limits: StreamLimits | None = None, *, connected: bool = True) -> None:
        self.limits = limits or StreamLimits()
        self._text_handlers: dict[str, TextStreamHandler] = {}
        self._byte_handlers: dict[str, ByteStreamHandler] = {}
        self._assembler = StreamAssembler(self._wants, self.limits)
        self._readers: dict[str, TextStreamReader | ByteStreamReader] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._connected = connected
        self._pending: list[tuple[DataPacket, int]] = []
        self._closed = False

    # -- registration ----------------------------------------------------------------------

    def register_text_stream_handler(self, topic: str, handler: TextStreamHandler) -> None:
        """Call ``handler(reader, participant_identity)`` for each text stream on ``topic``."""
        if topic in self._text_handlers:
            raise DataStreamError(
                DataStreamErrorReason.HANDLER_ALREADY_REGISTERED,
                f"a text stream handler for topic {topic!r} is already registered",
            )
        self._text_handlers[topic] = handler

    def register_byte_stream_handler(self, topic: str, handler: ByteStreamHandler) -> None:
        """Call ``handler(reader, participant_identity)`` for each byte stream on ``topic``."""
        if topic in self._byte_handlers:
            raise DataStreamError(
                DataStreamErrorReason.HANDLER_ALREADY_REGISTERED,
                f"a byte stream handler for topic {topic!r} is already registered",
            )
        self._byte_handlers[topic] = handler

    def unregister_text_stream_handler(self, topic: str) -> None:
        self._text_handlers.pop(topic, None)

    def unregister_byte_stream_handler(self, topic: str) -> None:
        self._byte_handlers.pop(topic, None)

    def _wants(self, kind: StreamKind, topic: str) -> bool:
        return topic in (self._text_handlers if kind == "text" else self._byte_handlers)

    # -- inputs ----------------------------------------------------------------------------

    def set_connected(self, connected: bool) -> None:
        """Gate delivery on the room's state; going connected replays held packets in order."""
        self._connected = connected
        if connected:
            pending, self._pending = self._pending, []
            for packet, encryption_type in pending:
                self.handle_packet(packet, encryption_type)

    def handle_packet(self, packet: DataPacket, encryption_type: int = 0) -> None:
        """Feed one stream header, chunk or trailer. Never raises."""
        if self._closed:
            return
        if not self._connected:
            if len(self._pending) >= self.limits.max_pending_packets:
                logger.warning("stream packet dropped: pre-connect buffer is full")
            else:
                self._pending.append((packet, encryption_type))
            return
        try:
            events = self._assembler.receive(
                packet, encryption_type=encryption_type, now=time.monotonic()
            )
        except Exception:  # a bug here must not take down the caller's dispatch loop
            logger.exception("unexpected error while handling a stream packet")
            return
        self._apply(events)
        self._arm_timer()

    def handle_participant_disconnected(self, identity: str) -> None:
        """Fail the unfinished streams of a participant who left."""
        self._apply(self._assembler.sender_left(identity))

    async def aclose(self) -> None:
        """Fail unfinished streams and cancel handler tasks."""
        if self._closed:
            return
        self._closed = True
        self._pending.clear()
        self._apply(self._assembler.close())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- events → readers --------------------------------------------------------------------

    def _apply(self, events: list[StreamEvent]) -> None:
        for event in events:
            if isinstance(event, StreamOpened):
                self._open(event)
                continue
            reader = self._readers.get(event.stream_id)
            if reader is None:
                continue
            if isinstance(event, StreamData):
                reader._push(event.data)  # type: ignore[arg-type]  # kind matches the reader  # type: ignore[arg-type]
            elif isinstance(event, StreamEnded):
                del self._readers[event.stream_id]
                reader._finish(event.attributes)
            elif isinstance(event, StreamFailed):
                del self._readers[event.stream_id]
                reader._fail(event.error)

    def _open(self, event: StreamOpened) -> None:
        handler: Callable[[Any, str], Awaitable[None] | None] | None
        reader: TextStreamReader | ByteStreamReader
        if event.kind == "text":
            assert isinstance(event.info, TextStreamInfo)
            reader = TextStreamReader(event.info, event.sender_identity)
            handler = self._text_handlers.get(event.info.topic)
        else:
            assert isinstance(event.info, ByteStreamInfo)
            reader = ByteStreamReader(event.info, event.sender_identity)
            handler = self._byte_handlers.get(event.info.topic)
        if handler is None:
            return
        self._readers[event.info.stream_id] = reader
        try:
            result = handler(cast(Any, reader), event.sender_identity)
        except Exception:
            logger.exception("stream handler for topic %r raised", event.info.topic)
            return
        if inspect.isawaitable(result):
            self._spawn(result, event.info.topic)

    def _spawn(self, awaitable: Awaitable[None], topic: str) -> None:
        async def run() -> None:
            try:
                await awaitable
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream handler for topic %r raised", topic)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- idle timer --------------------------------------------------------------------------

    def _arm_timer(self) -> None:
        if self._timer is not None or self._closed:
            return
        deadline = self._assembler.next_deadline()
        if deadline is None:
            return
        loop = asyncio.get_running_loop()
        delay = max(0.0, deadline - time.monotonic())
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._apply(self._assembler.expire(time.monotonic()))
        self._arm_timer()
