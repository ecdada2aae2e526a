"""streams/assembler.py: incoming stream packets → ordered, validated, bounded stream events."""

from __future__ import annotations

import os
import random
import zlib

import pytest

from livekit_rpc import ByteStreamInfo, StreamLimits, TextStreamInfo
from livekit_rpc.streams.assembler import (
    StreamAssembler,
    StreamData,
    StreamEnded,
    StreamEvent,
    StreamFailed,
    StreamOpened,
)
from livekit_rpc.streams.types import DataStreamErrorReason as R
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.compression import compress

from .helpers import chunk, header, trailer

DEFLATE, ZSTD = c.COMPRESSION_DEFLATE_RAW, c.COMPRESSION_LKRPC_ZSTD
GCM = 1


def assembler(limits: StreamLimits | None = None, topics: set[str] | None = None):
    wanted = {"t"} if topics is None else topics
    return StreamAssembler(lambda kind, topic: topic in wanted, limits)


def feed(asm: StreamAssembler, *packets, encryption_type: int = 0, now: float = 0.0):
    events: list[StreamEvent] = []
    for packet in packets:
        events += asm.receive(packet, encryption_type=encryption_type, now=now)
    return events


def content(events: list[StreamEvent]) -> str | bytes:
    pieces = [e.data for e in events if isinstance(e, StreamData)]
    return "".join(pieces) if pieces and isinstance(pieces[0], str) else b"".join(pieces)  # type: ignore[arg-type]


def failure(events: list[StreamEvent]) -> StreamFailed:
    (failed,) = [e for e in events if isinstance(e, StreamFailed)]
    return failed


def ended(events: list[StreamEvent]) -> StreamEnded:
    (end,) = [e for e in events if isinstance(e, StreamEnded)]
    return end


def deflate(data: bytes) -> bytes:
    return compress(DEFLATE, data)


# -- normal streams ---------------------------------------------------------------------------


def test_text_header_chunk_trailer() -> None:
    asm = assembler()
    events = feed(
        asm,
        header(total_length=5, attributes={"a": "1"}),
        chunk(content=b"hello"),
        trailer(),
    )
    opened = events[0]
    assert isinstance(opened, StreamOpened)
    assert (opened.kind, opened.sender_identity) == ("text", "alice")
    assert isinstance(opened.info, TextStreamInfo)
    assert opened.info.attributes == {"a": "1"}
    assert opened.info.size == 5
    assert events[1:] == [StreamData("s1", "hello"), StreamEnded("s1", {"a": "1"})]
    assert asm.open_stream_ids == []


def test_byte_stream_info_and_content() -> None:
    asm = assembler()
    events = feed(asm, header(kind="bytes", name="n.bin"), chunk(content=b"\x00\x01"), trailer())
    info = events[0].info  # type: ignore[union-attr]
    assert isinstance(info, ByteStreamInfo)
    assert (info.name, info.mime_type, info.size, info.timestamp) == (
        "n.bin",
        c.BYTES_MIME_TYPE,
        None,
        1_700_000_000_000,
    )
    assert content(events) == b"\x00\x01"


def test_byte_stream_name_is_taken_as_is() -> None:
    (opened, _, _) = feed(assembler(), header(kind="bytes", name="", inline=b"x"))
    assert opened.info.name == ""  # type: ignore[union-attr]


def test_inline_streams_have_no_duplicate_id_check() -> None:
    asm = assembler()
    events = feed(asm, header(inline=b"one"), header(inline=b"two"))
    assert [e for e in events if isinstance(e, StreamData)] == [
        StreamData("s1", "one"),
        StreamData("s1", "two"),
    ]


def test_text_info_exposes_text_header_fields() -> None:
    packet = header(attached=("x",), total_length=0)
    packet.stream_header.text_header.reply_to_stream_id = "r"
    packet.stream_header.text_header.version = 4
    packet.stream_header.text_header.operation_type = 1
    packet.stream_header.text_header.generated = True
    (opened,) = feed(assembler(), packet, encryption_type=GCM)
    info = opened.info  # type: ignore[union-attr]
    assert isinstance(info, TextStreamInfo)
    assert (info.attachments, info.reply_to_id, info.version, info.operation_type) == (
        ["x"],
        "r",
        4,
        1,
    )
    assert info.generated
    assert info.size is None  # total_length 0 means unknown
    assert info.encryption_type == GCM


def test_inline_text_with_attachment_and_chunked_byte_stream_on_same_topic() -> None:
    asm = assembler()
    events = feed(
        asm,
        header("txt", inline=b"caption", total_length=7, attached=("img",)),
        header("img", kind="bytes", total_length=3),
        chunk("img", 0, b"abc"),
        trailer("img"),
    )
    opened = [e for e in events if isinstance(e, StreamOpened)]
    assert [o.info.stream_id for o in opened] == ["txt", "img"]
    assert opened[0].info.attachments == ["img"]  # type: ignore[union-attr]
    assert [e for e in events if isinstance(e, StreamData)] == [
        StreamData("txt", "caption"),
        StreamData("img", b"abc"),
    ]
    assert [e.stream_id for e in events if isinstance(e, StreamEnded)] == ["txt", "img"]


@pytest.mark.parametrize("compression", [0, DEFLATE])
def test_trailer_attributes_merge_over_header_attributes(compression: int) -> None:
    data = b"payload" if compression == 0 else deflate(b"payload")
    events = feed(
        assembler(),
        header(attributes={"foo": "bar", "baz": "quux"}, compression=compression),
        chunk(content=data),
        trailer(attributes={"hello": "world", "foo": "updated"}),
    )
    assert ended(events).attributes == {"foo": "updated", "baz": "quux", "hello": "world"}
    assert content(events) == "payload"


@pytest.mark.parametrize("kind", ["text", "bytes"])
@pytest.mark.parametrize("compression", [0, DEFLATE, ZSTD])
def test_inline_streams(kind: str, compression: int) -> None:
    raw = "héllo inline".encode()
    packed = raw if compression == 0 else compress(compression, raw)
    events = feed(
        assembler(),
        header(kind=kind, inline=packed, total_length=len(raw), compression=compression),
    )
    assert [type(e) for e in events] == [StreamOpened, StreamData, StreamEnded]
    assert content(events) == (raw.decode() if kind == "text" else raw)


@pytest.mark.parametrize("kind", ["text", "bytes"])
def test_inline_empty(kind: str) -> None:
    events = feed(assembler(), header(kind=kind, inline=b"", total_length=0))
    assert events[1] == StreamData("s1", "" if kind == "text" else b"")
    assert isinstance(events[2], StreamEnded)


def test_chunked_compressed_text_in_two_chunks() -> None:
    rng = random.Random(3)
    text = "".join(rng.choices("abcdefé日本😀", k=50000)).encode()
    packed = deflate(text)
    assert 15000 < len(packed) <= 30000
    events = feed(
        assembler(),
        header(compression=DEFLATE, total_length=len(text)),
        chunk(index=0, content=packed[:15000]),
        chunk(index=1, content=packed[15000:]),
        trailer(),
    )
    assert content(events) == text.decode()
    assert isinstance(events[-1], StreamEnded)


def test_chunked_compressed_random_bytes() -> None:
    data = os.urandom(20000)
    packed = deflate(data)
    events = feed(
        assembler(),
        header(kind="bytes", compression=DEFLATE, total_length=20000),
        chunk(index=0, content=packed[:15000]),
        chunk(index=1, content=packed[15000:]),
        trailer(),
    )
    assert content(events) == data


def test_compressed_multibyte_text_split_at_arbitrary_bytes() -> None:
    text = "日本語のテキスト😀" * 300
    raw = text.encode()
    packed = deflate(raw)
    packets = [header(compression=DEFLATE, total_length=len(raw))]
    packets += [
        chunk(index=i, content=packed[i * 7 : i * 7 + 7]) for i in range(len(packed) // 7 + 1)
    ]
    events = feed(assembler(), *packets, trailer())
    assert content(events) == text
    assert all("\ufffd" not in e.data for e in events if isinstance(e, StreamData))  # type: ignore[operator]


def test_uncompressed_code_point_split_across_chunks_is_reassembled() -> None:
    # This library decodes text streams incrementally (LiveKit's JS SDK would yield U+FFFD).
    raw = "😀".encode()
    events = feed(
        assembler(),
        header(),
        chunk(index=0, content=raw[:2]),
        chunk(index=1, content=raw[2:]),
        trailer(),
    )
    assert content(events) == "😀"


@pytest.mark.parametrize("compression", [0, DEFLATE])
def test_duplicate_chunk_dropped(compression: int, caplog: pytest.LogCaptureFixture) -> None:
    raw = b"A" * 100 + b"B" * 100
    data = raw if compression == 0 else deflate(raw)
    events = feed(
        assembler(),
        header(compression=compression, total_length=200),
        chunk(index=0, content=data[:10]),
        chunk(index=0, content=data[:10]),
        chunk(index=1, content=data[10:]),
        trailer(),
    )
    assert content(events) == raw.decode()
    assert "duplicate chunk 0" in caplog.text


def test_replayed_chunk_versions_do_not_matter() -> None:
    first = chunk(index=0, content=b"first")
    v2 = chunk(index=0, content=b"other")
    v2.stream_chunk.version = 2
    v0 = chunk(index=0, content=b"third")
    events = feed(assembler(), header(), first, v2, v0, trailer())
    assert content(events) == "first"


@pytest.mark.parametrize(("kind", "compression"), [("text", DEFLATE), ("text", 0), ("bytes", 0)])
def test_gap_fails_the_stream(kind: str, compression: int) -> None:
    raw = b"x" * 100
    data = raw if compression == 0 else deflate(raw)
    asm = assembler()
    events = feed(
        asm,
        header(kind=kind, compression=compression),
        chunk(index=0, content=data[:5]),
        chunk(index=2, content=data[5:]),
    )
    error = failure(events).error
    assert error.reason == R.INCOMPLETE
    assert error.message == "Missing chunk(s) 1..1"
    assert asm.open_stream_ids == []


def test_packets_after_a_failure_are_dropped_quietly() -> None:
    asm = assembler()
    feed(asm, header(), chunk(index=0, content=b"a"), chunk(index=3, content=b"b"))
    assert feed(asm, chunk(index=1, content=b"c"), chunk(index=4, content=b"d"), trailer()) == []
    assert asm.open_stream_ids == []


def test_empty_chunk_consumes_its_index_but_no_length() -> None:
    events = feed(
        assembler(),
        header(total_length=5),
        chunk(index=0, content=b""),
        chunk(index=1, content=b"hello"),
        trailer(),
    )
    assert content(events) == "hello"
    assert isinstance(events[-1], StreamEnded)
    assert StreamData("s1", "") not in events


def test_not_enough_bytes() -> None:
    events = feed(assembler(), header(total_length=5), chunk(content=b"h"), trailer())
    error = failure(events).error
    assert error.reason == R.INCOMPLETE
    assert error.message.startswith("Not enough chunk(s)")


def test_extra_bytes_fail_before_the_trailer() -> None:
    asm = assembler()
    events = feed(asm, header(total_length=3), chunk(content=b"hello"))
    error = failure(events).error
    assert error.reason == R.LENGTH_EXCEEDED
    assert error.message.startswith("Extra chunk(s)")
    assert asm.open_stream_ids == []


def test_total_length_zero_disables_length_checks() -> None:
    events = feed(assembler(), header(total_length=0), chunk(content=b"abc"), trailer())
    assert content(events) == "abc"


@pytest.mark.parametrize(("total", "reason"), [(1001, R.INCOMPLETE), (999, R.LENGTH_EXCEEDED)])
def test_compressed_length_is_checked_against_inflated_bytes(total: int, reason: R) -> None:
    events = feed(
        assembler(),
        header(compression=DEFLATE, total_length=total),
        chunk(content=deflate(b"q" * 1000)),
        trailer(),
    )
    assert failure(events).error.reason == reason


def test_inline_length_mismatch() -> None:
    assert failure(feed(assembler(), header(inline=b"abc", total_length=4))).error.reason == (
        R.INCOMPLETE
    )
    assert failure(feed(assembler(), header(inline=b"abc", total_length=2))).error.reason == (
        R.LENGTH_EXCEEDED
    )


def test_encryption_mismatch_on_chunk_and_on_trailer() -> None:
    asm = assembler()
    feed(asm, header("a"), header("b"))
    events = asm.receive(chunk("a", content=b"x"), encryption_type=GCM)
    assert failure(events).error.reason == R.ENCRYPTION_TYPE_MISMATCH
    assert failure(events).error.message == "Encryption type mismatch"
    events = asm.receive(trailer("b"), encryption_type=GCM)
    assert failure(events).error.reason == R.ENCRYPTION_TYPE_MISMATCH
    assert asm.open_stream_ids == []


def test_matching_encryption_type_is_fine() -> None:
    events = feed(assembler(), header(), chunk(content=b"x"), trailer(), encryption_type=GCM)
    assert events[0].info.encryption_type == GCM  # type: ignore[union-attr]
    assert isinstance(events[-1], StreamEnded)


def test_abnormal_trailer_reason() -> None:
    events = feed(assembler(), header(), chunk(content=b"x"), trailer(reason="cancelled"))
    error = failure(events).error
    assert error.reason == R.ABNORMAL_END
    assert error.message.endswith("closed abnormally: cancelled")


def test_sender_left_fails_only_its_streams() -> None:
    asm = assembler()
    feed(asm, header("a1"), header("a2"), header("b1", sender="bob"))
    events = asm.sender_left("alice")
    assert sorted(e.stream_id for e in events) == ["a1", "a2"]
    assert all(
        isinstance(e, StreamFailed)
        and e.error.reason == R.ABNORMAL_END
        and e.error.message
        == "Participant alice unexpectedly disconnected in the middle of sending data"
        for e in events
    )
    assert asm.open_stream_ids == ["b1"]


def test_close_fails_every_open_stream() -> None:
    asm = assembler()
    feed(asm, header("a"), header("b", kind="bytes"))
    events = asm.close()
    assert sorted(e.stream_id for e in events) == ["a", "b"]
    assert all(
        isinstance(e, StreamFailed) and "Room disconnected" in e.error.message for e in events
    )
    assert asm.open_stream_ids == []


# -- what gets dropped ------------------------------------------------------------------------


def test_no_handler_drops_header_chunk_and_trailer() -> None:
    asm = assembler(topics=set())
    assert feed(asm, header(), chunk(content=b"x"), trailer()) == []
    assert asm.open_stream_ids == []


def test_text_and_byte_registries_are_separate() -> None:
    asm = StreamAssembler(lambda kind, topic: kind == "bytes", None)
    assert feed(asm, header("t1")) == []
    assert len(feed(asm, header("b1", kind="bytes"))) == 1


def test_header_without_content_header_or_id_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    bare = header()
    bare.stream_header.ClearField("text_header")
    assert feed(assembler(), bare) == []
    assert feed(assembler(), header("")) == []
    assert "neither text nor byte header" in caplog.text
    assert "without a stream id" in caplog.text


def test_chunks_before_their_header_are_lost() -> None:
    asm = assembler()
    assert feed(asm, chunk(index=0, content=b"early")) == []
    events = feed(asm, header(), chunk(index=1, content=b"late"))
    assert failure(events).error.reason == R.INCOMPLETE


def test_unknown_compression_fails_the_stream(caplog: pytest.LogCaptureFixture) -> None:
    # This library's choice: the handler still sees the stream, and its read fails (so RPC
    # can answer with an error); LiveKit's JS SDK drops such a stream silently.
    asm = assembler()
    events = feed(asm, header(compression=99), chunk(content=b"x"), trailer())
    assert isinstance(events[0], StreamOpened)
    assert failure(events).error.reason == R.UNSUPPORTED_COMPRESSION
    assert len(events) == 2
    assert asm.open_stream_ids == []
    assert "unknown compression 99" in caplog.text


def test_second_header_for_an_open_stream_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    asm = assembler()
    events = feed(asm, header(kind="bytes"), header(kind="bytes"), header(kind="text"))
    assert [type(e) for e in events] == [StreamOpened]
    assert "already in progress" in caplog.text
    events = feed(asm, chunk(content=b"ok"), trailer())
    assert content(events) == b"ok"


@pytest.mark.parametrize("compression", [0, 99])
def test_inline_header_reusing_an_open_stream_id_is_dropped(compression: int) -> None:
    asm = assembler()
    events = feed(asm, header(), chunk(index=0, content=b"first "))
    assert feed(asm, header(inline=b"intruder", compression=compression)) == []
    events += feed(asm, chunk(index=1, content=b"second"), trailer())
    assert content(events) == "first second"
    assert isinstance(events[-1], StreamEnded)


def test_stream_id_can_be_reused_after_its_trailer() -> None:
    asm = assembler()
    feed(asm, header(), chunk(content=b"one"), trailer())
    events = feed(asm, header(), chunk(content=b"two"), trailer())
    assert content(events) == "two"


def test_chunk_or_trailer_from_another_sender_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    # Stricter than LiveKit's SDKs, which match chunks by stream id alone.
    asm = assembler()
    feed(asm, header(), chunk(index=0, content=b"a"))
    assert feed(asm, chunk(index=1, content=b"evil", sender="mallory")) == []
    assert feed(asm, trailer(sender="mallory")) == []
    assert "not its sender" in caplog.text
    events = feed(asm, chunk(index=1, content=b"b"), trailer())
    assert content(events) == "b"
    assert isinstance(events[-1], StreamEnded)


# -- decoding and decompression failures -------------------------------------------------------


def test_invalid_utf8_fails_a_text_stream() -> None:
    events = feed(assembler(), header(), chunk(content=b"ok \xff"))
    assert failure(events).error.reason == R.DECODE_FAILED
    inline = feed(assembler(), header(inline=b"\xc3\x28"))
    assert failure(inline).error.reason == R.DECODE_FAILED


def test_text_ending_inside_a_character_fails() -> None:
    events = feed(assembler(), header(), chunk(content="é".encode()[:1]), trailer())
    assert failure(events).error.reason == R.DECODE_FAILED


def test_invalid_utf8_is_fine_in_a_byte_stream() -> None:
    events = feed(assembler(), header(kind="bytes"), chunk(content=b"\xff"), trailer())
    assert content(events) == b"\xff"


@pytest.mark.parametrize("compression", [DEFLATE, ZSTD])
def test_corrupt_compressed_data(compression: int) -> None:
    asm = assembler()
    events = feed(
        asm, header(compression=compression, total_length=10), chunk(content=b"\xff" * 40)
    )
    assert failure(events).error.reason == R.CORRUPT_COMPRESSION
    inline = feed(asm, header("i", compression=compression, inline=b"\xff" * 40, total_length=9))
    assert failure(inline).error.reason == R.CORRUPT_COMPRESSION


def test_truncated_deflate_fails_at_the_trailer() -> None:
    packed = deflate(os.urandom(1000))
    events = feed(
        assembler(),
        header(kind="bytes", compression=DEFLATE),
        chunk(content=packed[:-5]),
        trailer(),
    )
    assert failure(events).error.reason == R.CORRUPT_COMPRESSION
    assert "truncated" in failure(events).error.message


def test_truncated_zstd_with_total_length_fails_at_the_trailer() -> None:
    raw = os.urandom(5000)
    packed = compress(ZSTD, raw)
    events = feed(
        assembler(),
        header(kind="bytes", compression=ZSTD, total_length=len(raw)),
        chunk(content=packed[: len(packed) // 2]),
        trailer(),
    )
    assert failure(events).error.reason == R.INCOMPLETE


@pytest.mark.parametrize("inline", [False, True])
def test_zstd_without_total_length_is_refused(inline: bool) -> None:
    # zstd frames here carry no end check the receiver can rely on; total_length is required.
    packed = compress(ZSTD, b"z" * 100)
    events = feed(
        assembler(),
        header(compression=ZSTD, inline=packed if inline else None),
        *([] if inline else [chunk(content=packed), trailer()]),
    )
    assert failure(events).error.reason == R.UNSUPPORTED_COMPRESSION


# -- limits ----------------------------------------------------------------------------------


def test_inline_compressed_payload_over_the_cap() -> None:
    limits = StreamLimits(max_stream_bytes=1000)
    raw = bytes(50000)
    events = feed(
        assembler(limits), header(inline=deflate(raw), compression=DEFLATE, total_length=50000)
    )
    error = failure(events).error
    assert error.reason == R.PAYLOAD_TOO_LARGE
    assert "maximum payload size" in error.message


@pytest.mark.parametrize("compression", [DEFLATE, ZSTD])
def test_chunked_compressed_payload_over_the_cap(compression: int) -> None:
    limits = StreamLimits(max_stream_bytes=50000)
    packed = compress(compression, b"w" * 60000)
    asm = assembler(limits)
    events = feed(
        asm,
        header(kind="bytes", compression=compression, total_length=60000),
        chunk(content=packed),
        trailer(),
    )
    error = failure(events).error
    assert error.reason == R.PAYLOAD_TOO_LARGE
    assert "maximum payload size" in error.message
    assert sum(len(e.data) for e in events if isinstance(e, StreamData)) <= 50000
    assert asm.open_stream_ids == []


def test_deflate_bomb_in_chunks_is_stopped() -> None:
    codec = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = codec.compress(bytes(100 << 20)) + codec.flush()  # 100 MiB of zeros
    limits = StreamLimits(max_stream_bytes=1 << 20)
    asm = assembler(limits)
    events = feed(asm, header(kind="bytes", compression=DEFLATE))
    for i in range(0, len(packed), 15000):
        events += feed(asm, chunk(index=i // 15000, content=packed[i : i + 15000]))
    assert failure(events).error.reason == R.PAYLOAD_TOO_LARGE
    assert sum(len(e.data) for e in events if isinstance(e, StreamData)) <= 1 << 20


def test_uncompressed_stream_over_the_cap() -> None:
    # LiveKit caps only compressed streams; this library bounds every stream.
    limits = StreamLimits(max_stream_bytes=10)
    asm = assembler(limits)
    events = feed(asm, header(kind="bytes"), chunk(index=0, content=b"x" * 6))
    events += feed(asm, chunk(index=1, content=b"x" * 6))
    assert failure(events).error.reason == R.PAYLOAD_TOO_LARGE
    assert content(events) == b"x" * 6
    big_inline = feed(asm, header("i", kind="bytes", inline=b"x" * 11))
    assert failure(big_inline).error.reason == R.PAYLOAD_TOO_LARGE


def test_too_many_open_streams_per_sender() -> None:
    limits = StreamLimits(max_open_streams_per_sender=2)
    asm = assembler(limits)
    feed(asm, header("a"), header("b"))
    events = feed(asm, header("c"))
    assert isinstance(events[0], StreamOpened)
    assert failure(events).error.reason == R.TOO_MANY_STREAMS
    assert sorted(asm.open_stream_ids) == ["a", "b"]
    assert len(feed(asm, header("d", sender="bob"))) == 1  # other senders are unaffected
    assert len(feed(asm, header("e", inline=b"x"))) == 3  # inline streams hold nothing
    feed(asm, trailer("a"))
    assert len(feed(asm, header("f"))) == 1


def test_idle_streams_expire() -> None:
    asm = assembler(StreamLimits(idle_timeout=5.0))
    assert asm.next_deadline() is None
    feed(asm, header("old"), now=100.0)
    feed(asm, header("new"), now=103.0)
    assert asm.next_deadline() == 105.0
    assert asm.expire(104.9) == []
    feed(asm, chunk("old", content=b"x"), now=104.0)  # activity postpones expiry
    assert asm.next_deadline() == 108.0
    events = asm.expire(108.0)
    assert [e.stream_id for e in events] == ["new"]
    assert failure(events).error.reason == R.IDLE_TIMEOUT
    assert asm.open_stream_ids == ["old"]


def test_non_stream_packets_are_ignored() -> None:
    from livekit_rpc.wire.packets import rpc_ack_packet

    assert assembler().receive(rpc_ack_packet(request_id="x", destination="y")) == []
