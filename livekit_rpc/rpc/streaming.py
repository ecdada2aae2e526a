"""Streaming RPC, the caller's side: an iterable call whose handler yields chunks.

Wire (spec/spec.md, "Streaming RPC"): the request is an ordinary v2 request stream with
extra ``lkrpc.*`` attributes; each yielded item comes back as its own data stream on
``lkrpc.rpc_chunk`` numbered by ``lkrpc.seq``; the caller grants credits and cancels through
``lkrpc.rpc_control``; the ordinary RPC response packet ends the call. Peers that do not
advertise the extension get a unary call and the reply arrives as one chunk.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..streams.reader import ByteStreamReader, TextStreamReader
from .errors import RpcError
from .streaming_server import split_chunks

if TYPE_CHECKING:
    from .client import RpcClientManager, _Call

Chunk = str | bytes
Reader = TextStreamReader | ByteStreamReader


@dataclass(frozen=True)
class _Batch:
    """A chunk message carrying several items (``lkrpc.lengths``), not yet read."""

    reader: Reader
    lengths: str


ChunkSource = Reader | _Batch | Chunk
RequestSource = AsyncIterable[Chunk] | Iterable[Chunk]


class RpcCallStream:
    """One streaming call: iterate it for chunks; failures raise :class:`RpcError`.

    Use it as ``async with participant.stream_rpc(...) as stream: async for chunk in
    stream``. Leaving the block early, :meth:`cancel`, or cancelling the iterating task
    cancels the remote handler. Metrics are kept as chunks arrive.
    """

    def __init__(
        self,
        client: RpcClientManager,
        *,
        destination_identity: str,
        method: str,
        payload: str | RequestSource,
        response_timeout: float,
        deadline: float | None,
        window: int,
        realtime: bool,
    ) -> None:
        self._client = client
        self.destination_identity = destination_identity
        self.method = method
        self._payload = payload
        self.response_timeout = response_timeout
        self.deadline = deadline
        self.window = max(1, window)
        self.realtime = realtime
        self._items: deque[ChunkSource] = deque()
        self._arrival = asyncio.Event()
        self._call: _Call | None = None
        self._unary: asyncio.Task[str] | None = None
        self._finished = False
        self._consumed_since_credit = 0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._next_seq = 0
        self._final_taken = False
        self._upload: asyncio.Task[None] | None = None
        self._upload_credits = self.window
        self._upload_credit = asyncio.Event()
        # metrics
        self._started_at = 0.0
        self._arrivals: list[float] = []
        self.chunk_count = 0
        self.byte_count = 0
        self.dropped_chunks = 0
        self.streaming = False
        """True when the peer speaks the extension; False for the one-chunk unary fallback."""

    @property
    def uploads(self) -> bool:
        """True when the request itself is a stream of chunks (client streaming)."""
        return not isinstance(self._payload, str)

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> RpcCallStream:
        await self.start()
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Send the request (called by ``async with``)."""
        self._started_at = time.perf_counter()
        self.streaming = self._client._peer_streams(self.destination_identity)
        loop = asyncio.get_running_loop()
        if not self.streaming:
            self._unary = loop.create_task(self._unary_call())
            self._unary.add_done_callback(lambda _: self._wake())
            return
        self._call = await self._client._start_stream_call(self)
        self._call.future.add_done_callback(lambda _: self._wake())
        self._arm_idle_timer()
        if not isinstance(self._payload, str):
            self._upload = loop.create_task(self._send_request_chunks(self._call, self._payload))

    async def _unary_call(self) -> str:
        payload = self._payload
        if not isinstance(payload, str):  # a peer without the extension gets it all at once
            pieces = [p async for p in _aiter(payload)]
            payload = "".join(p.decode() if isinstance(p, bytes) else p for p in pieces)
        return await self._client.perform_rpc(
            destination_identity=self.destination_identity,
            method=self.method,
            payload=payload,
            response_timeout=self.response_timeout,
        )

    async def _send_request_chunks(self, call: _Call, source: RequestSource) -> None:
        seq = 0
        try:
            async for item in _aiter(source):
                while self._upload_credits <= 0:
                    self._upload_credit.clear()
                    await self._upload_credit.wait()
                self._upload_credits -= 1
                await self._client._send_chunk(call, item, seq)
                seq += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._client._end_upload(call, error=True)
            self._client._fail_call(
                call,
                RpcError.built_in(
                    RpcError.ErrorCode.APPLICATION_ERROR, f"request stream failed: {exc}"
                ),
            )
            return
        await self._client._end_upload(call, error=False)

    def _on_upload_credit(self, credit: int) -> None:
        self._upload_credits += credit
        self._upload_credit.set()

    async def cancel(self) -> None:
        """Stop the call; the remote handler is cancelled (its ``finally`` runs)."""
        if self._finished:
            return
        self._finished = True
        self._disarm_idle_timer()
        if self._unary is not None:
            self._unary.cancel()
            await asyncio.gather(self._unary, return_exceptions=True)
        elif self._call is not None:
            await self._client._cancel_stream_call(self._call)
        self._wake()

    async def aclose(self) -> None:
        """Cancel the call if it is still running; release what it holds."""
        done = self._call is not None and self._call.future.done()
        done = done or (self._unary is not None and self._unary.done())
        if not done:
            await self.cancel()
        self._finished = True
        self._disarm_idle_timer()
        self._items.clear()
        if self._upload is not None:
            self._upload.cancel()
            await asyncio.gather(self._upload, return_exceptions=True)

    # -- iteration -------------------------------------------------------------------------

    def __aiter__(self) -> RpcCallStream:
        return self

    async def __anext__(self) -> Chunk:
        while True:
            if self._items:
                return await self._take(self._items.popleft())
            if self._unary is not None and self._unary.done():
                return self._unary_outcome()
            if self._call is not None and self._call.future.done():
                self._finished = True
                self._disarm_idle_timer()
                error = self._call.future.exception()
                if error is not None:
                    raise error
                final = self._call.future.result()
                if final and not self._final_taken:  # a handler that returned, not yielded
                    self._final_taken = True
                    self._record(len(final.encode()))
                    return final
                raise StopAsyncIteration
            if self._finished:
                raise StopAsyncIteration
            self._arrival.clear()
            await self._arrival.wait()

    def _unary_outcome(self) -> Chunk:
        assert self._unary is not None
        if self._finished:
            raise StopAsyncIteration
        self._finished = True
        if self._unary.cancelled():
            raise StopAsyncIteration
        result = self._unary.result()  # raises the call's RpcError
        self._record(len(result.encode()))
        return result

    async def _take(self, source: ChunkSource) -> Chunk:
        reader = source.reader if isinstance(source, _Batch) else source
        if isinstance(reader, TextStreamReader | ByteStreamReader):
            try:
                chunk: Chunk = await reader.read_all()
                if isinstance(source, _Batch):
                    first, *rest = split_chunks(chunk, source.lengths)
                    self._items.extendleft(reversed(rest))
                    chunk = first
            except Exception as exc:
                raise RpcError.built_in(
                    RpcError.ErrorCode.APPLICATION_ERROR, f"Error reading RPC stream chunk: {exc}"
                ) from exc
        else:
            chunk = reader
        self._consumed_since_credit += 1
        if self._consumed_since_credit >= self._credit_period and self._call is not None:
            credit, self._consumed_since_credit = self._consumed_since_credit, 0
            await self._client._grant_credit(self._call, credit)
        return chunk

    @property
    def _credit_period(self) -> int:
        return max(1, self.window // 2)

    # -- fed by the client manager -----------------------------------------------------------

    def _on_chunk(self, reader: Reader, seq: int, lengths: str) -> None:
        if self._finished:
            return
        if seq > self._next_seq:
            self.dropped_chunks += seq - self._next_seq
        sizes = [int(n) for n in lengths.split(",") if n.isdigit()] if lengths else []
        self._next_seq = max(self._next_seq, seq + max(1, len(sizes)))
        for size in sizes or [reader.info.size or 0]:
            self._record(size)
        self._items.append(_Batch(reader, lengths) if lengths else reader)
        self._arm_idle_timer()
        self._wake()

    def _on_end(self, total: int) -> None:
        if total > self._next_seq:
            self.dropped_chunks += total - self._next_seq
            self._next_seq = total

    def _on_heartbeat(self) -> None:
        self._arm_idle_timer()

    def _record(self, size: int) -> None:
        self._arrivals.append(time.perf_counter())
        self.chunk_count += 1
        self.byte_count += size

    def _wake(self) -> None:
        self._arrival.set()

    # -- liveness --------------------------------------------------------------------------

    def _arm_idle_timer(self) -> None:
        self._disarm_idle_timer()
        if self._call is None or self._call.future.done():
            return
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self.response_timeout, self._on_idle)

    def _disarm_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _on_idle(self) -> None:
        self._idle_timer = None
        if self._call is not None:
            self._client._fail_call(
                self._call, RpcError.built_in(RpcError.ErrorCode.RESPONSE_TIMEOUT)
            )

    # -- metrics ---------------------------------------------------------------------------

    @property
    def time_to_first_chunk(self) -> float | None:
        """Seconds from the request to the first chunk's arrival."""
        return self._arrivals[0] - self._started_at if self._arrivals else None

    @property
    def inter_chunk_latencies(self) -> list[float]:
        """Seconds between consecutive chunk arrivals."""
        return [b - a for a, b in zip(self._arrivals, self._arrivals[1:], strict=False)]

    def inter_chunk_percentile(self, q: float) -> float | None:
        """The ``q``-th percentile (0–100) of inter-chunk latency, in seconds."""
        gaps = self.inter_chunk_latencies
        if not gaps:
            return None
        if len(gaps) == 1:
            return gaps[0]
        return statistics.quantiles(gaps, n=100, method="inclusive")[min(98, max(0, int(q) - 1))]

    @property
    def inter_chunk_p50(self) -> float | None:
        return self.inter_chunk_percentile(50)

    @property
    def inter_chunk_p99(self) -> float | None:
        return self.inter_chunk_percentile(99)


async def _aiter(source: RequestSource) -> AsyncIterator[Chunk]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item
