"""Asyncio readers handed to stream handlers."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import replace
from typing import Generic, TypeVar

from .types import ByteStreamInfo, DataStreamError, TextStreamInfo

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
        self._done = True
        self._wake()

    def _fail(self, error: DataStreamError) -> None:
        self._error = error
        self._done = True
        self._wake()

    def _wake(self) -> None:
        self._arrival.set()

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

    async def read_all(self) -> str:
        """The whole text; raises :class:`DataStreamError` if the stream failed."""
        return "".join(await self._collect())


class ByteStreamReader(_StreamReader[bytes, ByteStreamInfo]):
    """Reader of a byte stream: iteration yields ``bytes`` chunks."""

    async def read_all(self) -> bytes:
        """All bytes, concatenated; raises :class:`DataStreamError` if the stream failed."""
        return b"".join(await self._collect())
