"""streams/outgoing.py: the packets each send API produces for each kind of room."""

from __future__ import annotations

import os
import random
import zlib
from pathlib import Path

import pytest

from livekit_rpc import DataStreamError, DataStreamErrorReason, OutgoingDataStreamManager
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.packets import DataPacket

from .helpers import V0, V1, V2_ALL, V2_BARE, V2_DEFLATE, Wire, directory

NONE, DEFLATE, ZSTD = c.COMPRESSION_NONE, c.COMPRESSION_DEFLATE_RAW, c.COMPRESSION_LKRPC_ZSTD
PHRASE = "hello hello compressible world"
LEGACY_ROOM = {"p0a": V0, "p0b": V0, "p1": V1}


def manager(**peers: tuple[int, tuple[int, ...]]) -> tuple[OutgoingDataStreamManager, Wire]:
    wire = Wire()
    return OutgoingDataStreamManager(wire.send, directory(**peers)), wire


def inflate(data: bytes) -> bytes:
    codec = zlib.decompressobj(-15)
    return codec.decompress(data) + codec.flush()


def shape(packets: list[DataPacket]) -> list[str]:
    """ "H" header, "I" inline header, "C<len>" chunk, "T" trailer."""
    out = []
    for p in packets:
        which = p.WhichOneof("value")
        if which == "stream_header":
            out.append("I" if p.stream_header.HasField("inline_content") else "H")
        elif which == "stream_chunk":
            out.append(f"C{len(p.stream_chunk.content)}")
        else:
            out.append("T")
    return out


def semi_compressible(n_blocks: int = 50) -> str:
    rng = random.Random(11)
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
    return "".join("hello world" + "".join(rng.choices(alphabet, k=1000)) for _ in range(n_blocks))


def chunk_contents(packets: list[DataPacket]) -> list[bytes]:
    return [p.stream_chunk.content for p in packets if p.WhichOneof("value") == "stream_chunk"]


# -- send_text --------------------------------------------------------------------------------


async def test_send_text_to_legacy_room_broadcast() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    info = await streams.send_text("hello world", topic="chat")
    assert shape(wire.packets) == ["H", "C11", "T"]
    header = wire.packets[0].stream_header
    assert header.topic == "chat"
    assert header.WhichOneof("content_header") == "text_header"
    assert header.compression == NONE
    assert list(wire.packets[0].destination_identities) == []
    assert chunk_contents(wire.packets) == [b"hello world"]
    assert wire.packets[2].stream_trailer.reason == ""
    assert (info.stream_id, info.size, info.mime_type, info.topic) == (
        header.stream_id,
        11,
        "text/plain",
        "chat",
    )


async def test_send_text_40000_a_to_legacy_room() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    await streams.send_text("A" * 40000)
    assert shape(wire.packets) == ["H", "C15000", "C15000", "C10000", "T"]
    assert [p.stream_chunk.chunk_index for p in wire.packets[1:-1]] == [0, 1, 2]
    assert all(set(x) == {ord("A")} for x in chunk_contents(wire.packets))


async def test_send_text_compressible_to_capable_v2_peers_is_one_inline_deflate() -> None:
    streams, wire = manager(bob=V2_DEFLATE, carol=V2_DEFLATE)
    await streams.send_text(PHRASE, destination_identities=["bob", "carol"])
    (packet,) = wire.packets
    assert packet.stream_header.compression == DEFLATE
    assert packet.stream_header.inline_content != PHRASE.encode()
    assert inflate(packet.stream_header.inline_content) == PHRASE.encode()
    assert list(packet.destination_identities) == ["bob", "carol"]


async def test_send_text_short_stays_raw_inline() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_text("short", destination_identities=["bob"])
    (packet,) = wire.packets
    assert (packet.stream_header.compression, packet.stream_header.inline_content) == (
        NONE,
        b"short",
    )


async def test_send_text_to_v2_peer_without_capability_is_raw_inline() -> None:
    streams, wire = manager(bob=V2_BARE)
    await streams.send_text(PHRASE, destination_identities=["bob"])
    (packet,) = wire.packets
    assert (packet.stream_header.compression, packet.stream_header.inline_content) == (
        NONE,
        PHRASE.encode(),
    )


async def test_send_text_220kb_repetitive_is_one_inline_compressed_packet() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_text("hello world" * 20000, destination_identities=["bob"])
    (packet,) = wire.packets
    assert packet.stream_header.compression == DEFLATE
    assert packet.stream_header.total_length == 220000


async def test_send_text_semi_compressible_is_chunked_deflate() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    text = semi_compressible()
    await streams.send_text(text, destination_identities=["bob"])
    assert shape(wire.packets)[:2] == ["H", "C15000"]
    assert shape(wire.packets)[-1] == "T"
    assert len(wire.packets) == 5
    assert wire.packets[0].stream_header.compression == DEFLATE
    assert inflate(b"".join(chunk_contents(wire.packets))) == text.encode()


async def test_send_text_compress_false() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_text(PHRASE, destination_identities=["bob"], compress=False)
    assert wire.packets[0].stream_header.compression == NONE
    assert wire.packets[0].stream_header.inline_content == PHRASE.encode()
    wire.packets.clear()
    await streams.send_text(semi_compressible(), destination_identities=["bob"], compress=False)
    assert shape(wire.packets) == ["H", "C15000", "C15000", "C15000", "C5550", "T"]
    assert wire.packets[0].stream_header.compression == NONE


async def test_send_text_40000_a_to_v2_peer_without_capability() -> None:
    streams, wire = manager(bob=V2_BARE)
    await streams.send_text("A" * 40000, destination_identities=["bob"])
    assert shape(wire.packets) == ["H", "C15000", "C15000", "C10000", "T"]
    assert wire.packets[0].stream_header.compression == NONE


async def test_send_text_mixed_room_broadcast_is_legacy() -> None:
    streams, wire = manager(bob=V2_DEFLATE, old=V0)
    await streams.send_text(PHRASE)
    assert shape(wire.packets) == ["H", "C30", "T"]
    assert wire.packets[0].stream_header.compression == NONE


async def test_send_text_targeted_at_capable_subset_of_mixed_room() -> None:
    streams, wire = manager(bob=V2_DEFLATE, carol=V2_DEFLATE, old=V0, bare=V2_BARE)
    await streams.send_text(PHRASE, destination_identities=["bob", "carol"])
    assert shape(wire.packets) == ["I"]
    assert wire.packets[0].stream_header.compression == DEFLATE
    wire.packets.clear()
    await streams.send_text(PHRASE, destination_identities=["bob", "bare"])
    assert shape(wire.packets) == ["I"]
    assert wire.packets[0].stream_header.compression == NONE


async def test_send_text_broadcasts() -> None:
    capable, wire = manager(bob=V2_ALL, carol=V2_ALL)
    await capable.send_text(PHRASE)
    assert shape(wire.packets) == ["I"]
    assert wire.packets[0].stream_header.compression == DEFLATE  # never zstd for a broadcast
    partly, wire = manager(bob=V2_DEFLATE, bare=V2_BARE)
    await partly.send_text(PHRASE)
    assert wire.packets[0].stream_header.compression == NONE
    empty, wire = manager()
    await empty.send_text(PHRASE)
    assert shape(wire.packets) == ["I"]
    assert wire.packets[0].stream_header.compression == DEFLATE


async def test_send_text_to_unknown_destination_is_legacy() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_text(PHRASE, destination_identities=["stranger"])
    assert shape(wire.packets) == ["H", "C30", "T"]
    assert wire.packets[0].stream_header.compression == NONE


async def test_send_text_empty() -> None:
    legacy, wire = manager(**LEGACY_ROOM)
    await legacy.send_text("")
    assert shape(wire.packets) == ["H", "T"]
    assert wire.packets[0].stream_header.HasField("total_length")
    assert wire.packets[0].stream_header.total_length == 0
    v2, wire = manager(bob=V2_DEFLATE)
    await v2.send_text("", destination_identities=["bob"])
    (packet,) = wire.packets
    header = packet.stream_header
    assert header.compression == NONE
    assert header.HasField("inline_content") and header.inline_content == b""
    assert header.HasField("total_length") and header.total_length == 0


async def test_send_text_with_an_attachment(tmp_path: Path) -> None:
    path = tmp_path / "photo.bin"
    path.write_bytes(os.urandom(1000))
    streams, wire = manager(bob=V2_DEFLATE)
    info = await streams.send_text(
        "see attached", destination_identities=["bob"], attachments=[str(path)], topic="t"
    )
    headers = wire.of_kind("stream_header")
    assert len(headers) == 2
    text, data = (h.stream_header for h in headers)
    assert text.WhichOneof("content_header") == "text_header"
    assert not text.HasField("inline_content")
    assert list(text.text_header.attached_stream_ids) == info.attachments
    assert len(info.attachments) == 1
    assert data.stream_id == info.attachments[0]
    assert data.byte_header.name == "photo.bin"
    assert data.topic == "t"
    trailers = {p.stream_trailer.stream_id for p in wire.of_kind("stream_trailer")}
    assert trailers == {text.stream_id, data.stream_id}
    assert all(list(p.destination_identities) == ["bob"] for p in wire.packets)


async def test_send_text_progress_reaches_one() -> None:
    streams, _ = manager(**LEGACY_ROOM)
    seen: list[float] = []
    await streams.send_text("A" * 40000, on_progress=seen.append)
    assert seen == [0.375, 0.75, 1.0, 1.0]
    seen.clear()
    await streams.send_text("", on_progress=seen.append)
    assert seen == [1.0]


async def test_send_text_caller_chosen_stream_id_and_reply_to() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    info = await streams.send_text("x", stream_id="mine", reply_to_id="other")
    header = wire.packets[0].stream_header
    assert header.stream_id == info.stream_id == "mine"
    assert header.text_header.reply_to_stream_id == info.reply_to_id == "other"


# -- send_bytes -------------------------------------------------------------------------------


async def test_send_bytes_compressible_inline_and_info() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    info = await streams.send_bytes(
        PHRASE.encode(), destination_identities=["bob"], attributes={"k": "v"}
    )
    (packet,) = wire.packets
    header = packet.stream_header
    assert header.compression == DEFLATE
    assert header.byte_header.name == "unknown"
    assert header.mime_type == "application/octet-stream"
    assert (info.name, info.mime_type, info.size, info.attributes) == (
        "unknown",
        "application/octet-stream",
        len(PHRASE),
        {"k": "v"},
    )


async def test_send_bytes_small_and_incapable() -> None:
    streams, wire = manager(bob=V2_DEFLATE, bare=V2_BARE)
    await streams.send_bytes(b"\x01\x02\x03\x04", destination_identities=["bob"])
    await streams.send_bytes(PHRASE.encode(), destination_identities=["bare"])
    assert shape(wire.packets) == ["I", "I"]
    assert [p.stream_header.compression for p in wire.packets] == [NONE, NONE]
    assert wire.packets[0].stream_header.inline_content == b"\x01\x02\x03\x04"


async def test_send_bytes_50000_ones_is_one_inline_compressed_packet() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_bytes(b"\x01" * 50000, destination_identities=["bob"])
    assert shape(wire.packets) == ["I"]
    assert inflate(wire.packets[0].stream_header.inline_content) == b"\x01" * 50000


async def test_send_bytes_semi_compressible_is_chunked() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    data = semi_compressible().encode()
    await streams.send_bytes(data, destination_identities=["bob"])
    assert shape(wire.packets)[:2] == ["H", "C15000"] and len(wire.packets) == 5
    assert not wire.packets[0].stream_header.HasField("inline_content")
    assert inflate(b"".join(chunk_contents(wire.packets))) == data


async def test_send_bytes_compress_false() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_bytes(PHRASE.encode(), destination_identities=["bob"], compress=False)
    await streams.send_bytes(b"\x00" * 40000, destination_identities=["bob"], compress=False)
    assert shape(wire.packets) == ["I", "H", "C15000", "C15000", "C10000", "T"]
    assert wire.packets[0].stream_header.inline_content == PHRASE.encode()


async def test_send_bytes_to_legacy_room() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    await streams.send_bytes(b"\x01\x02\x03\x04")
    assert shape(wire.packets) == ["H", "C4", "T"]
    wire.packets.clear()
    await streams.send_bytes(b"")
    assert shape(wire.packets) == ["H", "T"]
    assert wire.packets[0].stream_header.total_length == 0
    wire.packets.clear()
    await streams.send_bytes(b"x" * 20000, name="n", mime_type="a/b")
    assert shape(wire.packets) == ["H", "C15000", "C5000", "T"]
    header = wire.packets[0].stream_header
    assert (header.byte_header.name, header.mime_type) == ("n", "a/b")


async def test_send_bytes_empty_to_v2_is_one_empty_inline_packet() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_bytes(b"", destination_identities=["bob"])
    (packet,) = wire.packets
    assert packet.stream_header.HasField("inline_content")
    assert packet.stream_header.inline_content == b""


async def test_send_bytes_zstd_between_zstd_peers() -> None:
    streams, wire = manager(bob=V2_ALL)
    data = semi_compressible().encode()
    await streams.send_bytes(data, destination_identities=["bob"])
    assert wire.packets[0].stream_header.compression == ZSTD
    assert wire.packets[0].stream_header.total_length == len(data)


# -- send_file --------------------------------------------------------------------------------


async def test_send_file_to_legacy_room(tmp_path: Path) -> None:
    path = tmp_path / "f.dat"
    path.write_bytes(os.urandom(20000))
    streams, wire = manager(**LEGACY_ROOM)
    info = await streams.send_file(str(path))
    assert shape(wire.packets) == ["H", "C15000", "C5000", "T"]
    header = wire.packets[0].stream_header
    assert (header.compression, header.total_length, header.byte_header.name) == (
        NONE,
        20000,
        "f.dat",
    )
    assert b"".join(chunk_contents(wire.packets)) == path.read_bytes()
    assert (info.name, info.size) == ("f.dat", 20000)


async def test_send_file_random_to_capable_peer_is_deflate_never_inline(tmp_path: Path) -> None:
    path = tmp_path / "r.bin"
    data = os.urandom(50000)
    path.write_bytes(data)
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_file(str(path), destination_identities=["bob"])
    assert shape(wire.packets)[:4] == ["H", "C15000", "C15000", "C15000"]
    assert len(wire.packets) == 6 and shape(wire.packets)[-1] == "T"
    assert wire.packets[0].stream_header.compression == DEFLATE
    contents = b"".join(chunk_contents(wire.packets))
    assert len(contents) > 50000
    assert inflate(contents) == data


async def test_send_file_small_compressible(tmp_path: Path) -> None:
    path = tmp_path / "ones.bin"
    path.write_bytes(b"\x01" * 10000)
    capable, wire = manager(bob=V2_DEFLATE)
    await capable.send_file(str(path), destination_identities=["bob"])
    assert len(wire.packets) == 3
    assert wire.packets[0].stream_header.compression == DEFLATE
    assert not wire.packets[0].stream_header.HasField("inline_content")
    assert len(wire.packets[1].stream_chunk.content) < 10000
    bare, wire = manager(bob=V2_BARE)
    await bare.send_file(str(path), destination_identities=["bob"])
    assert shape(wire.packets) == ["H", "C10000", "T"]
    assert wire.packets[0].stream_header.compression == NONE
    off, wire = manager(bob=V2_DEFLATE)
    await off.send_file(str(path), destination_identities=["bob"], compress=False)
    assert shape(wire.packets) == ["H", "C10000", "T"]


async def test_send_file_empty_with_compression(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    streams, wire = manager(bob=V2_DEFLATE)
    await streams.send_file(str(path), destination_identities=["bob"])
    header = wire.packets[0].stream_header
    assert (header.compression, header.HasField("total_length"), header.total_length) == (
        DEFLATE,
        True,
        0,
    )
    assert chunk_contents(wire.packets) == [b"\x03\x00"]
    assert shape(wire.packets)[-1] == "T"


async def test_send_file_mime_type(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text("<p>")
    streams, wire = manager(**LEGACY_ROOM)
    await streams.send_file(str(path))
    await streams.send_file(str(path), mime_type="x/y")
    headers = [p.stream_header for p in wire.of_kind("stream_header")]
    assert [h.mime_type for h in headers] == ["text/html", "x/y"]


async def test_send_file_progress(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"z" * 100)
    streams, _ = manager(**LEGACY_ROOM)
    seen: list[float] = []
    await streams.send_file(str(path), on_progress=seen.append)
    assert seen[-1] == 1.0


# -- incremental writers ----------------------------------------------------------------------


async def test_stream_bytes_two_writes_of_20000() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    writer = await streams.stream_bytes()
    assert shape(wire.packets) == ["H"]  # header on open
    await writer.write(b"a" * 20000)
    await writer.write(b"b" * 20000)
    assert shape(wire.packets) == ["H", "C15000", "C5000", "C15000", "C5000"]
    await writer.aclose()
    assert shape(wire.packets)[-1] == "T"
    assert [p.stream_chunk.chunk_index for p in wire.packets[1:-1]] == [0, 1, 2, 3]
    header = wire.packets[0].stream_header
    assert not header.HasField("total_length")
    assert (header.byte_header.name, header.mime_type) == ("unknown", "application/octet-stream")


async def test_stream_bytes_four_bytes_to_legacy_room() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    async with await streams.stream_bytes(total_size=4) as writer:
        await writer.write(b"\x01\x02\x03\x04")
    assert shape(wire.packets) == ["H", "C4", "T"]
    assert wire.packets[0].stream_header.total_length == 4


async def test_stream_text_to_v2_peer_is_never_inline_or_compressed() -> None:
    streams, wire = manager(bob=V2_ALL)
    writer = await streams.stream_text(destination_identities=["bob"], topic="live")
    await writer.write(PHRASE * 100)
    await writer.write("")
    await writer.aclose()
    assert shape(wire.packets) == ["H", "C3000", "T"]
    header = wire.packets[0].stream_header
    assert header.compression == NONE
    assert not header.HasField("inline_content")
    assert all(list(p.destination_identities) == ["bob"] for p in wire.packets)
    assert writer.info.stream_id == header.stream_id


async def test_stream_text_emoji_boundary() -> None:
    streams, wire = manager(bob=V2_DEFLATE)
    writer = await streams.stream_text(destination_identities=["bob"])
    await writer.write("a" * 14999 + "😀" + "b" * 10)
    await writer.aclose()
    contents = chunk_contents(wire.packets)
    assert [len(x) for x in contents] == [14999, 14]
    assert [x.decode() for x in contents] == ["a" * 14999, "😀" + "b" * 10]


async def test_writer_abort_and_write_after_close() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    with pytest.raises(RuntimeError):
        async with await streams.stream_text() as writer:
            await writer.write("partial")
            raise RuntimeError("producer failed")
    assert wire.packets[-1].stream_trailer.reason == "aborted"
    with pytest.raises(DataStreamError) as caught:
        await writer.write("more")
    assert caught.value.reason == DataStreamErrorReason.ABNORMAL_END
    await writer.aclose()  # closing twice is a no-op
    assert len(wire.of_kind("stream_trailer")) == 1


async def test_writer_close_with_reason_and_attributes() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    writer = await streams.stream_bytes("n")
    await writer.aclose(reason="cancelled", attributes={"k": "v"})
    trailer = wire.packets[-1].stream_trailer
    assert (trailer.reason, dict(trailer.attributes)) == ("cancelled", {"k": "v"})


# -- header guard -----------------------------------------------------------------------------

BIG = {"big": "x" * 20000}


@pytest.mark.parametrize("peers", [LEGACY_ROOM, {"bob": V2_DEFLATE}])
async def test_header_too_large_sends_nothing(peers: dict, tmp_path: Path) -> None:  # type: ignore[type-arg]
    path = tmp_path / "f"
    path.write_bytes(b"x")
    streams, wire = manager(**peers)
    attempts = [
        streams.send_text("hello", attributes=BIG),
        streams.send_bytes(b"hello", attributes=BIG),
        streams.send_file(str(path), attributes=BIG),
        streams.stream_text(attributes=BIG),
        streams.stream_bytes(attributes=BIG),
    ]
    for attempt in attempts:
        with pytest.raises(DataStreamError) as caught:
            await attempt
        assert caught.value.reason == DataStreamErrorReason.HEADER_TOO_LARGE
    assert wire.packets == []


async def test_send_failure_propagates() -> None:
    streams, wire = manager(**LEGACY_ROOM)
    wire.fail = ConnectionError("down")
    with pytest.raises(ConnectionError):
        await streams.send_text("x")


# -- large compressed payloads: encoded off the event loop -------------------------------------


def _zstd_feeds_on(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the thread name of every zstd compression step."""
    import threading

    from livekit_rpc.wire import compression

    threads: list[str] = []
    original = compression.StreamCompressor.feed

    def feed(self: compression.StreamCompressor, data: bytes) -> bytes:
        threads.append(threading.current_thread().name)
        return original(self, data)

    monkeypatch.setattr(compression.StreamCompressor, "feed", feed)
    return threads


@pytest.mark.parametrize("size", [3_000_000, (1 << 20) + 1])
async def test_big_compressed_payload_is_encoded_off_the_loop_in_order(
    monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    import threading

    import zstandard

    threads = _zstd_feeds_on(monkeypatch)
    streams, wire = manager(bob=V2_ALL)
    data = (semi_compressible(200).encode() * 20)[:size]
    progress: list[float] = []
    await streams.send_bytes(data, destination_identities=["bob"], on_progress=progress.append)
    assert threads and threading.main_thread().name not in threads
    assert wire.packets[0].stream_header.compression == ZSTD
    assert wire.kinds()[-1] == "stream_trailer"
    chunks = wire.of_kind("stream_chunk")
    assert [p.stream_chunk.chunk_index for p in chunks] == list(range(len(chunks)))
    content = b"".join(p.stream_chunk.content for p in chunks)
    assert zstandard.ZstdDecompressor().decompressobj().decompress(content) == data
    assert progress == sorted(progress) and progress[-1] == 1.0


async def test_small_compressed_payload_stays_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    threads = _zstd_feeds_on(monkeypatch)
    streams, wire = manager(bob=V2_ALL)
    await streams.send_bytes(semi_compressible().encode(), destination_identities=["bob"])
    assert wire.packets[0].stream_header.compression == ZSTD
    assert set(threads) <= {threading.main_thread().name}


async def test_failure_mid_send_of_a_big_payload_stops_it() -> None:
    streams, _ = manager(bob=V2_ALL)
    data = semi_compressible(200).encode() * 20
    sent = 0

    async def send(packet: DataPacket) -> None:
        nonlocal sent
        sent += 1
        if sent == 5:
            raise ConnectionError("down")

    streams._send = send  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await streams.send_bytes(data, destination_identities=["bob"])
    assert sent == 5
