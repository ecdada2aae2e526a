"""streams/framing.py: route planning, whole-payload encoding and incremental chunk framing."""

from __future__ import annotations

import zlib

import pytest
import zstandard

from livekit_rpc import DataStreamError, DataStreamErrorReason
from livekit_rpc.streams.framing import (
    ChunkFramer,
    Route,
    StreamHeaderFields,
    encode_payload,
    guard_header,
    plan_route,
    text_header,
)
from livekit_rpc.wire import constants as c

from .helpers import V0, V1, V2_ALL, V2_BARE, V2_DEFLATE, directory

NONE, DEFLATE, ZSTD = c.COMPRESSION_NONE, c.COMPRESSION_DEFLATE_RAW, c.COMPRESSION_LKRPC_ZSTD


def inflate(data: bytes) -> bytes:
    codec = zlib.decompressobj(-15)
    return codec.decompress(data) + codec.flush()


def text_fields(**overrides: object) -> StreamHeaderFields:
    args: dict[str, object] = dict(
        stream_id="sid",
        timestamp_ms=1234,
        topic="topic",
        mime_type=c.TEXT_MIME_TYPE,
        text_header=text_header(),
    )
    args.update(overrides)
    return StreamHeaderFields(**args)  # type: ignore[arg-type]


def byte_fields(**overrides: object) -> StreamHeaderFields:
    args: dict[str, object] = dict(
        stream_id="sid",
        timestamp_ms=1234,
        topic="topic",
        mime_type=c.BYTES_MIME_TYPE,
        byte_name="unknown",
    )
    args.update(overrides)
    return StreamHeaderFields(**args)  # type: ignore[arg-type]


# -- plan_route ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peers", "destinations", "compress", "expected"),
    [
        # Broadcasts consider every known participant; an empty room counts as fully capable.
        ({}, [], True, (True, DEFLATE)),
        ({"a": V2_DEFLATE, "b": V2_DEFLATE}, [], True, (True, DEFLATE)),
        ({"a": V2_DEFLATE, "b": V2_BARE}, [], True, (True, NONE)),
        ({"a": V2_DEFLATE, "b": V1}, [], True, (False, NONE)),
        ({"a": V0, "b": V0, "c": V1}, [], True, (False, NONE)),
        # Compression is never offered below protocol 2, even with the capability.
        ({"a": (1, (c.CAP_COMPRESSION_DEFLATE_RAW,))}, ["a"], True, (False, NONE)),
        ({"a": V2_DEFLATE}, ["a"], False, (True, NONE)),
        ({"a": V2_DEFLATE, "b": V0}, ["a"], True, (True, DEFLATE)),
        ({"a": V2_DEFLATE, "b": V2_BARE}, ["a", "b"], True, (True, NONE)),
        ({}, ["stranger"], True, (False, NONE)),
        # zstd: targeted sends whose every destination advertises it.
        ({"a": V2_ALL, "b": V2_ALL}, ["a", "b"], True, (True, ZSTD)),
        ({"a": V2_ALL, "b": V2_DEFLATE}, ["a", "b"], True, (True, DEFLATE)),
        ({"a": V2_ALL}, [], True, (True, DEFLATE)),  # never for a broadcast
        ({"a": V2_ALL}, ["a"], False, (True, NONE)),
        ({"a": (2, (c.CAP_LKRPC_COMPRESSION_ZSTD,))}, ["a"], True, (True, ZSTD)),
        ({"a": (1, tuple(c.LOCAL_CAPABILITIES))}, ["a"], True, (False, NONE)),
    ],
)
def test_plan_route(
    peers: dict[str, tuple[int, tuple[int, ...]]],
    destinations: list[str],
    compress: bool,
    expected: tuple[bool, int],
) -> None:
    route = plan_route(directory(**peers), destinations, compress=compress)
    assert (route.v2, route.compression) == expected
    assert route.destinations == tuple(destinations)


# -- encode_payload ---------------------------------------------------------------------------

LEGACY = Route((), False, NONE)
V2 = Route(("bob",), True, NONE)
V2_Z = Route(("bob",), True, DEFLATE)


def kinds(packets: list) -> list[str]:  # type: ignore[type-arg]
    return [p.WhichOneof("value") for p in packets]


def test_legacy_text_is_header_chunk_trailer() -> None:
    packets = list(encode_payload(text_fields(attributes={"k": "v"}), b"hello world", LEGACY))
    assert kinds(packets) == ["stream_header", "stream_chunk", "stream_trailer"]
    header = packets[0].stream_header
    assert header.WhichOneof("content_header") == "text_header"
    assert (header.stream_id, header.topic, header.mime_type, header.timestamp) == (
        "sid",
        "topic",
        "text/plain",
        1234,
    )
    assert header.total_length == 11
    assert header.compression == NONE
    assert not header.HasField("inline_content")
    assert dict(header.attributes) == {"k": "v"}
    chunk = packets[1].stream_chunk
    assert (chunk.stream_id, chunk.chunk_index, chunk.content) == ("sid", 0, b"hello world")
    assert not chunk.HasField("iv")
    assert chunk.version == 0
    trailer = packets[2].stream_trailer
    assert (trailer.stream_id, trailer.reason, dict(trailer.attributes)) == ("sid", "", {})


def test_legacy_text_splits_on_utf8_boundaries() -> None:
    payload = ("a" * 14999 + "😀" + "b" * 10).encode()
    packets = list(encode_payload(text_fields(), payload, LEGACY))
    contents = [p.stream_chunk.content for p in packets[1:-1]]
    assert [len(x) for x in contents] == [14999, 14]
    assert [p.stream_chunk.chunk_index for p in packets[1:-1]] == [0, 1]


def test_legacy_bytes_cut_exactly() -> None:
    packets = list(encode_payload(byte_fields(), b"\xff" * 40000, LEGACY))
    assert [len(p.stream_chunk.content) for p in packets[1:-1]] == [15000, 15000, 10000]
    assert packets[0].stream_header.byte_header.name == "unknown"


@pytest.mark.parametrize("fields", [text_fields(), byte_fields()])
def test_empty_payload_legacy_is_header_and_trailer(fields: StreamHeaderFields) -> None:
    packets = list(encode_payload(fields, b"", LEGACY))
    assert kinds(packets) == ["stream_header", "stream_trailer"]
    assert packets[0].stream_header.HasField("total_length")
    assert packets[0].stream_header.total_length == 0


@pytest.mark.parametrize("route", [V2, V2_Z])
def test_empty_payload_v2_is_one_inline_packet(route: Route) -> None:
    (packet,) = encode_payload(text_fields(), b"", route)
    header = packet.stream_header
    assert header.HasField("inline_content")
    assert header.inline_content == b""
    assert header.HasField("total_length")
    assert header.total_length == 0
    assert header.compression == NONE  # deflate of nothing (03 00) is not smaller


def test_inline_compressed_only_when_smaller() -> None:
    phrase = b"hello hello compressible world"
    (packet,) = encode_payload(text_fields(), phrase, V2_Z)
    assert packet.stream_header.compression == DEFLATE
    assert packet.stream_header.inline_content != phrase
    assert inflate(packet.stream_header.inline_content) == phrase
    assert packet.stream_header.total_length == len(phrase)  # uncompressed length
    (short,) = encode_payload(text_fields(), b"short", V2_Z)
    assert (short.stream_header.compression, short.stream_header.inline_content) == (
        NONE,
        b"short",
    )


def test_inline_zstd() -> None:
    payload = b"zstd likes repetition " * 100
    (packet,) = encode_payload(text_fields(), payload, Route(("bob",), True, ZSTD))
    assert packet.stream_header.compression == ZSTD
    assert zstandard.ZstdDecompressor().decompress(packet.stream_header.inline_content) == payload


def test_inline_budget_is_15000_bytes_for_the_whole_packet() -> None:
    fields = byte_fields(attributes={"pad": "x" * 100})
    (empty,) = encode_payload(fields, b"", V2)
    overhead = empty.ByteSize()
    fits = 15000 - overhead - 2  # content grows the length prefix of inline_content by 2
    (packet,) = encode_payload(fields, b"\x07" * fits, V2)
    assert packet.ByteSize() == 15000
    packets = list(encode_payload(fields, b"\x07" * (fits + 1), V2))
    assert kinds(packets) == ["stream_header", "stream_chunk", "stream_trailer"]
    assert not packets[0].stream_header.HasField("inline_content")


def test_compressed_payload_too_big_for_inline_is_chunked_compressed() -> None:
    import random

    rng = random.Random(7)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    text = "".join("hello world" + "".join(rng.choices(alphabet, k=1000)) for _ in range(50))
    payload = text.encode()
    packets = list(encode_payload(text_fields(), payload, V2_Z))
    assert kinds(packets) == ["stream_header"] + ["stream_chunk"] * 3 + ["stream_trailer"]
    header = packets[0].stream_header
    assert header.compression == DEFLATE
    assert header.total_length == len(payload)
    assert not header.HasField("inline_content")
    contents = [p.stream_chunk.content for p in packets[1:-1]]
    assert len(contents[0]) == 15000 and len(contents[1]) == 15000
    assert inflate(b"".join(contents)) == payload


def test_highly_compressible_big_payload_stays_inline() -> None:
    payload = b"hello world" * 20000
    (packet,) = encode_payload(text_fields(), payload, V2_Z)
    assert packet.stream_header.compression == DEFLATE
    assert inflate(packet.stream_header.inline_content) == payload


def test_allow_inline_false_goes_chunked() -> None:
    packets = list(encode_payload(text_fields(), b"hi", V2, allow_inline=False))
    assert kinds(packets) == ["stream_header", "stream_chunk", "stream_trailer"]


def test_every_packet_carries_the_destinations() -> None:
    route = Route(("bob", "carol"), False, NONE)
    packets = list(encode_payload(byte_fields(), b"x" * 20000, route))
    assert all(list(p.destination_identities) == ["bob", "carol"] for p in packets)


@pytest.mark.parametrize("route", [LEGACY, V2, V2_Z])
def test_oversized_header_raises_before_any_packet(route: Route) -> None:
    fields = text_fields(attributes={"big": "x" * 20000})
    with pytest.raises(DataStreamError) as caught:
        encode_payload(fields, b"hello", route)
    assert caught.value.reason == DataStreamErrorReason.HEADER_TOO_LARGE


def test_guard_header() -> None:
    ok = text_fields(attributes={"a": "x" * 14000}).packet(LEGACY, compression=0, total_length=1)
    assert guard_header(ok) is ok
    big = text_fields(attributes={"a": "x" * 15000}).packet(LEGACY, compression=0, total_length=1)
    with pytest.raises(DataStreamError, match="over the 15000-byte limit"):
        guard_header(big)


def test_text_header_fields() -> None:
    th = text_header(attached_stream_ids=["x"], reply_to_stream_id="r", version=3, operation_type=1)
    assert (list(th.attached_stream_ids), th.reply_to_stream_id, th.version) == (["x"], "r", 3)
    assert th.operation_type == 1
    assert not th.generated


# -- ChunkFramer ------------------------------------------------------------------------------


def test_framer_numbers_chunks_across_writes_without_merging() -> None:
    framer = ChunkFramer("sid", ["bob"])
    packets = framer.data(b"a" * 20000) + framer.data(b"b" * 20000) + framer.data(b"")
    assert [len(p.stream_chunk.content) for p in packets] == [15000, 5000, 15000, 5000]
    assert [p.stream_chunk.chunk_index for p in packets] == [0, 1, 2, 3]
    assert all(list(p.destination_identities) == ["bob"] for p in packets)
    assert framer.next_index == 4


def test_framer_text_splits_each_write() -> None:
    framer = ChunkFramer("sid", [])
    packets = framer.text("a" * 14999 + "😀" + "b" * 10) + framer.text("") + framer.text("z")
    assert [p.stream_chunk.content for p in packets] == [
        b"a" * 14999,
        "😀".encode() + b"b" * 10,
        b"z",
    ]


def test_framer_rechunk_emits_exact_chunks_then_flush() -> None:
    framer = ChunkFramer("sid", [])
    assert framer.rechunk(b"x" * 10000) == []
    full = framer.rechunk(b"y" * 25000)
    assert [len(p.stream_chunk.content) for p in full] == [15000, 15000]
    rest = framer.flush()
    assert [len(p.stream_chunk.content) for p in rest] == [5000]
    assert framer.flush() == []
    assert [p.stream_chunk.chunk_index for p in full + rest] == [0, 1, 2]


def test_framer_trailer() -> None:
    framer = ChunkFramer("sid", ["b"])
    plain = framer.trailer()
    assert (plain.stream_trailer.reason, dict(plain.stream_trailer.attributes)) == ("", {})
    aborted = framer.trailer("aborted", {"k": "v"})
    assert aborted.stream_trailer.reason == "aborted"
    assert dict(aborted.stream_trailer.attributes) == {"k": "v"}
    assert list(aborted.destination_identities) == ["b"]
