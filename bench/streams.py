"""Data-stream path vs one-shot codec: what framing and protobuf cost on 10 MB payloads.

No network, no event loop: everything runs in this process.

For each payload kind (``json``: realistic records sent as a text stream; ``prose``: English-like
text sent as a text stream; ``random``: incompressible random bytes sent as a byte stream) and
each compression the route can pick (none, deflate-raw, zstd at the default level 1), one
repetition times:

* **stream path** -- encode: ``encode_payload`` (which compresses the whole payload and cuts it
  into 15,000-byte chunks) with every DataPacket turned into wire bytes by
  ``SerializeToString()``; decode: ``DataPacket.FromString`` on every packet, fed in order to a
  fresh ``StreamAssembler.receive``, collecting the ``StreamData`` pieces and joining them into
  the whole payload (``str`` for text streams, ``bytes`` for byte streams).
* **one-shot** -- the same codec run once on the whole payload in memory:
  ``zlib.compressobj(-1, DEFLATED, -15)`` + ``zlib.decompress(..., -15)``;
  ``zstandard.ZstdCompressor(level=1, write_checksum=True).compress`` +
  ``ZstdDecompressor().decompress`` (the same frame format as the stream path, whose frames
  always carry the content checksum, spec §6.3); for none a plain copy into 15,000-byte slices
  and their concatenation. For text kinds the one-shot
  output is also decoded to ``str``, as the stream path delivers ``str``.

Stream and one-shot runs alternate, one of each per repetition, so both see the same machine
load; each row runs at least ``--reps`` repetitions after a warm-up, and more (up to 30) until
``--min-time`` seconds are spent, and the table reports medians. ``ratio`` is compressed/raw
size (what the chunks carry), MB/s is raw payload bytes (10^6 B) per second of encode + decode,
and ``cost`` is the median over repetitions of stream time / one-shot time. The target
is cost <= 1.3 (framing + protobuf at most 30% over the codec alone); each row prints PASS or
MISS, and the script always exits 0. Outputs are checked against the input after every run,
outside the timed region. The garbage collector is off during timed regions. Much of the
stream path's spread is page faults: protobuf's upb runtime calls ``malloc_trim(0)`` every
10,000 arena frees, so some runs start by re-faulting the heap pages the previous one freed.

Usage: ``python bench/streams.py [--size BYTES] [--reps N] [--min-time S]
[--kinds json,prose,random] [--compressions none,deflate-raw,zstd]``
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import re
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zstandard
from google.protobuf.internal import api_implementation

# Measure this checkout's code, whether or not the package is installed in the environment.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from livekit_rpc.peers import StaticPeerDirectory
from livekit_rpc.streams.assembler import (
    StreamAssembler,
    StreamData,
    StreamEnded,
    StreamEvent,
    StreamOpened,
)
from livekit_rpc.streams.framing import (
    Route,
    StreamHeaderFields,
    encode_payload,
    plan_route,
    text_header,
)
from livekit_rpc.wire import constants as c
from livekit_rpc.wire.compression import DEFAULT_ZSTD_LEVEL
from livekit_rpc.wire.packets import DataPacket

TARGET = 1.3
MAX_REPS = 30
CHUNK = c.STREAM_CHUNK_SIZE
PEER = "receiver"
SENDER = "sender"
COMPRESSIONS = {
    "none": c.COMPRESSION_NONE,
    "deflate-raw": c.COMPRESSION_DEFLATE_RAW,
    "zstd": c.COMPRESSION_LKRPC_ZSTD,
}
Output = str | bytes


# -- payloads (deterministic) ----------------------------------------------------------------

_FIRST = "Ada Alan Grace Linus Barbara Ken Dennis Margaret Edsger Donald Frances Tim".split()
_LAST = "Lovelace Turing Hopper Torvalds Liskov Thompson Ritchie Hamilton Dijkstra Knuth".split()
_CITIES = [
    ("Lisbon", "PT"),
    ("Osaka", "JP"),
    ("Lagos", "NG"),
    ("Denver", "US"),
    ("Tallinn", "EE"),
    ("Recife", "BR"),
    ("Pune", "IN"),
    ("Hobart", "AU"),
]
_TAGS = "alpha beta gamma vip trial churn-risk beta-tester enterprise".split()


def json_payload(size: int, rng: random.Random) -> bytes:
    """``json.dumps`` of a list of 14-key user records, whole records, at least ``size`` bytes."""
    records: list[dict[str, object]] = []
    length = 2
    while length < size:
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        city, country = rng.choice(_CITIES)
        record = {
            "id": len(records) + 1,
            "uuid": f"{rng.getrandbits(128):032x}",
            "name": f"{first} {last}",
            "email": f"{first.lower()}.{last.lower()}{rng.randint(1, 999)}@example.com",
            "age": rng.randint(18, 90),
            "created_at": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
            f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
            "status": rng.choice(["active", "inactive", "pending", "banned"]),
            "score": round(rng.uniform(0, 100), 3),
            "balance": {
                "amount": round(rng.uniform(-500, 50_000), 2),
                "currency": rng.choice(["EUR", "USD", "JPY"]),
            },
            "tags": rng.sample(_TAGS, rng.randint(0, 4)),
            "location": {
                "city": city,
                "country": country,
                "lat": round(rng.uniform(-90, 90), 5),
                "lon": round(rng.uniform(-180, 180), 5),
            },
            "verified": rng.random() < 0.5,
            "logins": rng.randint(0, 10_000),
            "ip": ".".join(str(rng.randint(1, 254)) for _ in range(4)),
        }
        records.append(record)
        length += len(json.dumps(record)) + 2
    return json.dumps(records).encode()


def prose_payload(size: int, rng: random.Random) -> bytes:
    """English-like ASCII text: Zipf(1.07) words over CPython's docs vocabulary, no phrases."""
    try:
        from pydoc_data.topics import topics

        corpus = " ".join(topics.values())
    except ImportError:  # some distributions strip pydoc_data
        corpus = __doc__ or ""
    counts: dict[str, int] = {}
    for word in re.findall(r"[a-z]+", corpus.lower()):
        counts[word] = counts.get(word, 0) + 1
    vocab = sorted(counts, key=lambda w: (-counts[w], w))
    weights = [1 / rank**1.07 for rank in range(1, len(vocab) + 1)]
    words = rng.choices(vocab, weights, k=size // 4)
    out: list[str] = []
    length, i = 0, 0
    while length < size:
        paragraph: list[str] = []
        for _ in range(rng.randint(3, 8)):
            n = max(3, round(rng.gauss(17, 6)))
            if i + n > len(words):
                words += rng.choices(vocab, weights, k=size // 4)
            sentence = words[i : i + n]
            i += n
            for j in range(1, n - 1):
                if rng.random() < 0.06:
                    sentence[j] += ","
            paragraph.append(" ".join(sentence).capitalize() + ".")
        text = " ".join(paragraph) + "\n\n"
        out.append(text)
        length += len(text)
    return "".join(out).encode()[:size]


def random_payload(size: int, rng: random.Random) -> bytes:
    return rng.randbytes(size)


@dataclass(frozen=True)
class Kind:
    name: str
    text: bool
    make: Callable[[int, random.Random], bytes]


KINDS = {
    "json": Kind("json", True, json_payload),
    "prose": Kind("prose", True, prose_payload),
    "random": Kind("random", False, random_payload),
}


# -- the two paths -----------------------------------------------------------------------------


def route_for(compression: int) -> Route:
    """Plan a targeted send to one v2 peer that can read exactly ``compression``."""
    peers = StaticPeerDirectory()
    caps = {
        c.COMPRESSION_NONE: (),
        c.COMPRESSION_DEFLATE_RAW: (c.CAP_COMPRESSION_DEFLATE_RAW,),
        c.COMPRESSION_LKRPC_ZSTD: (c.CAP_COMPRESSION_DEFLATE_RAW, c.CAP_LKRPC_COMPRESSION_ZSTD),
    }[compression]
    peers.add(PEER, c.CLIENT_PROTOCOL_DATA_STREAM_V2, caps)
    route = plan_route(peers, [PEER], compress=compression != c.COMPRESSION_NONE)
    assert route.compression == compression, route
    return route


def header_fields(kind: Kind, rep: int) -> StreamHeaderFields:
    return StreamHeaderFields(
        stream_id=f"bench-{kind.name}-{rep}",
        timestamp_ms=1_700_000_000_000,
        topic="bench",
        mime_type=c.TEXT_MIME_TYPE if kind.text else c.BYTES_MIME_TYPE,
        attributes={"lk.rpc_request_id": "0f8b6c1e-6f41-4a7e-9a43-3f1d2c4b5a69"},
        text_header=text_header() if kind.text else None,
        byte_name=None if kind.text else "payload.bin",
    )


@dataclass
class Run:
    encode_s: float
    decode_s: float
    wire_bytes: int
    output: Output
    events: list[StreamEvent]

    @property
    def total_s(self) -> float:
        return self.encode_s + self.decode_s


def stream_run(kind: Kind, payload: bytes, route: Route, fields: StreamHeaderFields) -> Run:
    assembler = StreamAssembler(lambda _kind, _topic: True)
    gc.collect()
    gc.disable()
    try:
        t0 = time.perf_counter()
        wire = [p.SerializeToString() for p in encode_payload(fields, payload, route)]
        t1 = time.perf_counter()
        pieces: list[Output] = []
        others: list[StreamEvent] = []
        receive = assembler.receive
        from_string = DataPacket.FromString
        for raw in wire:
            packet = from_string(raw)
            for event in receive(packet):
                if type(event) is StreamData:
                    pieces.append(event.data)
                else:
                    others.append(event)
        output: Output = "".join(pieces) if kind.text else b"".join(pieces)  # type: ignore[arg-type]
        t2 = time.perf_counter()
    finally:
        gc.enable()
    return Run(t1 - t0, t2 - t1, sum(len(w) for w in wire), output, others)


def oneshot_run(kind: Kind, payload: bytes, compression: int) -> Run:
    gc.collect()
    gc.disable()
    try:
        if compression == c.COMPRESSION_DEFLATE_RAW:
            t0 = time.perf_counter()
            codec = zlib.compressobj(-1, zlib.DEFLATED, -15)
            blob = codec.compress(payload) + codec.flush()
            t1 = time.perf_counter()
            raw = zlib.decompress(blob, -15)
        elif compression == c.COMPRESSION_LKRPC_ZSTD:
            t0 = time.perf_counter()
            blob = zstandard.ZstdCompressor(level=DEFAULT_ZSTD_LEVEL, write_checksum=True).compress(
                payload
            )
            t1 = time.perf_counter()
            raw = zstandard.ZstdDecompressor().decompress(blob)
        else:
            t0 = time.perf_counter()
            view = memoryview(payload)
            slices = [bytes(view[i : i + CHUNK]) for i in range(0, len(payload), CHUNK)]
            t1 = time.perf_counter()
            raw = b"".join(slices)
            blob = raw
        output: Output = raw.decode() if kind.text else raw
        t2 = time.perf_counter()
    finally:
        gc.enable()
    return Run(t1 - t0, t2 - t1, len(blob), output, [])


def check(kind: Kind, expected: Output, run: Run, label: str, stream: bool) -> None:
    """Outside any timed region: the output is the input, and the stream opened and ended."""
    if run.output != expected:
        sys.exit(f"{label}: decoded output differs from the input")
    if stream:
        names = [type(e).__name__ for e in run.events]
        if names != ["StreamOpened", "StreamEnded"] or not isinstance(run.events[0], StreamOpened):
            sys.exit(f"{label}: unexpected stream events {names}")
        if not isinstance(run.events[1], StreamEnded):
            sys.exit(f"{label}: stream did not end normally")
        expected_kind = "text" if kind.text else "bytes"
        if run.events[0].kind != expected_kind:
            sys.exit(f"{label}: opened as {run.events[0].kind}, not {expected_kind}")


# -- driver ------------------------------------------------------------------------------------


@dataclass
class Row:
    kind: str
    compression: str
    raw: int
    ratio: float
    wire_overhead: float
    reps: int
    stream_s: float
    stream_min_s: float
    stream_max_s: float
    stream_enc_s: float
    stream_dec_s: float
    oneshot_s: float
    oneshot_enc_s: float
    oneshot_dec_s: float
    cost: float


def measure(
    kind: Kind, payload: bytes, name: str, compression: int, reps: int, min_time: float
) -> Row:
    """At least ``reps`` timed pairs, more (up to ``MAX_REPS``) until ``min_time`` is spent."""
    route = route_for(compression)
    expected: Output = payload.decode() if kind.text else payload
    streams: list[Run] = []
    oneshots: list[Run] = []
    label = f"{kind.name}/{name}"
    rep, spent = 0, 0.0
    while rep <= reps or (spent < min_time and rep <= MAX_REPS):
        s = stream_run(kind, payload, route, header_fields(kind, rep))
        check(kind, expected, s, label + " stream", stream=True)
        o = oneshot_run(kind, payload, compression)
        check(kind, expected, o, label + " one-shot", stream=False)
        del s.output, o.output
        if rep:  # repetition 0 is a warm-up
            streams.append(s)
            oneshots.append(o)
            spent += s.total_s + o.total_s
        rep += 1
    med = statistics.median
    compressed = oneshots[0].wire_bytes
    return Row(
        kind=kind.name,
        compression=name,
        raw=len(payload),
        ratio=compressed / len(payload),
        wire_overhead=streams[0].wire_bytes / compressed - 1,
        reps=len(streams),
        stream_s=med(r.total_s for r in streams),
        stream_min_s=min(r.total_s for r in streams),
        stream_max_s=max(r.total_s for r in streams),
        stream_enc_s=med(r.encode_s for r in streams),
        stream_dec_s=med(r.decode_s for r in streams),
        oneshot_s=med(r.total_s for r in oneshots),
        oneshot_enc_s=med(r.encode_s for r in oneshots),
        oneshot_dec_s=med(r.decode_s for r in oneshots),
        cost=med(s.total_s / o.total_s for s, o in zip(streams, oneshots, strict=True)),
    )


def warm_up(kinds: list[Kind], payloads: dict[str, bytes], rounds: int = 3) -> None:
    """Grow the heap and warm the code paths before the first row, so row order does not matter."""
    route = route_for(c.COMPRESSION_NONE)
    for _ in range(rounds):
        for kind in kinds:
            stream_run(kind, payloads[kind.name], route, header_fields(kind, -1))
            oneshot_run(kind, payloads[kind.name], c.COMPRESSION_NONE)


def _ms(*seconds: float, sep: str = "/") -> str:
    return sep.join(f"{s * 1e3:.1f}" for s in seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000, help="payload bytes (10 MB)")
    parser.add_argument("--reps", type=int, default=7, help="minimum timed repetitions per row")
    parser.add_argument(
        "--min-time", type=float, default=1.0, help="keep repeating a row until this many seconds"
    )
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset")
    parser.add_argument("--compressions", default=",".join(COMPRESSIONS))
    args = parser.parse_args()

    started = time.perf_counter()
    print(
        f"python {sys.version.split()[0]}, protobuf backend {api_implementation.Type()}, "
        f"zstandard {zstandard.__version__}, zlib {zlib.ZLIB_RUNTIME_VERSION}; "
        f"payload {args.size:,} B; medians of >= {args.reps} reps (after 1 warm-up)"
    )
    header = (
        f"{'kind':<7} {'compression':<12} {'ratio':>6} {'stream MB/s':>11} {'one-shot MB/s':>13} "
        f"{'cost':>5} {'target':>6} | {'reps':>4} {'stream ms med [min-max]':>24} "
        f"{'stream enc/dec ms':>17} {'one-shot enc/dec ms':>19} {'wire +%':>7}"
    )
    print(header)
    print("-" * len(header))
    kinds = [KINDS[name] for name in args.kinds.split(",")]
    payloads = {
        k.name: k.make(args.size, random.Random(f"livekit-rpc-bench-{k.name}")) for k in kinds
    }
    warm_up(kinds, payloads)
    for kind in kinds:
        payload = payloads[kind.name]
        for name in args.compressions.split(","):
            row = measure(kind, payload, name, COMPRESSIONS[name], args.reps, args.min_time)
            mb = row.raw / 1e6
            verdict = "PASS" if row.cost <= TARGET else "MISS"
            spread = f"{_ms(row.stream_s)} [{_ms(row.stream_min_s, row.stream_max_s, sep='-')}]"
            print(
                f"{row.kind:<7} {row.compression:<12} {row.ratio:>6.3f} "
                f"{mb / row.stream_s:>11.1f} {mb / row.oneshot_s:>13.1f} {row.cost:>5.2f} "
                f"{verdict:>6} | {row.reps:>4} {spread:>24} "
                f"{_ms(row.stream_enc_s, row.stream_dec_s):>17} "
                f"{_ms(row.oneshot_enc_s, row.oneshot_dec_s):>19} "
                f"{row.wire_overhead * 100:>7.2f}",
                flush=True,
            )
    print(
        f"cost = median of stream time / one-shot time in the same repetition, target <= {TARGET}; "
        "wire +% = serialized packets over the bytes they carry; "
        f"total {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
