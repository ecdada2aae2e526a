"""Streaming RPC, the handler's side: send yielded items as chunks under credit flow control."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from ..streams.reader import ByteStreamReader, TextStreamReader
from ..wire import constants as c
from ..wire.utf8 import utf8_len
from .errors import RpcError

logger = logging.getLogger(__name__)

SendChunks = Callable[[list[str | bytes], int], Awaitable[None]]
"""Sends items (all str or all bytes) as one chunk message, the first numbered ``seq``."""

MAX_BATCH_ITEMS = 64
MAX_BATCH_BYTES = 12_000
SendHeartbeat = Callable[[], Awaitable[None]]


def is_streaming_handler(handler: Callable[..., Any]) -> bool:
    """A generator or async-generator function serves a streaming method."""
    return inspect.isasyncgenfunction(handler) or inspect.isgeneratorfunction(handler)


async def iterate(source: AsyncIterator[Any] | Iterator[Any]) -> AsyncGenerator[Any, None]:
    """Iterate a sync or async generator; closing this closes the source (its finally runs)."""
    if isinstance(source, AsyncIterator):
        agen = source
        try:
            async for item in agen:
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                await aclose()
        return
    try:
        for item in source:
            yield item
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


async def _next(items: AsyncIterator[Any]) -> tuple[bool, Any]:
    try:
        return True, await anext(items)
    except StopAsyncIteration:
        return False, None


async def collect(source: AsyncIterator[Any] | Iterator[Any]) -> str:
    """A streaming handler called by a unary caller: its chunks joined into one reply."""
    texts: list[str] = []
    gen = iterate(source)
    try:
        async for item in gen:
            texts.append(item.decode() if isinstance(item, bytes) else str(item))
    finally:
        await gen.aclose()
    return "".join(texts)


def join_chunks(items: list[str | bytes], attributes: dict[str, str]) -> str | bytes:
    """One message's content for ``items`` (all str or all bytes); several items get their
    byte sizes in ``lkrpc.lengths`` so the caller can split them apart again."""
    if len(items) == 1:
        return items[0]
    if isinstance(items[0], str):
        texts = [item for item in items if isinstance(item, str)]
        attributes[c.ATTR_LENGTHS] = ",".join(str(utf8_len(text)) for text in texts)
        return "".join(texts)
    blobs = [item for item in items if isinstance(item, bytes)]
    attributes[c.ATTR_LENGTHS] = ",".join(str(len(blob)) for blob in blobs)
    return b"".join(blobs)


def split_chunks(content: str | bytes, lengths: str) -> list[str | bytes]:
    """The items of a message carrying several (see :func:`join_chunks`).

    Raises ValueError if the sizes do not describe ``content`` exactly.
    """
    sizes = [int(size) for size in lengths.split(",") if size.isdigit()]
    if len(sizes) != lengths.count(",") + 1 or len(sizes) > MAX_BATCH_ITEMS:
        raise ValueError(f"malformed {c.ATTR_LENGTHS}: {lengths[:64]!r}")
    data = content.encode() if isinstance(content, str) else content
    if sum(sizes) != len(data):
        raise ValueError(f"{c.ATTR_LENGTHS} adds up to {sum(sizes)}, content has {len(data)}")
    pieces: list[bytes] = []
    start = 0
    for size in sizes:
        pieces.append(data[start : start + size])
        start += size
    if isinstance(content, str):
        return [piece.decode() for piece in pieces]  # UnicodeDecodeError is a ValueError
    return list(pieces)


class StreamingResponse:
    """One streaming call being served: credits granted by the caller gate each chunk."""

    def __init__(
        self,
        *,
        send_chunks: SendChunks,
        send_heartbeat: SendHeartbeat,
        window: int,
        realtime: bool,
        heartbeat_interval: float,
    ) -> None:
        self._send_chunks = send_chunks
        self._send_heartbeat = send_heartbeat
        self.credits = max(1, window)
        self.realtime = realtime
        self.heartbeat_interval = heartbeat_interval
        self.sent = 0
        self.dropped = 0
        self.seq = 0
        """Chunks produced so far, sent or dropped."""
        self._credit = asyncio.Event()
        self._last_send = time.monotonic()

    def grant(self, credit: int) -> None:
        """The caller consumed ``credit`` more chunks."""
        self.credits += max(0, credit)
        self._credit.set()

    async def run(self, source: AsyncIterator[Any] | Iterator[Any]) -> None:
        """Send every item the handler yields; raises what the handler raises.

        Items the handler produces faster than they can be sent (within one turn of the event
        loop) leave together in one batch packet; an item produced alone leaves at once.
        """
        loop = asyncio.get_running_loop()
        heartbeat = loop.create_task(self._heartbeats())
        items = iterate(source)
        upcoming: asyncio.Task[tuple[bool, Any]] | None = None
        batch: list[str | bytes] = []
        batch_bytes = 0
        try:
            while True:
                if upcoming is None:
                    upcoming = loop.create_task(_next(items))
                    if batch and self.seq:
                        # One step for the handler to produce more. Not before the first
                        # chunk: time to first chunk matters more than a fuller batch.
                        await asyncio.sleep(0)
                if batch and (not upcoming.done() or batch_bytes >= MAX_BATCH_BYTES):
                    await self._flush(batch)
                    batch, batch_bytes = [], 0
                try:
                    more, item = await upcoming
                except Exception:
                    upcoming = None
                    if batch:  # what the handler produced before failing still goes out
                        await self._flush(batch)
                    raise
                upcoming = None
                if not more:
                    break
                if not isinstance(item, str | bytes):
                    raise RpcError.built_in(
                        RpcError.ErrorCode.APPLICATION_ERROR,
                        f"streaming handler yielded {type(item).__name__}, not str or bytes",
                    )
                if self.credits <= 0 and self.realtime:
                    self.dropped += 1
                    self.seq += 1
                    continue
                if batch and (self.credits <= 0 or type(item) is not type(batch[0])):
                    await self._flush(batch)
                    batch, batch_bytes = [], 0
                while self.credits <= 0:
                    self._credit.clear()
                    await self._credit.wait()
                self.credits -= 1
                batch.append(item)
                batch_bytes += len(item)
                if len(batch) >= MAX_BATCH_ITEMS:
                    await self._flush(batch)
                    batch, batch_bytes = [], 0
            if batch:
                await self._flush(batch)
        finally:
            if upcoming is not None:
                upcoming.cancel()
                await asyncio.gather(upcoming, return_exceptions=True)
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await items.aclose()

    async def _flush(self, batch: list[str | bytes]) -> None:
        first = self.seq
        self.seq += len(batch)
        await self._send_chunks(batch, first)
        self._last_send = time.monotonic()
        self.sent += len(batch)

    async def _heartbeats(self) -> None:
        interval = self.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self._last_send >= interval * 0.9:
                try:
                    await self._send_heartbeat()
                except Exception as exc:
                    logger.debug("heartbeat not sent: %s", exc)


class RequestUpload:
    """The request chunks of a client-streaming call, as the handler iterates them.

    Chunks arrive as data streams; the handler reads them through this async iterator,
    which grants the caller more credit as it goes. A caller that sends beyond its credit
    fails the upload (the buffer never holds more than the window).
    """

    def __init__(self, window: int, send_credit: Callable[[int], Awaitable[None]]) -> None:
        self.window = window
        self._send_credit = send_credit
        self._items: deque[TextStreamReader | ByteStreamReader] = deque()
        self._ended = False
        self._error: RpcError | None = None
        self._arrival = asyncio.Event()
        self._consumed = 0

    def push(self, reader: TextStreamReader | ByteStreamReader) -> None:
        if self._ended:
            return
        if len(self._items) >= self.window:
            self.abort("caller sent more chunks than it had credit for")
            return
        self._items.append(reader)
        self._wake()

    def end(self) -> None:
        self._ended = True
        self._wake()

    def abort(self, reason: str) -> None:
        if not self._ended:
            self._error = RpcError.built_in(RpcError.ErrorCode.APPLICATION_ERROR, reason)
        self._ended = True
        self._items.clear()
        self._wake()

    def _wake(self) -> None:
        self._arrival.set()

    def __aiter__(self) -> RequestUpload:
        return self

    async def __anext__(self) -> str | bytes:
        while not self._items:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._arrival.clear()
            await self._arrival.wait()
        reader = self._items.popleft()
        try:
            chunk: str | bytes = await reader.read_all()
        except Exception as exc:
            raise RpcError.built_in(
                RpcError.ErrorCode.APPLICATION_ERROR, f"Error reading request chunk: {exc}"
            ) from exc
        self._consumed += 1
        if self._consumed >= max(1, self.window // 2):
            credit, self._consumed = self._consumed, 0
            await self._send_credit(credit)
        return chunk
