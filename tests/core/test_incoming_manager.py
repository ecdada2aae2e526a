"""streams/incoming.py and reader.py: handlers, readers, buffering, timers and teardown."""

from __future__ import annotations

import asyncio

import pytest

from livekit_rpc import (
    ByteStreamReader,
    DataStreamError,
    IncomingDataStreamManager,
    StreamLimits,
    TextStreamReader,
)
from livekit_rpc.streams.types import DataStreamErrorReason as R
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.compression import compress

from .helpers import chunk, header, settle, trailer


class Handlers:
    """Records every reader a manager hands out, per topic."""

    def __init__(self) -> None:
        self.readers: list[TextStreamReader | ByteStreamReader] = []
        self.senders: list[str] = []

    def __call__(self, reader: TextStreamReader | ByteStreamReader, sender: str) -> None:
        self.readers.append(reader)
        self.senders.append(sender)


def manager(**kwargs: object) -> tuple[IncomingDataStreamManager, Handlers]:
    streams = IncomingDataStreamManager(**kwargs)  # type: ignore[arg-type]
    seen = Handlers()
    streams.register_text_stream_handler("t", seen)
    streams.register_byte_stream_handler("t", seen)
    return streams, seen


async def test_text_stream_read_all_and_attributes() -> None:
    streams, seen = manager()
    streams.handle_packet(header(total_length=11, attributes={"foo": "bar", "baz": "quux"}))
    (reader,) = seen.readers
    assert isinstance(reader, TextStreamReader)
    assert seen.senders == ["alice"] and reader.sender_identity == "alice"
    assert reader.info.attributes == {"foo": "bar", "baz": "quux"}
    streams.handle_packet(chunk(content=b"hello world"))
    streams.handle_packet(trailer(attributes={"hello": "world", "foo": "updated"}))
    assert await reader.read_all() == "hello world"
    assert reader.done
    assert reader.info.attributes == {"foo": "updated", "baz": "quux", "hello": "world"}
    await streams.aclose()


async def test_byte_stream_iteration_yields_chunks() -> None:
    streams, seen = manager()
    streams.handle_packet(header(kind="bytes", name="f"))
    streams.handle_packet(chunk(index=0, content=b"ab"))
    streams.handle_packet(chunk(index=1, content=b"cd"))
    streams.handle_packet(trailer())
    (reader,) = seen.readers
    assert isinstance(reader, ByteStreamReader)
    assert reader.info.name == "f"
    assert [piece async for piece in reader] == [b"ab", b"cd"]
    await streams.aclose()


async def test_reader_waits_for_data_as_it_arrives() -> None:
    streams, seen = manager()
    streams.handle_packet(header())
    (reader,) = seen.readers
    task = asyncio.create_task(reader.read_all())
    await settle()
    assert not task.done()
    streams.handle_packet(chunk(index=0, content=b"part 1, "))
    await settle()
    assert not task.done()
    streams.handle_packet(chunk(index=1, content=b"part 2"))
    streams.handle_packet(trailer())
    assert await task == "part 1, part 2"
    await streams.aclose()


async def test_error_surfaces_after_the_pieces_before_it() -> None:
    streams, seen = manager()
    streams.handle_packet(header(kind="bytes"))
    streams.handle_packet(chunk(index=0, content=b"ok"))
    streams.handle_packet(chunk(index=5, content=b"gap"))
    (reader,) = seen.readers
    iterator = aiter(reader)
    assert await anext(iterator) == b"ok"
    with pytest.raises(DataStreamError) as caught:
        await anext(iterator)
    assert caught.value.reason == R.INCOMPLETE
    await streams.aclose()


@pytest.mark.parametrize(("kind", "empty"), [("text", ""), ("bytes", b"")])
async def test_inline_empty_stream(kind: str, empty: str | bytes) -> None:
    streams, seen = manager()
    streams.handle_packet(header(kind=kind, inline=b"", total_length=0))
    (reader,) = seen.readers
    assert [piece async for piece in reader] == [empty]  # one empty piece, then the end
    await streams.aclose()


async def test_inline_compressed_text() -> None:
    streams, seen = manager()
    text = "inline compressed " * 50
    packed = compress(c.COMPRESSION_DEFLATE_RAW, text.encode())
    streams.handle_packet(
        header(inline=packed, compression=c.COMPRESSION_DEFLATE_RAW, total_length=len(text))
    )
    assert await seen.readers[0].read_all() == text
    await streams.aclose()


async def test_async_handler_runs_as_a_task_owned_by_the_manager() -> None:
    streams = IncomingDataStreamManager()
    results: list[str] = []

    async def handler(reader: TextStreamReader, sender: str) -> None:
        results.append(sender + ": " + await reader.read_all())

    streams.register_text_stream_handler("t", handler)
    streams.handle_packet(header(inline=b"hi"))
    await settle()
    assert results == ["alice: hi"]
    await streams.aclose()


async def test_handler_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    streams = IncomingDataStreamManager()

    def sync_fails(reader: TextStreamReader, sender: str) -> None:
        raise RuntimeError("sync boom")

    async def async_fails(reader: ByteStreamReader, sender: str) -> None:
        raise RuntimeError("async boom")

    streams.register_text_stream_handler("t", sync_fails)
    streams.register_byte_stream_handler("t", async_fails)
    streams.handle_packet(header("a", inline=b"x"))
    streams.handle_packet(header("b", kind="bytes", inline=b"x"))
    await settle()
    assert "sync boom" in caplog.text and "async boom" in caplog.text
    await streams.aclose()


async def test_registration() -> None:
    streams = IncomingDataStreamManager()
    streams.register_text_stream_handler("t", lambda r, s: None)
    streams.register_byte_stream_handler("t", lambda r, s: None)  # separate registries
    for register in (streams.register_text_stream_handler, streams.register_byte_stream_handler):
        with pytest.raises(DataStreamError) as caught:
            register("t", lambda r, s: None)
        assert caught.value.reason == R.HANDLER_ALREADY_REGISTERED
    streams.unregister_text_stream_handler("t")
    streams.unregister_text_stream_handler("t")  # no-op
    streams.register_text_stream_handler("t", lambda r, s: None)
    await streams.aclose()


async def test_handler_registered_later_does_not_get_a_stream_in_progress() -> None:
    streams = IncomingDataStreamManager()
    streams.handle_packet(header())
    seen = Handlers()
    streams.register_text_stream_handler("t", seen)
    streams.handle_packet(chunk(content=b"x"))
    streams.handle_packet(trailer())
    assert seen.readers == []
    await streams.aclose()


async def test_unknown_compression_reaches_the_handler_as_a_failed_read() -> None:
    streams, seen = manager()
    streams.handle_packet(header(compression=99))
    with pytest.raises(DataStreamError) as caught:
        await seen.readers[0].read_all()
    assert caught.value.reason == R.UNSUPPORTED_COMPRESSION
    await streams.aclose()


async def test_second_header_for_an_open_stream_calls_the_handler_once() -> None:
    streams, seen = manager()
    streams.handle_packet(header())
    streams.handle_packet(header())
    streams.handle_packet(header(inline=b"intruder"))
    streams.handle_packet(chunk(content=b"original"))
    streams.handle_packet(trailer())
    assert len(seen.readers) == 1
    assert await seen.readers[0].read_all() == "original"
    await streams.aclose()


async def test_pre_connect_packets_are_held_and_replayed_in_order() -> None:
    streams, seen = manager(connected=False)
    streams.handle_packet(header(total_length=10))
    streams.handle_packet(chunk(index=0, content=b"01234"))
    streams.handle_packet(chunk(index=1, content=b"56789"))
    streams.handle_packet(trailer())
    assert seen.readers == []
    streams.set_connected(True)
    assert await seen.readers[0].read_all() == "0123456789"
    await streams.aclose()


async def test_pre_connect_buffer_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    streams, seen = manager(connected=False, limits=StreamLimits(max_pending_packets=2))
    for i in range(3):
        streams.handle_packet(header(f"s{i}", inline=b"x"))
    assert "pre-connect buffer is full" in caplog.text
    streams.set_connected(True)
    assert [r.info.stream_id for r in seen.readers] == ["s0", "s1"]
    await streams.aclose()


async def test_sender_departure_fails_its_open_streams() -> None:
    streams, seen = manager()
    streams.handle_packet(header("a"))
    streams.handle_packet(header("b", sender="bob"))
    streams.handle_participant_disconnected("alice")
    with pytest.raises(DataStreamError) as caught:
        await seen.readers[0].read_all()
    assert caught.value.reason == R.ABNORMAL_END
    assert str(caught.value) == (
        "Participant alice unexpectedly disconnected in the middle of sending data"
    )
    streams.handle_packet(trailer("b", sender="bob"))
    assert await seen.readers[1].read_all() == ""
    await streams.aclose()


async def test_idle_stream_fails_after_idle_timeout() -> None:
    streams, seen = manager(limits=StreamLimits(idle_timeout=0.1))
    streams.handle_packet(header("quiet"))
    streams.handle_packet(header("busy"))
    quiet, busy = seen.readers
    quiet_read = asyncio.create_task(quiet.read_all())
    index = 0
    while not quiet_read.done():  # keep the busy stream busy until the quiet one expires
        await asyncio.sleep(0.01)
        streams.handle_packet(chunk("busy", index, b"."))
        index += 1
    assert index >= 5
    with pytest.raises(DataStreamError) as caught:
        await quiet_read
    assert caught.value.reason == R.IDLE_TIMEOUT
    assert not busy.done
    with pytest.raises(DataStreamError):
        await asyncio.wait_for(busy.read_all(), 1)  # expires too once it goes quiet
    assert streams._timer is None  # nothing open: no timer left armed
    await streams.aclose()


async def test_aclose_fails_open_streams_cancels_handlers_and_ignores_later_packets() -> None:
    streams = IncomingDataStreamManager()
    cancelled = asyncio.Event()
    readers: list[TextStreamReader] = []

    async def slow(reader: TextStreamReader, sender: str) -> None:
        readers.append(reader)
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    streams.register_text_stream_handler("t", slow)
    streams.handle_packet(header())
    await settle()
    await streams.aclose()
    assert cancelled.is_set()
    with pytest.raises(DataStreamError, match="Room disconnected"):
        await readers[0].read_all()
    streams.handle_packet(header("late", inline=b"x"))
    assert len(readers) == 1
    await streams.aclose()  # idempotent
