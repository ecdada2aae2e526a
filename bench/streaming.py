"""Streaming benchmark: token streaming through the dev server, ours against raw and the SDK.

Setup as in ``bench/room.py``: a private network namespace (``lo`` plus a veth pair with
10.231.9.1; deleted at exit, also on error) that this script moves itself into, the dev
server as its own process (``python -m livekit_rpc.cli server --port 0 --rtc-host
10.231.9.1``), and each participant in its own process (this script with ``--worker``),
driven over JSON lines. Signalling on ``ws://127.0.0.1:PORT``, ICE only on the namespace
address, no ICE servers.

Two participants per kind: the **model** produces tokens, the **viewer** consumes them.

* **ours** (``livekit_rpc.room.Room``): the viewer calls ``stream_rpc(method="generate")``
  on the model, whose handler is an async generator yielding the tokens (default window 32);
  the viewer iterates the call.
* **SDK** (``livekit`` 1.2.0): the viewer calls the model's ``generate`` method with
  ``perform_rpc``; the handler starts a task that opens ``stream_text(topic="tok")`` to the
  viewer, ``await writer.write(token)`` per token, then ``aclose()``, and returns at once;
  the viewer's text stream handler iterates the reader (``async for chunk in reader``).
* **raw** (ours, no RPC): the model sends ``publish_data`` packets to the viewer.

Every token starts with its send time, ``time.time_ns()`` as 16 hex digits, taken just before
it is yielded, written or published; the consumer stamps each arrival with ``time.time_ns()``
where application code sees it. Both processes share the machine's clock, so one-way latency
is ``arrival - stamp``. Tokens are seeded text (letters and spaces).

Figures:

* **paced**: 250 tokens of 25-35 B at 50/s on an absolute schedule (``--quick`` 100):
  one-way latency p50/p99; baseline: 250 raw packets paced the same way;
* **TTFT**: 50 calls, each producing one token: call start -> first token at the viewer
  (viewer's ``perf_counter``), p50; baseline: unary ``perform_rpc`` round trip p50 of a 32 B
  echo, interleaved with the streaming calls (unary, 10 ms idle, streaming, 10 ms idle, ...)
  so that both see the same idle time before each call (idle processes answer slower on this
  kind of VM: raw one-way latency is about 3x higher at 50 packets/s than back-to-back);
  back-to-back unary round trips (300 after 30 warm-up) are shown for reference;
* **burst**: 10,000 tokens of 20-90 B (mean 55 B) produced back-to-back: chunks/s = 10,000 /
  (last arrival - first stamp), per-token latency p50/p99 (``--quick`` 2,000). Our handler
  runs up to the call's window ahead of the reader (default 32 chunks, ``--window`` to
  change it), so a burst's per-token latency is mostly that queue: about window /
  throughput;
* **64 KiB chunks**: 10 MB (153 chunks of 65,536 chars, base64-random text) as one call:
  MB/s = characters / (last arrival - first stamp); baseline: 10 MB of raw 15,000 B packets.

Both pairs of participants stay connected for the whole run and each figure is measured for
raw, ours and the SDK back to back (burst and 64 KiB runs ``--reps`` times, default 3, with the
repetitions interleaved; medians reported), so all see the same machine load. Targets are
PASS/MISS against baselines measured in the same run; nothing asserts on wall-clock time and
the exit status is 0 unless a measurement could not run at all. The details table lists every
window's CPU seconds per process, CPU used by anything else ("other") and UDP drops.

Usage: ``sudo .venv/bin/python bench/streaming.py [--quick] [--reps N] [--rate R]
[--window W] [--skip-sdk] [--keep-logs] [--py-spy BIN]`` (needs root for the namespace; about
75 s, ``--quick`` about 20 s). ``--py-spy`` records every process during every window (raw
collapsed stacks, kept with the logs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (
    NS_ADDRESS,
    ROOM_KEY,
    ROOM_SECRET,
    Netns,
    Row,
    Run,
    ServerProcess,
    Worker,
    drive_session,
    emit,
    log,
    pct,
    print_grid,
    print_table,
    random_payload,
    run_in_namespace,
    serve_commands,
    spread,
    wait_until,
)

SCRIPT = str(Path(__file__).resolve())
STAMP = 16  # hex digits of time.time_ns()
BULK_CHUNK = 65_536
BULK_BYTES = 10_000_000
RAW_PACKET = 15_000
ECHO = "e" * 32


# == token production (model side, ours and SDK alike) =========================================


def _text(seed: int, size: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz     ") for _ in range(size))


def sizes(mode: str, n: int) -> list[int]:
    if mode == "paced":
        rng = random.Random(777)
        return [rng.randint(25, 35) for _ in range(n)]
    rng = random.Random(12345)
    return [rng.randint(20, 90) for _ in range(n)]


_PAD = _text(99, 200)
_BULK_PAD = random_payload(BULK_CHUNK, seed=5)


def stamped(pad: str, size: int) -> str:
    return f"{time.time_ns():016x}" + pad[: size - STAMP]


async def produce(spec: dict[str, Any]) -> AsyncIterator[str]:
    """The tokens of one call: ``spec["mode"]`` is ``ttft``, ``paced``, ``burst`` or
    ``bulk``; each token is stamped right before it is handed out."""
    mode = spec["mode"]
    if mode == "ttft":
        yield stamped(_PAD, 30)
    elif mode == "paced":
        interval = 1.0 / spec["rate"]
        start = time.perf_counter()
        for i, size in enumerate(sizes(mode, spec["n"])):
            delay = start + i * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            yield stamped(_PAD, size)
    elif mode == "burst":
        for size in sizes(mode, spec["n"]):
            yield stamped(_PAD, size)
    elif mode == "bulk":
        for _ in range(spec["n"]):
            yield stamped(_BULK_PAD, BULK_CHUNK)
    else:
        raise ValueError(f"unknown mode {mode}")


# == consumption (viewer side) =================================================================


class Collector:
    """Arrivals of one call's chunks: ``(time_ns, perf_counter, stamp or None, length)``."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[int, float, int | None, int]] = []
        self.done = asyncio.Event()

    def add(self, chunk: str | bytes) -> None:
        now_ns, now = time.time_ns(), time.perf_counter()
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        try:
            stamp: int | None = int(text[:STAMP], 16)
        except ValueError:
            stamp = None  # a piece of a larger write (the SDK splits 64 KiB writes)
        self.arrivals.append((now_ns, now, stamp, len(text)))

    def stats(self, started: float, expected: int) -> dict[str, Any]:
        lat = [(t - s) / 1e6 for t, _, s, _ in self.arrivals if s is not None]
        stamps = [s for _, _, s, _ in self.arrivals if s is not None]
        out: dict[str, Any] = {
            "chunks": len(self.arrivals),
            "stamped": len(stamps),
            "expected": expected,
            "p50_ms": pct(lat, 0.5),
            "p99_ms": pct(lat, 0.99),
            "max_ms": max(lat) if lat else float("nan"),
        }
        if self.arrivals and stamps:
            first, last = min(stamps), self.arrivals[-1][0]
            seconds = (last - first) / 1e9
            out["seconds"] = seconds
            out["chunks_per_s"] = expected / seconds if seconds > 0 else float("nan")
            out["mbps"] = sum(n for *_, n in self.arrivals) / 1e6 / seconds
            out["ttft_ms"] = (self.arrivals[0][1] - started) * 1000
        return out


def spec_for(mode: str, args: dict[str, Any]) -> dict[str, Any]:
    return {"mode": mode, **args}


async def unary(lp: Any, peer: str, n: int, warm: int) -> dict[str, Any]:
    """Back-to-back unary echo calls (no idle time between them)."""
    times = [await unary_once(lp, peer) for _ in range(warm + n)][warm:]
    return {"p50_ms": pct(times, 0.5), "p99_ms": pct(times, 0.99)}


def register_echo(lp: Any) -> None:
    def echo(data: Any) -> str:
        return str(data.payload)

    lp.register_rpc_method("echo", echo)


async def unary_once(lp: Any, peer: str) -> float:
    """One unary echo round trip in ms."""
    t0 = time.perf_counter()
    reply = await lp.perform_rpc(destination_identity=peer, method="echo", payload=ECHO)
    if reply != ECHO:
        raise RuntimeError("echo mismatch")
    return (time.perf_counter() - t0) * 1000


def ttft_summary(values: list[float], rtts: list[float]) -> dict[str, Any]:
    """TTFT percentiles, and those of the unary calls interleaved with the streaming ones."""
    return {
        "p50_ms": pct(values, 0.5),
        "p90_ms": pct(values, 0.9),
        "p99_ms": pct(values, 0.99),
        "unary_p50_ms": pct(rtts, 0.5),
        "unary_p99_ms": pct(rtts, 0.99),
    }


# == our participants ==========================================================================


async def ours_worker(role: str, url: str, token: str, peer: str) -> None:
    from livekit_rpc.room import Room, RoomOptions, RtcConfiguration

    room = Room()
    raw = Collector()
    raw_expect = {"packets": 0, "bytes": 0}
    raw_bytes = [0]

    def on_data(packet: Any) -> None:
        if packet.topic != "raw":
            return
        raw.add(packet.data)
        raw_bytes[0] += len(packet.data)
        if len(raw.arrivals) >= raw_expect["packets"] and raw_bytes[0] >= raw_expect["bytes"]:
            raw.done.set()

    room.on("data_received", on_data)
    options = RoomOptions(rtc_config=RtcConfiguration(ice_host_addresses=[NS_ADDRESS]))
    await room.connect(url, token, options)
    lp = room.local_participant
    register_echo(lp)

    async def generate(data: Any) -> AsyncIterator[str]:
        async for item in produce(json.loads(data.payload)):
            yield item

    lp.register_rpc_method("generate", generate)
    await wait_until(lambda: peer in room.remote_participants, 30)

    async def stream(mode: str, window: int = 0, **spec: Any) -> dict[str, Any]:
        collector = Collector()
        started = time.perf_counter()
        extra = {"window": window} if window else {}
        async with lp.stream_rpc(
            destination_identity=peer,
            method="generate",
            payload=json.dumps(spec_for(mode, spec)),
            response_timeout=30,
            **extra,
        ) as call:
            async for chunk in call:
                collector.add(chunk)
        result = collector.stats(started, spec.get("n", 1))
        result["dropped"] = call.dropped_chunks
        return result

    async def ttft(n: int, gap: float) -> dict[str, Any]:
        values: list[float] = []
        metric: list[float] = []
        rtts: list[float] = []
        for _ in range(n):
            rtts.append(await unary_once(lp, peer))
            await asyncio.sleep(gap)
            collector = Collector()
            started = time.perf_counter()
            async with lp.stream_rpc(
                destination_identity=peer, method="generate", payload='{"mode": "ttft"}'
            ) as call:
                async for chunk in call:
                    collector.add(chunk)
            values.append((collector.arrivals[0][1] - started) * 1000)
            metric.append((call.time_to_first_chunk or 0.0) * 1000)
            await asyncio.sleep(gap)
        return {**ttft_summary(values, rtts), "metric_p50_ms": pct(metric, 0.5)}

    async def raw_reset(packets: int, size: int) -> dict[str, Any]:
        nonlocal raw
        raw = Collector()
        raw_bytes[0] = 0
        raw_expect.update(packets=packets, bytes=size)
        return {}

    async def raw_collect(wait: float, expected: int) -> dict[str, Any]:
        await asyncio.wait_for(raw.done.wait(), wait)
        return raw.stats(0.0, expected)

    async def raw_send(mode: str, n: int = 0, rate: float = 0.0, size: int = 0) -> dict[str, Any]:
        dest = [peer]
        if mode == "paced":
            async for item in produce({"mode": "paced", "n": n, "rate": rate}):
                await lp.publish_data(item, destination_identities=dest, topic="raw")
            return {}
        pad = random_payload(RAW_PACKET, seed=5)
        for _ in range(-(-size // RAW_PACKET)):
            await lp.publish_data(
                stamped(pad, RAW_PACKET), destination_identities=dest, topic="raw"
            )
        return {}

    async def do_unary(n: int, warm: int) -> dict[str, Any]:
        return await unary(lp, peer, n, warm)

    emit({"event": "ready"})
    try:
        await serve_commands(
            {
                "stream": stream,
                "ttft": ttft,
                "unary": do_unary,
                "raw_reset": raw_reset,
                "raw_collect": raw_collect,
                "raw_send": raw_send,
            }
        )
    finally:
        await room.disconnect()


# == the official SDK ==========================================================================


async def sdk_worker(role: str, url: str, token: str, peer: str) -> None:
    from livekit import rtc

    room = rtc.Room()
    current = [Collector()]
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def consume(reader: Any) -> None:
        collector = current[0]
        async for chunk in reader:
            collector.add(chunk)
        collector.done.set()

    room.register_text_stream_handler("tok", lambda reader, _who: spawn(consume(reader)))
    await room.connect(url, token, rtc.RoomOptions(connect_timeout=10))
    lp = room.local_participant
    register_echo(lp)

    async def write_stream(spec: dict[str, Any], dest: str) -> None:
        writer = await lp.stream_text(destination_identities=[dest], topic="tok")
        async for item in produce(spec):
            await writer.write(item)
        await writer.aclose()

    async def generate(data: Any) -> str:
        spawn(write_stream(json.loads(data.payload), data.caller_identity))
        return "ok"

    lp.register_rpc_method("generate", generate)
    await wait_until(lambda: peer in room.remote_participants, 30)

    async def call(spec: dict[str, Any], within: float) -> tuple[Collector, float]:
        collector = current[0] = Collector()
        started = time.perf_counter()
        await lp.perform_rpc(destination_identity=peer, method="generate", payload=json.dumps(spec))
        await asyncio.wait_for(collector.done.wait(), within)
        return collector, started

    async def stream(mode: str, window: int = 0, **spec: Any) -> dict[str, Any]:
        collector, started = await call(spec_for(mode, spec), 120)
        return collector.stats(started, spec.get("n", 1))

    async def ttft(n: int, gap: float) -> dict[str, Any]:
        values: list[float] = []
        rtts: list[float] = []
        for _ in range(n):
            rtts.append(await unary_once(lp, peer))
            await asyncio.sleep(gap)
            collector, started = await call({"mode": "ttft"}, 10)
            values.append((collector.arrivals[0][1] - started) * 1000)
            await asyncio.sleep(gap)
        return ttft_summary(values, rtts)

    async def do_unary(n: int, warm: int) -> dict[str, Any]:
        return await unary(lp, peer, n, warm)

    emit({"event": "ready"})
    try:
        await serve_commands({"stream": stream, "ttft": ttft, "unary": do_unary})
    finally:
        await room.disconnect()


# == driver ====================================================================================


@dataclass
class Pair:
    """A model and a viewer of one kind (``ours`` or ``sdk``) in their own room."""

    kind: str
    model: Worker
    viewer: Worker
    pids: dict[str, int]

    @property
    def workers(self) -> tuple[Worker, ...]:
        return (self.model, self.viewer)


async def start_pair(run: Run, kind: str, server: ServerProcess, logdir: Path) -> Pair | None:
    from livekit_rpc.server.auth import mint_token

    def worker(role: str, other: str) -> Worker:
        who, peer = f"{kind}-{role}", f"{kind}-{other}"
        token = mint_token(ROOM_KEY, ROOM_SECRET, who, kind)
        argv = [sys.executable, SCRIPT, "--worker", kind, role, server.url, token, peer]
        return Worker(who, argv, logdir)

    model, viewer = worker("model", "viewer"), worker("viewer", "model")
    try:
        await asyncio.gather(model.start(), viewer.start())
    except Exception as exc:
        run.errors.append(f"{kind} participants: {exc}")
        log(f"{kind}: participants did not start: {exc}")
        await model.stop()
        await viewer.stop()
        return None
    pids = {"server": server.pid, "model": model.pid, "viewer": viewer.pid}
    return Pair(kind, model, viewer, pids)


async def measure_all(run: Run, pairs: list[Pair], args: argparse.Namespace) -> None:
    """Each figure for every pair back to back (raw, ours, then the SDK), repetitions
    interleaved, so that all see the same machine load."""
    quick = args.quick
    reps = 1 if quick else args.reps
    paced_n = 100 if quick else 250
    burst_n = 2_000 if quick else 10_000
    bulk_bytes = BULK_BYTES // 5 if quick else BULK_BYTES
    bulk_n = -(-bulk_bytes // BULK_CHUNK)
    ours = [p for p in pairs if p.kind == "ours"]

    async def on_viewer(pair: Pair, name: str, op: str, within: float, **kwargs: Any) -> None:
        viewer = pair.viewer
        action = lambda: viewer.call(op, within, **kwargs)  # noqa: E731
        await run.measure(f"{pair.kind} {name}", pair.pids, action, viewer)

    async def raw(pair: Pair, name: str, mode: str, packets: int, size: int, **kw: Any) -> None:
        async def action() -> dict[str, Any]:
            await pair.viewer.call("raw_reset", 10, packets=packets, size=size)
            await pair.model.call("raw_send", 120, mode=mode, size=size, **kw)
            return await pair.viewer.call("raw_collect", 130, wait=120, expected=packets)

        await run.measure(f"raw {name}", pair.pids, action, pair.model, pair.viewer)

    for pair in pairs:
        await on_viewer(pair, "unary rtt", "unary", 60, n=100 if quick else 300, warm=30)
    for pair in pairs:
        await on_viewer(pair, "ttft", "ttft", 60, n=20 if quick else 50, gap=0.01)
    for pair in ours:
        await raw(pair, "paced", "paced", paced_n, 0, n=paced_n, rate=args.rate)
    for pair in pairs:
        await on_viewer(pair, "paced", "stream", 60, mode="paced", n=paced_n, rate=args.rate)
    for _ in range(reps):
        for pair in pairs:
            window = args.window if pair.kind == "ours" else 0
            await on_viewer(pair, "burst", "stream", 180, mode="burst", n=burst_n, window=window)
        for pair in ours:
            packets = -(-bulk_bytes // RAW_PACKET)
            await raw(pair, "64k-equivalent bulk", "bulk", packets, packets * RAW_PACKET)
        for pair in pairs:
            await on_viewer(pair, "64 KiB chunks", "stream", 180, mode="bulk", n=bulk_n)


async def drive(args: argparse.Namespace, netns: Netns) -> int:
    return await drive_session(args, netns, "streaming", start_pair, measure_all, report)


def report(run: Run, args: argparse.Namespace, total: float) -> None:
    paced, raw_paced = run.first("ours paced", "p50_ms"), run.first("raw paced", "p50_ms")
    sdk_paced = run.first("sdk paced", "p50_ms")
    ttft, rtt = run.first("ours ttft", "p50_ms"), run.first("ours ttft", "unary_p50_ms")
    sdk_ttft = run.first("sdk ttft", "p50_ms")
    burst, sdk_burst = run.med("ours burst", "chunks_per_s"), run.med("sdk burst", "chunks_per_s")
    burst_p99, sdk_burst_p99 = run.med("ours burst", "p99_ms"), run.med("sdk burst", "p99_ms")
    bulk, raw_bulk = (
        run.med("ours 64 KiB chunks", "mbps"),
        run.med("raw 64k-equivalent bulk", "mbps"),
    )
    sdk_bulk = run.med("sdk 64 KiB chunks", "mbps")
    sdk_p99_text = f"{sdk_burst_p99:.1f} ms (SDK)" if sdk_burst_p99 is not None else "ERR (SDK)"
    rows = [
        Row.compare(
            "paced 50/s one-way p50 vs raw packet p50",
            paced,
            raw_paced,
            unit="ms",
            base_name="raw",
            higher_is_better=False,
            target=1.5,
        ),
        Row.compare(
            "TTFT p50 vs unary RPC round trip p50",
            ttft,
            rtt,
            unit="ms",
            base_name="unary",
            higher_is_better=False,
            target=1.2,
        ),
        Row.compare(
            "burst 10k tokens: chunks/s vs SDK",
            burst,
            sdk_burst,
            unit="chunks/s",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            fmt="{:.0f}",
        ),
        Row.absolute(
            "burst 10k tokens: p99 per-token latency",
            burst_p99,
            unit="ms",
            limit=10,
            baseline=sdk_p99_text,
        ),
        Row.compare(
            "64 KiB chunks MB/s vs raw one-way",
            bulk,
            raw_bulk,
            unit="MB/s",
            base_name="raw",
            higher_is_better=True,
            target=0.8,
            fmt="{:.1f}",
        ),
        Row.compare(
            "paced one-way p50 vs SDK (SDK/ours)",
            paced,
            sdk_paced,
            unit="ms",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            invert=True,
        ),
        Row.compare(
            "TTFT p50 vs SDK (SDK/ours)",
            ttft,
            sdk_ttft,
            unit="ms",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            invert=True,
        ),
        Row.compare(
            "burst p99 latency vs SDK (SDK/ours)",
            burst_p99,
            sdk_burst_p99,
            unit="ms",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            invert=True,
            fmt="{:.1f}",
        ),
        Row.compare(
            "64 KiB chunks MB/s vs SDK",
            bulk,
            sdk_bulk,
            unit="MB/s",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            fmt="{:.1f}",
        ),
    ]
    mode = "quick" if args.quick else f"full, {args.reps} reps of burst and 64 KiB"
    print_table(f"bench/streaming.py ({mode}; medians; total {total:.0f} s)", rows)

    def fig(name: str, key: str, fmt: str = "{:.2f}") -> str:
        values = run.values(name, key)
        return spread(values, fmt) if values else "-"

    body = [
        (
            "unary RPC round trip p50 / p99 ms, back-to-back",
            fig("ours unary rtt", "p50_ms") + " / " + fig("ours unary rtt", "p99_ms"),
            "-",
            fig("sdk unary rtt", "p50_ms") + " / " + fig("sdk unary rtt", "p99_ms"),
        ),
        (
            "unary RPC round trip p50 / p99 ms, 10 ms idle before",
            fig("ours ttft", "unary_p50_ms") + " / " + fig("ours ttft", "unary_p99_ms"),
            "-",
            fig("sdk ttft", "unary_p50_ms") + " / " + fig("sdk ttft", "unary_p99_ms"),
        ),
        (
            "TTFT p50 / p99 ms, 10 ms idle before",
            fig("ours ttft", "p50_ms") + " / " + fig("ours ttft", "p99_ms"),
            "-",
            fig("sdk ttft", "p50_ms") + " / " + fig("sdk ttft", "p99_ms"),
        ),
        (
            "TTFT p50 from RpcCallStream.time_to_first_chunk ms",
            fig("ours ttft", "metric_p50_ms"),
            "-",
            "-",
        ),
        (
            "paced one-way p50 / p99 ms",
            fig("ours paced", "p50_ms") + " / " + fig("ours paced", "p99_ms"),
            fig("raw paced", "p50_ms") + " / " + fig("raw paced", "p99_ms"),
            fig("sdk paced", "p50_ms") + " / " + fig("sdk paced", "p99_ms"),
        ),
        (
            "burst chunks/s (reps)",
            fig("ours burst", "chunks_per_s", "{:.0f}"),
            "-",
            fig("sdk burst", "chunks_per_s", "{:.0f}"),
        ),
        (
            "burst latency p50 ms (reps)",
            fig("ours burst", "p50_ms"),
            "-",
            fig("sdk burst", "p50_ms"),
        ),
        (
            "burst latency p99 ms (reps)",
            fig("ours burst", "p99_ms", "{:.1f}"),
            "-",
            fig("sdk burst", "p99_ms", "{:.1f}"),
        ),
        (
            "burst latency max ms (reps)",
            fig("ours burst", "max_ms", "{:.1f}"),
            "-",
            fig("sdk burst", "max_ms", "{:.1f}"),
        ),
        (
            "64 KiB chunks MB/s (reps)",
            fig("ours 64 KiB chunks", "mbps", "{:.1f}"),
            fig("raw 64k-equivalent bulk", "mbps", "{:.1f}"),
            fig("sdk 64 KiB chunks", "mbps", "{:.1f}"),
        ),
        (
            "chunks received / written, burst",
            fig("ours burst", "chunks", "{:.0f}") + " / " + fig("ours burst", "expected", "{:.0f}"),
            "-",
            fig("sdk burst", "chunks", "{:.0f}") + " / " + fig("sdk burst", "expected", "{:.0f}"),
        ),
    ]
    print_grid("More figures (med [min-max] over reps)", ("figure", "ours", "raw", "SDK"), body)
    run.print_details()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer tokens, 1 rep")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of burst and 64 KiB")
    parser.add_argument("--rate", type=float, default=50.0, help="paced tokens per second")
    parser.add_argument(
        "--window", type=int, default=0, help="streaming RPC window of our burst (0: default)"
    )
    parser.add_argument("--skip-sdk", action="store_true", help="measure only our participants")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    parser.add_argument(
        "--py-spy",
        metavar="BIN",
        help="record every window's processes with this py-spy binary (raw stacks in the logs)",
    )
    parser.add_argument("--worker", nargs=5, metavar=("KIND", "ROLE", "URL", "TOKEN", "PEER"))
    args = parser.parse_args()
    if args.worker:
        kind, role, url, token, peer = args.worker
        worker = ours_worker if kind == "ours" else sdk_worker
        asyncio.run(worker(role, url, token, peer))
        return
    run_in_namespace("lkbstream", lambda netns: drive(args, netns))


if __name__ == "__main__":
    main()
