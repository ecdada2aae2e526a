"""Room benchmark: RPC through the dev server against a raw data channel and the official SDK.

What runs: the script creates a private network namespace (``lo`` up plus a veth pair with
10.231.9.1 on one end; deleted at exit, also on error) and moves itself into it, so every
process it starts stays inside and no traffic leaves the machine. It starts the dev server as
its own process (``python -m livekit_rpc.cli server --port 0 --rtc-host 10.231.9.1``) and each
participant as its own process (this script with ``--worker``), driven over JSON lines.
Signalling goes to ``ws://127.0.0.1:PORT``; ICE uses only the namespace address (our peers
pass ``RtcConfiguration(ice_host_addresses=[10.231.9.1])``; the official SDK, which ignores
loopback, finds the veth address itself). No ICE servers anywhere.

Measured, each through the same server process:

* **ours** (two ``livekit_rpc.room.Room`` participants, room ``ours``):
  * raw echo: ``publish_data`` of 100 B to the peer, which publishes it back; round trip
    measured by the caller (50 warm-up, 500 timed per round);
  * small RPC: ``perform_rpc`` of a 100 B payload echoed back (25 warm-up, 250 timed per
    round); echo and RPC windows (ours, then the SDK's) alternate for 4 rounds (``--quick``:
    2 rounds of about half the calls) and each figure is the median of its rounds' p50s;
  * raw one-way: 10 MB (10^7 B) as ``publish_data`` packets of 15,000 B; MB/s = bytes / (time
    the last packet reached the peer - time the first was sent), both ``time.time_ns()``;
  * 10 MB JSON RPC (realistic records, compressed with zstd between our peers) and 10 MB
    incompressible RPC (base64 of random bytes) to a method answering a short hash; MB/s =
    10^7 / wall time of ``perform_rpc``; payloads are built before the timed call;
  * 20 concurrent callers (tasks in one process) looping small calls for 5 s: calls/s
    (``--quick``: 2 MB transfers, 1.5 s of concurrent calls);
* **SDK** (two ``livekit`` 1.2.0 participants, room ``sdk``): the same small RPC, 10 MB JSON,
  10 MB random and 20-concurrent calls with the SDK's own ``perform_rpc`` (it compresses with
  deflate-raw because the server echoes its capabilities);
* **server CPU per forwarded MB**: ``/proc/<server pid>/stat`` utime+stime before and after
  the raw one-way transfer, divided by the bytes the sender's data channel carried.

Both pairs of participants stay connected for the whole run and every figure is measured for
ours and then for the SDK back to back (large transfers ``--reps`` times, default 3, with the
repetitions interleaved), so both see the same machine load; medians are reported. The
details table gives every window's wall time, CPU seconds of the server, caller and
responder processes, CPU used by anything else on the machine ("other"), UDP receive-buffer
drops in the namespace, and bytes on the wire. Targets are printed as PASS/MISS next to
ratios against the baselines measured in the same run; nothing asserts on wall-clock time
and the exit status is 0 unless a measurement could not run at all.

Usage: ``sudo .venv/bin/python bench/room.py [--quick] [--reps N] [--skip-sdk] [--keep-logs]
[--py-spy BIN]`` (needs root for the namespace; about 45 s, ``--quick`` about 10 s).
``--py-spy`` records every process during every window (raw collapsed stacks, kept with the
logs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
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
    digest,
    drive_session,
    emit,
    json_payload,
    log,
    median,
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
BIG = 10_000_000
PACKET = 15_000
SMALL = 100
LATENCY_ROUNDS = 4


# == worker side ===============================================================================

_payloads: dict[str, str] = {}


def _payload(kind: str, size: int) -> str:
    key = f"{kind}:{size}"
    if key not in _payloads:
        _payloads[key] = json_payload(size) if kind == "json" else random_payload(size)
    return _payloads[key]


def rpc_ops(lp: Any, peer: str, wire: Callable[[], int | None]) -> dict[str, Callable[..., Any]]:
    """RPC commands, the same code for our Room and the official SDK (same call API)."""

    async def rpc_small(n: int, warm: int) -> dict[str, Any]:
        payload = "x" * SMALL
        times: list[float] = []
        for i in range(warm + n):
            t0 = time.perf_counter()
            reply = await lp.perform_rpc(destination_identity=peer, method="echo", payload=payload)
            elapsed = time.perf_counter() - t0
            if reply != payload:
                raise RuntimeError("echo mismatch")
            if i >= warm:
                times.append(elapsed)
        return {"p50": pct(times, 0.5), "p99": pct(times, 0.99), "n": len(times)}

    async def prepare(kind: str, size: int) -> dict[str, Any]:
        _payload(kind, size)
        return {}

    async def rpc_big(kind: str, size: int) -> dict[str, Any]:
        payload = _payload(kind, size)
        expected = digest(payload)
        wire0 = wire()
        t0 = time.perf_counter()
        reply = await lp.perform_rpc(
            destination_identity=peer,
            method="hash",
            payload=payload,
            response_timeout=120,
            max_round_trip_latency=60,
        )
        elapsed = time.perf_counter() - t0
        wire1 = wire()
        if reply != expected:
            raise RuntimeError(f"hash mismatch: {reply} != {expected}")
        wire_bytes = wire1 - wire0 if wire0 is not None and wire1 is not None else None
        return {"seconds": elapsed, "mbps": size / 1e6 / elapsed, "wire": wire_bytes}

    async def rpc_conc(callers: int, seconds: float) -> dict[str, Any]:
        payload = "x" * SMALL

        async def one() -> None:
            await lp.perform_rpc(destination_identity=peer, method="echo", payload=payload)

        for _ in range(3):
            await asyncio.gather(*(one() for _ in range(callers)))
        times: list[float] = []
        errors = 0
        t_start = time.perf_counter()
        deadline = t_start + seconds

        async def loop_calls() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    await one()
                except Exception:
                    errors += 1
                    continue
                times.append(time.perf_counter() - t0)

        await asyncio.gather(*(loop_calls() for _ in range(callers)))
        elapsed = time.perf_counter() - t_start
        return {
            "calls_per_s": len(times) / elapsed,
            "p50": pct(times, 0.5),
            "p99": pct(times, 0.99),
            "errors": errors,
        }

    return {"rpc_small": rpc_small, "prepare": prepare, "rpc_big": rpc_big, "rpc_conc": rpc_conc}


def register_methods(lp: Any) -> None:
    def echo(data: Any) -> str:
        return str(data.payload)

    def hash_payload(data: Any) -> str:
        return digest(data.payload)

    lp.register_rpc_method("echo", echo)
    lp.register_rpc_method("hash", hash_payload)


async def ours_worker(url: str, token: str, peer: str) -> None:
    from livekit_rpc.room import Room, RoomOptions, RtcConfiguration

    room = Room()
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Future[Any]] = set()
    echo_reply: list[asyncio.Future[float]] = []
    bulk: dict[str, Any] = {"expect": 0, "got": 0, "first": 0, "last": 0}
    bulk_done: list[asyncio.Future[dict[str, Any]]] = []

    def spawn(coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def on_data(packet: Any) -> None:
        topic = packet.topic
        if topic == "echo":
            spawn(
                room.local_participant.publish_data(
                    packet.data, destination_identities=[peer], topic="echo-reply"
                )
            )
        elif topic == "echo-reply":
            if echo_reply and not echo_reply[0].done():
                echo_reply[0].set_result(time.perf_counter())
        elif topic == "bulk":
            now = time.time_ns()
            if not bulk["got"]:
                bulk["first"] = now
            bulk["got"] += len(packet.data)
            bulk["last"] = now
            if bulk["got"] >= bulk["expect"]:
                report = json.dumps({k: bulk[k] for k in ("got", "first", "last")})
                spawn(
                    room.local_participant.publish_data(
                        report, destination_identities=[peer], topic="bulk-done"
                    )
                )
        elif topic == "bulk-begin":
            bulk.update(expect=int(packet.data), got=0, first=0, last=0)
        elif topic == "bulk-done":
            if bulk_done and not bulk_done[0].done():
                bulk_done[0].set_result(json.loads(packet.data))

    room.on("data_received", on_data)
    options = RoomOptions(rtc_config=RtcConfiguration(ice_host_addresses=[NS_ADDRESS]))
    await room.connect(url, token, options)
    lp = room.local_participant
    register_methods(lp)
    await wait_until(lambda: peer in room.remote_participants, 30)

    def wire() -> int | None:
        engine = room._engine
        if engine is None or engine.publisher is None:
            return None
        return int(engine.publisher.queues["_reliable"].bytes_sent)

    async def raw_echo(n: int, warm: int) -> dict[str, Any]:
        payload = bytes(range(SMALL))
        times: list[float] = []
        for i in range(warm + n):
            echo_reply[:] = [loop.create_future()]
            t0 = time.perf_counter()
            await lp.publish_data(payload, destination_identities=[peer], topic="echo")
            t1 = await asyncio.wait_for(echo_reply[0], 5)
            if i >= warm:
                times.append(t1 - t0)
        return {"p50": pct(times, 0.5), "p99": pct(times, 0.99), "n": len(times)}

    async def raw_bulk(size: int, packet: int) -> dict[str, Any]:
        chunk = random_payload(packet, seed=3).encode()
        count = -(-size // packet)
        bulk_done[:] = [loop.create_future()]
        begin = str(count * packet)
        await lp.publish_data(begin, destination_identities=[peer], topic="bulk-begin")
        wire0 = wire()
        t0 = time.time_ns()
        for _ in range(count):
            await lp.publish_data(chunk, destination_identities=[peer], topic="bulk")
        report = await asyncio.wait_for(bulk_done[0], 120)
        wire1 = wire()
        seconds = (report["last"] - t0) / 1e9
        return {
            "seconds": seconds,
            "mbps": report["got"] / 1e6 / seconds,
            "wire": (wire1 or 0) - (wire0 or 0),
        }

    ops = rpc_ops(lp, peer, wire)
    ops.update(raw_echo=raw_echo, raw_bulk=raw_bulk)
    emit({"event": "ready"})
    try:
        await serve_commands(ops)
    finally:
        await room.disconnect()


async def sdk_worker(url: str, token: str, peer: str) -> None:
    from livekit import rtc

    room = rtc.Room()
    await room.connect(url, token, rtc.RoomOptions(connect_timeout=10))
    register_methods(room.local_participant)
    await wait_until(lambda: peer in room.remote_participants, 30)
    emit({"event": "ready"})
    try:
        await serve_commands(rpc_ops(room.local_participant, peer, lambda: None))
    finally:
        await room.disconnect()


# == driver side ===============================================================================


@dataclass
class Pair:
    """A caller and a responder of one kind (``ours`` or ``sdk``) in their own room."""

    kind: str
    caller: Worker
    responder: Worker
    pids: dict[str, int]

    @property
    def workers(self) -> tuple[Worker, ...]:
        return (self.caller, self.responder)


async def start_pair(run: Run, kind: str, server: ServerProcess, logdir: Path) -> Pair | None:
    from livekit_rpc.server.auth import mint_token

    names = (f"{kind}-caller", f"{kind}-responder")
    workers = [
        Worker(
            who,
            [
                sys.executable,
                SCRIPT,
                "--worker",
                kind,
                server.url,
                mint_token(ROOM_KEY, ROOM_SECRET, who, kind),
                other,
            ],
            logdir,
        )
        for who, other in (names, names[::-1])
    ]
    try:
        await asyncio.gather(*(w.start() for w in workers))
    except Exception as exc:
        run.errors.append(f"{kind} participants: {exc}")
        log(f"{kind}: participants did not start: {exc}")
        for w in workers:
            await w.stop()
        return None
    caller, responder = workers
    pids = {"server": server.pid, "caller": caller.pid, "responder": responder.pid}
    return Pair(kind, caller, responder, pids)


async def measure_all(run: Run, pairs: list[Pair], args: argparse.Namespace) -> None:
    """Each figure for every pair back to back (ours, then the SDK), repetitions interleaved,
    so that both see the same machine load."""
    quick = args.quick
    reps = 1 if quick else args.reps
    big = BIG // 5 if quick else BIG

    async def m(pair: Pair, name: str, op: str, within: float, **kwargs: Any) -> None:
        caller = pair.caller
        await run.measure(
            f"{pair.kind} {name}", pair.pids, lambda: caller.call(op, within, **kwargs), caller
        )

    for pair in pairs:
        await pair.caller.call("prepare", within=60, kind="json", size=big)
        await pair.caller.call("prepare", within=60, kind="random", size=big)
    ours = [p for p in pairs if p.kind == "ours"]
    # Latency windows alternate in rounds, so a change in machine load shows in both the figure
    # and its baseline; the figures are medians of the rounds' p50s.
    rounds = 2 if quick else LATENCY_ROUNDS
    for _ in range(rounds):
        for pair in ours:
            n, warm = (150, 25) if quick else (500, 50)
            await m(pair, "raw echo", "raw_echo", 120, n=n, warm=warm)
        for pair in pairs:
            n, warm = (100, 10) if quick else (250, 25)
            await m(pair, "small rpc", "rpc_small", 120, n=n, warm=warm)
    for _ in range(reps):
        for pair in ours:
            await m(pair, "raw one-way", "raw_bulk", 120, size=big, packet=PACKET)
        for pair in pairs:
            await m(pair, "json rpc", "rpc_big", 180, kind="json", size=big)
        for pair in pairs:
            await m(pair, "random rpc", "rpc_big", 180, kind="random", size=big)
    seconds = 1.5 if quick else 5.0
    for pair in pairs:
        await m(pair, "20 concurrent", "rpc_conc", seconds + 60, callers=20, seconds=seconds)


async def drive(args: argparse.Namespace, netns: Netns) -> int:
    return await drive_session(args, netns, "room", start_pair, measure_all, report)


def report(run: Run, args: argparse.Namespace, total: float) -> None:
    ms = 1000.0
    echo = run.med("ours raw echo", "p50")
    small = run.med("ours small rpc", "p50")
    sdk_small = run.med("sdk small rpc", "p50")
    raw = run.med("ours raw one-way", "mbps")
    js, rnd = run.med("ours json rpc", "mbps"), run.med("ours random rpc", "mbps")
    sdk_js, sdk_rnd = run.med("sdk json rpc", "mbps"), run.med("sdk random rpc", "mbps")
    conc, sdk_conc = (
        run.first("ours 20 concurrent", "calls_per_s"),
        run.first("sdk 20 concurrent", "calls_per_s"),
    )
    per_mb = [
        r["server_cpu"] * 1000 / (r["wire"] / 1e6)
        for r in run.results.get("ours raw one-way", [])
        if r.get("wire")
    ]

    def scaled(value: float | None) -> float | None:
        return value * ms if value is not None else None

    rows = [
        Row.compare(
            "small RPC round trip p50 vs raw echo p50",
            scaled(small),
            scaled(echo),
            unit="ms",
            base_name="raw echo",
            higher_is_better=False,
            target=1.5,
        ),
        Row.compare(
            "10 MB JSON RPC vs raw one-way",
            js,
            raw,
            unit="MB/s",
            base_name="raw",
            higher_is_better=True,
            target=2.0,
            fmt="{:.1f}",
        ),
        Row.compare(
            "10 MB random RPC vs raw one-way",
            rnd,
            raw,
            unit="MB/s",
            base_name="raw",
            higher_is_better=True,
            target=0.7,
            fmt="{:.1f}",
        ),
        Row.compare(
            "small RPC p50 vs SDK (SDK/ours)",
            scaled(small),
            scaled(sdk_small),
            unit="ms",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            invert=True,
        ),
        Row.compare(
            "10 MB JSON RPC vs SDK",
            js,
            sdk_js,
            unit="MB/s",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            fmt="{:.1f}",
        ),
        Row.compare(
            "10 MB random RPC vs SDK",
            rnd,
            sdk_rnd,
            unit="MB/s",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            fmt="{:.1f}",
        ),
        Row.compare(
            "20 concurrent callers vs SDK",
            conc,
            sdk_conc,
            unit="calls/s",
            base_name="SDK",
            higher_is_better=True,
            target=2.0,
            fmt="{:.0f}",
        ),
        Row.absolute(
            "server CPU per forwarded MB (raw one-way)",
            median(per_mb) if per_mb else None,
            unit="ms/MB",
            limit=40,
        ),
    ]
    mode = "quick" if args.quick else f"full, {args.reps} reps of each large transfer"
    print_table(f"bench/room.py ({mode}; medians; total {total:.0f} s)", rows)

    def fig(name: str, key: str, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
        values = [v * scale for v in run.values(name, key)]
        return spread(values, fmt) if values else "ERR"

    info = [
        ("raw echo RTT p50 / p99 (ms)", "ours raw echo", "", ""),
        ("small RPC p50 / p99 (ms)", "ours small rpc", "sdk small rpc", ""),
        ("20 concurrent: call p50 / p99 (ms)", "ours 20 concurrent", "sdk 20 concurrent", ""),
    ]
    body = []
    for label, ours_name, sdk_name, _ in info:
        ours_text = f"{fig(ours_name, 'p50', ms)} / {fig(ours_name, 'p99', ms)}"
        sdk_text = f"{fig(sdk_name, 'p50', ms)} / {fig(sdk_name, 'p99', ms)}" if sdk_name else "-"
        body.append((label, ours_text, sdk_text))
    for label, key in (("raw one-way", "mbps"),):
        body.append((f"{label} MB/s (reps)", fig("ours raw one-way", key, 1, "{:.1f}"), "-"))
    for label, name in (("10 MB JSON RPC", "json rpc"), ("10 MB random RPC", "random rpc")):
        body.append(
            (
                f"{label} MB/s (reps)",
                fig(f"ours {name}", "mbps", 1, "{:.1f}"),
                fig(f"sdk {name}", "mbps", 1, "{:.1f}"),
            )
        )
    body.append(
        (
            "server CPU ms per forwarded MB, raw (reps)",
            spread(per_mb, "{:.1f}") if per_mb else "ERR",
            "-",
        )
    )
    for name in ("json rpc", "random rpc"):
        ours_cpu = [
            r["server_cpu"] * 1000 / (BIG / 1e6 if not args.quick else BIG / 5e6)
            for r in run.results.get(f"ours {name}", [])
        ]
        sdk_cpu = [
            r["server_cpu"] * 1000 / (BIG / 1e6 if not args.quick else BIG / 5e6)
            for r in run.results.get(f"sdk {name}", [])
        ]
        body.append(
            (
                f"server CPU ms per payload MB, {name}",
                spread(ours_cpu, "{:.1f}") if ours_cpu else "ERR",
                spread(sdk_cpu, "{:.1f}") if sdk_cpu else "ERR",
            )
        )
    errors = sum(int(r.get("errors", 0)) for k, v in run.results.items() for r in v)
    body.append(("RPC errors in the concurrent runs", str(errors), ""))
    print_grid("More figures (med [min-max] over reps)", ("figure", "ours", "SDK"), body)
    run.print_details()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 rep")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of large transfers")
    parser.add_argument("--skip-sdk", action="store_true", help="measure only our participants")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs")
    parser.add_argument(
        "--py-spy",
        metavar="BIN",
        help="record every window's processes with this py-spy binary (raw stacks in the logs)",
    )
    parser.add_argument("--worker", nargs=4, metavar=("KIND", "URL", "TOKEN", "PEER"))
    args = parser.parse_args()
    if args.worker:
        kind, url, token, peer = args.worker
        worker = ours_worker if kind == "ours" else sdk_worker
        asyncio.run(worker(url, token, peer))
        return
    run_in_namespace("lkbroom", lambda netns: drive(args, netns))


if __name__ == "__main__":
    main()
