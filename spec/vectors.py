"""Test vectors for spec/spec.md §11, built with the library's own packet builders.

``make vectors`` (or ``python spec/vectors.py``) prints the vectors as markdown.
``python spec/vectors.py --update`` rewrites the generated block of spec/spec.md in place;
``tests/spec/test_vectors.py`` fails whenever that block and this script's output differ.

Every id, identity and timestamp is fixed, so the output depends only on the library and on
the compression libraries it links (zlib for deflate-raw, libzstd for the zstd extension).
Packets are serialized with ``deterministic=True``, which orders map entries by key.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEC_PATH = ROOT / "spec" / "spec.md"
BEGIN_MARKER = "<!-- BEGIN GENERATED VECTORS: spec/vectors.py output, do not edit by hand -->"
END_MARKER = "<!-- END GENERATED VECTORS -->"

if str(ROOT) not in sys.path:  # runs from a checkout without the package installed
    sys.path.insert(0, str(ROOT))

from google.protobuf.descriptor import Descriptor, FieldDescriptor  # noqa: E402

from livekit_rpc.rpc.errors import RpcError  # noqa: E402
from livekit_rpc.streams.framing import (  # noqa: E402
    ChunkFramer,
    Route,
    StreamHeaderFields,
    encode_payload,
    guard_header,
    text_header,
)
from livekit_rpc.wire import constants as c  # noqa: E402
from livekit_rpc.wire.compression import compress  # noqa: E402
from livekit_rpc.wire.packets import (  # noqa: E402
    DataPacket,
    rpc_ack_packet,
    rpc_error_packet,
    rpc_request_packet,
    rpc_response_packet,
)
from livekit_rpc.wire.utf8 import split_utf8, truncate_utf8  # noqa: E402

# -- fixed inputs ------------------------------------------------------------------------------

CALLER = "alice"
CALLEE = "bob"
CALLEE_SID = "PA_bob"
TIMESTAMP_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
REQUEST_ID = "00000000-0000-4000-8000-00000000a001"
STREAM_REQUEST = "00000000-0000-4000-8000-00000000b001"
STREAM_REQUEST_ZSTD = "00000000-0000-4000-8000-00000000b002"
STREAM_REQUEST_LEGACY = "00000000-0000-4000-8000-00000000b003"
STREAM_RESPONSE_EMPTY = "00000000-0000-4000-8000-00000000b004"
STREAM_RESPONSE_EMPTY_LEGACY = "00000000-0000-4000-8000-00000000b005"
STREAM_TEXT = "00000000-0000-4000-8000-00000000b006"
STREAM_ATTACHMENT = "00000000-0000-4000-8000-00000000b007"
METHOD = "greet"
V1_PAYLOAD = '{"name":"bob"}'
V2_PAYLOAD = '{"words":["lorem","lorem","lorem","lorem","lorem","lorem","lorem","lorem"]}'
WIRE_TIMEOUT_MS = 15000

REQUEST_ATTRIBUTES = {
    c.ATTR_REQUEST_ID: REQUEST_ID,
    c.ATTR_METHOD: METHOD,
    c.ATTR_RESPONSE_TIMEOUT_MS: str(WIRE_TIMEOUT_MS),
    c.ATTR_VERSION: str(c.RPC_VERSION_V2),
}

# -- vector model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Vector:
    key: str
    title: str
    description: str
    packets: tuple[tuple[str, DataPacket], ...]


def serialize(packet: DataPacket) -> bytes:
    return packet.SerializeToString(deterministic=True)


def _request_fields(stream_id: str, payload_attributes: dict[str, str]) -> StreamHeaderFields:
    return StreamHeaderFields(
        stream_id=stream_id,
        timestamp_ms=TIMESTAMP_MS,
        topic=c.RPC_REQUEST_TOPIC,
        mime_type=c.TEXT_MIME_TYPE,
        attributes=payload_attributes,
        text_header=text_header(),
    )


def _response_fields(stream_id: str) -> StreamHeaderFields:
    return StreamHeaderFields(
        stream_id=stream_id,
        timestamp_ms=TIMESTAMP_MS,
        topic=c.RPC_RESPONSE_TOPIC,
        mime_type=c.TEXT_MIME_TYPE,
        attributes={c.ATTR_REQUEST_ID: REQUEST_ID},
        text_header=text_header(),
    )


def _named(packets: Iterable[DataPacket], prefix: str = "") -> tuple[tuple[str, DataPacket], ...]:
    named = []
    for packet in packets:
        which = packet.WhichOneof("value") or "?"
        label = {"stream_header": "header", "stream_chunk": "chunk", "stream_trailer": "trailer"}
        name = label.get(which, which)
        if which == "stream_chunk":
            name = f"chunk {packet.stream_chunk.chunk_index}"
        named.append((prefix + name, packet))
    return tuple(named)


def build_vectors() -> list[Vector]:
    """Every vector, in the order the spec lists them."""
    vectors: list[Vector] = []

    vectors.append(
        Vector(
            "V1",
            "RPC v1 request",
            f"{CALLER} calls `{METHOD}` on {CALLEE} (client_protocol 0) with the default 15 s "
            f"timeout. Built with `rpc_request_packet`. As sent: no `participant_identity`.",
            _named(
                [
                    rpc_request_packet(
                        request_id=REQUEST_ID,
                        method=METHOD,
                        payload=V1_PAYLOAD,
                        response_timeout_ms=WIRE_TIMEOUT_MS,
                        destination=CALLEE,
                    )
                ]
            ),
        )
    )
    vectors.append(
        Vector(
            "V2",
            "RPC ack",
            f"{CALLEE} acknowledges the request (v1 and v2 alike). Built with `rpc_ack_packet`.",
            _named([rpc_ack_packet(request_id=REQUEST_ID, destination=CALLER)]),
        )
    )
    delivered = rpc_ack_packet(request_id=REQUEST_ID, destination=CALLER)
    delivered.sequence = 2
    delivered.participant_identity = CALLEE
    delivered.participant_sid = CALLEE_SID
    vectors.append(
        Vector(
            "V3",
            "RPC ack as delivered to the caller",
            f"V2 after {CALLEE}'s transport numbered it (`sequence` 2) and the server stamped "
            f"the sender (`participant_identity`, `participant_sid`). Receivers take the sender "
            f"from these stamped fields only.",
            _named([delivered]),
        )
    )
    vectors.append(
        Vector(
            "V4",
            "RPC v1 response with an empty payload",
            "A handler returned the empty string. The `payload` case is still selected: "
            "`RpcResponse` ends in `12 00`. Built with `rpc_response_packet`.",
            _named([rpc_response_packet(request_id=REQUEST_ID, payload="", destination=CALLER)]),
        )
    )
    unsupported = RpcError.built_in(RpcError.ErrorCode.UNSUPPORTED_METHOD)
    vectors.append(
        Vector(
            "V5",
            "RPC error response 1400",
            "No handler for the method. `data` is absent, so `RpcError` has only fields 1 "
            "and 2. Built with `rpc_error_packet`.",
            _named(
                [
                    rpc_error_packet(
                        request_id=REQUEST_ID, error=unsupported.to_proto(), destination=CALLER
                    )
                ]
            ),
        )
    )
    uncaught = RpcError.built_in(RpcError.ErrorCode.APPLICATION_ERROR, "Uncaught error: boom")
    vectors.append(
        Vector(
            "V6",
            "RPC error response 1500 with data",
            "The handler raised a plain exception whose text is `boom` (§10, D5).",
            _named(
                [
                    rpc_error_packet(
                        request_id=REQUEST_ID, error=uncaught.to_proto(), destination=CALLER
                    )
                ]
            ),
        )
    )

    deflate_route = Route((CALLEE,), True, c.COMPRESSION_DEFLATE_RAW)
    vectors.append(
        Vector(
            "V7",
            "RPC v2 request: one inline deflate-raw header",
            f"{CALLER} calls `{METHOD}` on {CALLEE} (client_protocol 2, advertises "
            f"CAP_COMPRESSION_DEFLATE_RAW). The {len(V2_PAYLOAD)}-byte payload deflates to "
            f"{len(compress(c.COMPRESSION_DEFLATE_RAW, V2_PAYLOAD.encode()))} bytes, which is "
            f"smaller, so `inline_content` holds the deflate-raw bytes and `total_length` the "
            f"uncompressed length. Built with `encode_payload`.",
            _named(
                encode_payload(
                    _request_fields(STREAM_REQUEST, REQUEST_ATTRIBUTES),
                    V2_PAYLOAD.encode(),
                    deflate_route,
                )
            ),
        )
    )
    zstd_route = Route((CALLEE,), True, c.COMPRESSION_LKRPC_ZSTD)
    vectors.append(
        Vector(
            "V8",
            "RPC v2 request: one inline zstd header (extension)",
            f"The same call when {CALLEE} also advertises CAP_LKRPC_COMPRESSION_ZSTD (10001) "
            f"and the send is targeted. `compression` = 10001 (`60 91 4e`); the payload is one "
            f"zstd frame of {len(compress(c.COMPRESSION_LKRPC_ZSTD, V2_PAYLOAD.encode()))} "
            f"bytes.",
            _named(
                encode_payload(
                    _request_fields(STREAM_REQUEST_ZSTD, REQUEST_ATTRIBUTES),
                    V2_PAYLOAD.encode(),
                    zstd_route,
                )
            ),
        )
    )
    legacy_route = Route((CALLEE,), False, c.COMPRESSION_NONE)
    vectors.append(
        Vector(
            "V9",
            "RPC v2 request to a client_protocol 1 callee: header, chunk, trailer",
            "No inline content and no compression: the header carries `total_length`, chunk 0 "
            "the raw UTF-8 payload (`chunk_index` 0 is absent on the wire), the trailer only "
            "the stream id.",
            _named(
                encode_payload(
                    _request_fields(STREAM_REQUEST_LEGACY, REQUEST_ATTRIBUTES),
                    V2_PAYLOAD.encode(),
                    legacy_route,
                )
            ),
        )
    )
    caller_route = Route((CALLER,), True, c.COMPRESSION_DEFLATE_RAW)
    vectors.append(
        Vector(
            "V10",
            "RPC v2 empty response: empty inline stream",
            "The handler returned the empty string to a client_protocol 2 caller. Deflate-raw "
            "of nothing is `03 00`, not smaller than 0 bytes, so `compression` stays NONE "
            "(absent). `total_length` 0 is present (`28 00`) and `inline_content` is present "
            "and empty (`5a 00`).",
            _named(encode_payload(_response_fields(STREAM_RESPONSE_EMPTY), b"", caller_route)),
        )
    )
    caller_legacy_route = Route((CALLER,), False, c.COMPRESSION_NONE)
    vectors.append(
        Vector(
            "V11",
            "RPC v2 empty response to a client_protocol 1 caller",
            "Header with `total_length` 0, no chunk at all, then the trailer.",
            _named(
                encode_payload(
                    _response_fields(STREAM_RESPONSE_EMPTY_LEGACY), b"", caller_legacy_route
                )
            ),
        )
    )

    text_fields = StreamHeaderFields(
        stream_id=STREAM_TEXT,
        timestamp_ms=TIMESTAMP_MS,
        topic="files",
        mime_type=c.TEXT_MIME_TYPE,
        text_header=text_header(attached_stream_ids=[STREAM_ATTACHMENT]),
    )
    text_packets = list(
        encode_payload(text_fields, b"see attached", deflate_route, allow_inline=False)
    )
    attachment = b"hello"
    attachment_fields = StreamHeaderFields(
        stream_id=STREAM_ATTACHMENT,
        timestamp_ms=TIMESTAMP_MS,
        topic="files",
        mime_type="text/plain",
        byte_name="notes.txt",
    )
    framer = ChunkFramer(STREAM_ATTACHMENT, deflate_route.destinations)
    attachment_packets = [
        guard_header(
            attachment_fields.packet(
                deflate_route, compression=deflate_route.compression, total_length=len(attachment)
            )
        ),
        *framer.rechunk(compress(c.COMPRESSION_DEFLATE_RAW, attachment)),
        *framer.flush(),
        framer.trailer(),
    ]
    vectors.append(
        Vector(
            "V12",
            "Text stream with an attachment",
            f'`send_text("see attached", attachments=["notes.txt"])` to {CALLEE} '
            f"(client_protocol 2, deflate-raw). Attachments forbid the inline form, so the text "
            f"goes as header + chunk + trailer; the header lists the attachment's stream id in "
            f"`attached_stream_ids`. The chunked path keeps the compression the route allows "
            f"even though deflate-raw makes these 12 bytes 14. The attachment follows as its "
            f"own byte stream (`send_file` framing) under the listed id.",
            _named(text_packets, "text ") + _named(attachment_packets, "attachment "),
        )
    )
    return vectors


# -- rendering -------------------------------------------------------------------------------------


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def _hex_lines(data: bytes, width: int = 24) -> list[str]:
    return [_hex(data[i : i + width]) for i in range(0, len(data), width)] or ["(empty)"]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _enum_name(field: FieldDescriptor, value: int) -> str:
    enum = field.enum_type
    known = enum.values_by_number.get(value) if enum is not None else None
    if known is not None:
        return f"{value} ({known.name})"
    if field.name == "compression" and value == c.COMPRESSION_LKRPC_ZSTD:
        return f"{value} (LKRPC_ZSTD, extension)"
    return str(value)


def _string(data: bytes) -> str:
    text = data.decode()
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def annotate(data: bytes, descriptor: Descriptor, depth: int = 0) -> Iterator[tuple[str, str]]:
    """(key bytes, description) for every field of ``data``, nested messages indented."""
    pad = "  " * depth
    pos = 0
    while pos < len(data):
        start = pos
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        field = descriptor.fields_by_number.get(number)
        name = f"{field.name} ({number})" if field is not None else f"field {number}"
        if wire_type == 0:
            value, pos = _varint(data, pos)
            shown = str(value)
            if field is not None and field.type == FieldDescriptor.TYPE_ENUM:
                shown = _enum_name(field, value)
            elif field is not None and field.type == FieldDescriptor.TYPE_BOOL:
                shown = "true" if value else "false"
            yield _hex(data[start:pos]), f"{pad}{name} = {shown}"
            continue
        if wire_type != 2:
            raise ValueError(f"unexpected wire type {wire_type}")
        length, pos = _varint(data, pos)
        body = data[pos : pos + length]
        prefix = _hex(data[start:pos])
        pos += length
        if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                entry = dict((k.split(" ")[0].strip(), v) for k, v in _entry(body, sub))
                yield prefix, f"{pad}{name} entry: {entry['key']} = {entry['value']}"
                continue
            yield prefix, f"{pad}{name}: {sub.name}, {length} bytes"
            yield from annotate(body, sub, depth + 1)
        elif field is not None and field.type == FieldDescriptor.TYPE_STRING:
            yield prefix, f"{pad}{name} = {_string(body)}"
        else:
            yield prefix, f"{pad}{name} = {_bytes(body)}"


def _bytes(data: bytes) -> str:
    if not data:
        return "(empty)"
    if len(data) <= 36:
        return _hex(data)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"{len(data)} bytes"
    if text.isprintable():
        return f"{len(data)} bytes, UTF-8 {_string(data)}"
    return f"{len(data)} bytes"


def _entry(body: bytes, descriptor: Descriptor) -> Iterator[tuple[str, str]]:
    for _, text in annotate(body, descriptor):
        name, _, value = text.partition(" = ")
        yield name, value


def render_vector(vector: Vector) -> list[str]:
    lines = [f"### {vector.key}. {vector.title}", "", vector.description, ""]
    for name, packet in vector.packets:
        data = serialize(packet)
        lines.append(f"{vector.key} {name}, {len(data)} bytes:")
        lines.append("")
        lines.append("```")
        lines.extend(_hex_lines(data))
        lines.append("```")
        lines.append("")
        rows = list(annotate(data, DataPacket.DESCRIPTOR))
        width = max(len(k) for k, _ in rows)
        width = min(width, 20)
        lines.append("```text")
        for key, text in rows:
            if len(key) > width:
                lines.append(key)
                lines.append(f"{'':<{width}}  {text}")
            else:
                lines.append(f"{key:<{width}}  {text}")
        lines.append("```")
        lines.append("")
    return lines


def render_auxiliary() -> list[str]:
    deflate_empty = compress(c.COMPRESSION_DEFLATE_RAW, b"")
    zstd_empty = compress(c.COMPRESSION_LKRPC_ZSTD, b"")
    emoji = "\U0001f600"
    split_cases = [
        ("`a`×14999 + U+1F600 + `b`×10, n = 15000", "a" * 14999 + emoji + "b" * 10, 15000),
        ("`héllo wörld`, n = 5", "héllo wörld", 5),
        ("`a` + U+1F60A + `b`, n = 4", "a\U0001f60ab", 4),
        ("empty, n = 5", "", 5),
    ]
    truncation = truncate_utf8("a" + emoji * 64, c.MAX_ERROR_MESSAGE_BYTES)
    lines = [
        "### V13. Auxiliary values",
        "",
        "| Input | Output |",
        "|---|---|",
        f"| deflate-raw of the empty payload | `{_hex(deflate_empty)}` |",
        f"| zstd frame of the empty payload (as this library writes it) | `{_hex(zstd_empty)}` |",
    ]
    for label, text, size in split_cases:
        pieces = split_utf8(text.encode(), size)
        shown = ", ".join(str(len(p)) for p in pieces) or "no pieces"
        lines.append(f"| UTF-8 split of {label} | piece lengths in bytes: {shown} |")
    lines.append(
        f"| `a` + U+1F600×64 cut to 256 bytes | `a` + U+1F600×{(len(truncation) - 1)}, "
        f"{len(truncation.encode())} bytes |"
    )
    lines.append("")
    return lines


def render() -> str:
    """The markdown block embedded in spec/spec.md."""
    lines: list[str] = []
    for vector in build_vectors():
        lines.extend(render_vector(vector))
    lines.extend(render_auxiliary())
    return "\n".join(lines).rstrip("\n") + "\n"


def embedded(spec_text: str) -> str:
    """The generated block currently in ``spec_text`` (without the markers)."""
    start = spec_text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = spec_text.index(END_MARKER, start)
    return spec_text[start:end].strip("\n") + "\n"


def update(path: Path) -> bool:
    """Rewrite the generated block of ``path``; return whether anything changed."""
    text = path.read_text(encoding="utf-8")
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER, start)
    new = text[:start] + "\n\n" + render() + "\n" + text[end:]
    if new == text:
        return False
    path.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--update", action="store_true", help="rewrite the generated block of spec/spec.md"
    )
    args = parser.parse_args(argv)
    if args.update:
        changed = update(SPEC_PATH)
        print(f"{SPEC_PATH}: {'updated' if changed else 'already up to date'}")
    else:
        sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
