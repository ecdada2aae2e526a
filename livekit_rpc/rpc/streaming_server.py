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
from .errors import RpcError

logger = logging.getLogger(__name__)

SendChunk = Callable[[str | bytes, int], Awaitable[None]]
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


class StreamingResponse:
    """One streaming call being served: credits granted by the caller gate each chunk."""

    def __init__(
        self,
        *,
        send_chunk: SendChunk,
        send_heartbeat: SendHeartbeat,
        window: int,
        realtime: bool,
        heartbeat_interval: float,
    ) -> None:
        self._send_chunk = send_chunk
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
        """Send every item the handler yields; raises what the handler raises."""
        heartbeat = asyncio.get_running_loop().create_task(self._heartbeats())
        items = iterate(source)
        try:
            async for item in items:
                if not isinstance(item, str | bytes):
                    raise RpcError.built_in(
                        RpcError.ErrorCode.APPLICATION_ERROR,
                        f"streaming handler yielded {type(item).__name__}, not str or bytes",
                    )
                if self.credits <= 0 and self.realtime:
                    self.dropped += 1
                    self.seq += 1
                    continue
                while self.credits <= 0:
                    self._credit.clear()
                    await self._credit.wait()
                self.credits -= 1
                await self._send_chunk(item, self.seq)
                self._last_send = time.monotonic()
                self.sent += 1
                self.seq += 1
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await items.aclose()

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
