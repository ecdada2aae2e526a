"""Asyncio readers handed to stream handlers."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Generic, TypeVar

from .types import ByteStreamInfo, DataStreamError, TextStreamInfo

logger = logging.getLogger(__name__)

T = TypeVar("T", str, bytes)
I = TypeVar("I", TextStreamInfo, ByteStreamInfo)  # noqa: E741


class _StreamReader(Generic[T, I]):
    """Content of one incoming stream, delivered in order as it arrives.

    Iterate it (``async for chunk in reader``) to get each piece as it comes, or await
    :meth:`read_all`. Errors of the stream (gaps, abnormal ends, limits) are raised by the
    read that reaches them, after every piece that arrived before.
    """

    def __init__(self, info: I, sender_identity: str) -> None:
        self._info: I = info
        self.sender_identity = sender_identity
        self._pieces: deque[T] = deque()
        self._done = False
        self._error: DataStreamError | None = None
        self._arrival = asyncio.Event()
        self._done_callbacks: list[Callable[[], None]] = []

    @property
    def info(self) -> I:
        """The stream's description; after the end, attributes include the trailer's."""
        return self._info

    @property
    def done(self) -> bool:
        return self._done

    # -- fed by the manager -----------------------------------------------------------------

    def _push(self, piece: T) -> None:
        self._pieces.append(piece)
        self._wake()

    def _finish(self, attributes: dict[str, str]) -> None:
        if attributes != self._info.attributes:  # a trailer added or changed some
            self._info = replace(self._info, attributes=attributes)
        self._end()

    def _fail(self, error: DataStreamError) -> None:
        self._error = error
        self._end()

    def _end(self) -> None:
        self._done = True
        self._wake()
        callbacks, self._done_callbacks = self._done_callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # never let a consumer break the dispatch of packets
                logger.exception("stream completion callback raised")

    def _wake(self) -> None:
        self._arrival.set()

    def _when_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` as soon as the stream has ended or failed (now if it has).

        For consumers inside this package that must react in the same turn of the event loop
        as the stream's last packet, without a task of their own.
        """
        if self._done:
            callback()
        else:
            self._done_callbacks.append(callback)

    # -- consumer API -----------------------------------------------------------------------

    def __aiter__(self) -> _StreamReader[T, I]:
        return self

    async def __anext__(self) -> T:
        while True:
            if self._pieces:
                return self._pieces.popleft()
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._arrival.clear()
            await self._arrival.wait()

    async def _collect(self) -> list[T]:
        return [piece async for piece in self]


class TextStreamReader(_StreamReader[str, TextStreamInfo]):
    """Reader of a text stream: iteration yields ``str`` deltas."""

    def _text_now(self) -> str:
        """The whole text of a stream that is done; raises its error if it failed."""
        assert self._done, "the stream has not ended"
        if self._error is not None:
            raise self._error
        text = "".join(self._pieces)
        self._pieces.clear()
        return text

    async def read_all(self) -> str:
        """The whole text; raises :class:`DataStreamError` if the stream failed."""
        return "".join(await self._collect())


class ByteStreamReader(_StreamReader[bytes, ByteStreamInfo]):
    """Reader of a byte stream: iteration yields ``bytes`` chunks."""

    async def read_all(self) -> bytes:
        """All bytes, concatenated; raises :class:`DataStreamError` if the stream failed."""
        return b"".join(await self._collect())
