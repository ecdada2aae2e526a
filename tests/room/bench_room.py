"""Measurements behind two choices of the room transport (not a test; run by hand).

``python tests/room/bench_room.py dgram [ROUNDS] [MB]``
    A/B of the UDP read-size fix (asyncio's datagram transports read with ``recvfrom(256 KiB)``;
    the fix sets ``_SelectorDatagramTransport.max_size = 65536``). Each run is a fresh
    process holding two ``PeerTransport``s connected over loopback, which sends MB megabytes
    of 15,000-byte messages through the flow-controlled send queue. Configurations alternate
    run by run; reported: MB/s, process CPU seconds and minor page faults.

``python tests/room/bench_room.py stack [ROUNDS] [MB]``
    The same A/B through the whole stack: a fresh process runs the dev server and a receiving
    Room, a child process sends MB megabytes with ``send_bytes`` (random, so incompressible).
    Reported: sender-side MB/s, and the CPU seconds of both processes.

``python tests/room/bench_room.py memory [MB]``
    Peak memory of a sender doing ``send_bytes`` of MB megabytes through the dev server to a
    receiver in another process, to check that the payload is not held twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

MESSAGE = 15_000
COMPRESS = os.environ.get("BENCH_COMPRESS", "1") == "1"


def apply_datagram_read_size_fix() -> None:
    """Process-wide: read UDP datagrams into 64 KiB buffers (no datagram is larger)."""
    from asyncio import selector_events

    selector_events._SelectorDatagramTransport.max_size = 65536  # type: ignore[attr-defined]


async def _dgram_child(fix: bool, megabytes: int) -> dict[str, float]:
    from livekit_rpc import ice
    from livekit_rpc.room.transport import PeerTransport, TransportOptions, build_configuration

    if fix:
        apply_datagram_read_size_fix()
    total = megabytes * 1_000_000
    received = 0
    done = asyncio.Event()

    def on_message(label: str, data: bytes) -> None:
        nonlocal received
        received += len(data)
        if received >= total:
            done.set()

    def make(name: str) -> PeerTransport:
        return PeerTransport(
            name,
            build_configuration([]),
            on_message=on_message,
            on_state=lambda s: None,
            options=TransportOptions(),
        )

    a, b = make("a"), make("b")
    a.create_data_channels()
    with ice.use_host_addresses(["127.0.0.1"]):
        answer = await b.answer_offer(await a.create_offer())
    await a.set_answer(answer)
    await a.wait_connected()
    queue = a.queues["_reliable"]
    await queue.wait_open()
    payload = os.urandom(MESSAGE)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for _ in range(total // MESSAGE + 1):
        await queue.send(payload)
    await done.wait()
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    await a.close()
    await b.close()
    return {
        "mbps": total / 1e6 / elapsed,
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "faults": after.ru_minflt - before.ru_minflt,
        "peak_buffered": queue.peak_buffered,
    }


def dgram(rounds: int, megabytes: int) -> None:
    results: dict[str, list[dict[str, float]]] = {"default": [], "fix": []}
    for _ in range(rounds):
        for name in ("default", "fix"):
            out = subprocess.run(
                [sys.executable, __file__, "dgram-child", name, str(megabytes)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
    for name, runs in results.items():

        def fmt(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] for r in runs]
            return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"

        print(
            f"{name:8s} n={len(runs)} MB/s {fmt('mbps')}  CPU s {fmt('cpu')}  "
            f"minor faults {fmt('faults')}  peak buffered {max(r['peak_buffered'] for r in runs)}"
        )


async def memory(megabytes: int, fix: bool = True, quiet: bool = False) -> dict[str, float]:
    from livekit_rpc.room import Room, RoomOptions, RtcConfiguration
    from livekit_rpc.server import DevServer, ServerConfig, mint_token

    if fix:
        apply_datagram_read_size_fix()
    options = RoomOptions(rtc_config=RtcConfiguration(gather_loopback=True))
    before = resource.getrusage(resource.RUSAGE_SELF)
    async with DevServer(ServerConfig(port=0)) as server:
        receiver = Room()
        got = 0
        done = asyncio.Event()

        async def on_stream(reader: object, sender: str) -> None:
            nonlocal got
            async for piece in reader:  # type: ignore[attr-defined]
                got += len(piece)
            done.set()

        receiver.register_byte_stream_handler("mem", on_stream)
        await receiver.connect(server.url, mint_token("devkey", "secret", "rx", "m"), options)
        env = dict(os.environ, PYTHONPATH=str(REPO))
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "memory-child",
            server.url,
            mint_token("devkey", "secret", "tx", "m"),
            str(megabytes),
            "fix" if fix else "default",
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        out, _ = await child.communicate()
        await asyncio.wait_for(done.wait(), 60)
        after = resource.getrusage(resource.RUSAGE_SELF)
        lines = out.decode().strip().splitlines()
        if not quiet:
            print(lines[0], f"received={got}")
        await receiver.disconnect()
    result = json.loads(lines[-1])
    result["server_cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return result


def stack(rounds: int, megabytes: int) -> None:
    results: dict[str, list[dict[str, float]]] = {"default": [], "fix": []}
    for _ in range(rounds):
        for name in ("default", "fix"):
            out = subprocess.run(
                [sys.executable, __file__, "stack-child", name, str(megabytes)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[name].append(json.loads(out.strip().splitlines()[-1]))
    for name, runs in results.items():

        def fmt(key: str, runs: list[dict[str, float]] = runs) -> str:
            values = [r[key] for r in runs]
            return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"

        print(
            f"{name:8s} n={len(runs)} MB/s {fmt('mbps')}  sender CPU s {fmt('cpu')}  "
            f"server+receiver CPU s {fmt('server_cpu')}  sender faults {fmt('faults')}"
        )


async def _memory_child(url: str, token: str, megabytes: int, fix: bool) -> None:
    from livekit_rpc.room import Room, RoomOptions, RtcConfiguration

    def rss_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    room = Room()
    if fix:
        apply_datagram_read_size_fix()
    await room.connect(url, token, RoomOptions(rtc_config=RtcConfiguration(gather_loopback=True)))
    present = asyncio.Event()
    room.on("participant_connected", lambda p: present.set())
    if "rx" not in room.remote_participants:
        await asyncio.wait_for(present.wait(), 10)
    base = rss_mb()
    payload = os.urandom(megabytes * 1_000_000)
    with_payload = rss_mb()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await room.local_participant.send_bytes(
        payload, topic="mem", destination_identities=["rx"], compress=COMPRESS
    )
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    peak = rss_mb()
    await asyncio.sleep(1)
    await room.disconnect()
    print(
        f"payload={megabytes} MB  maxrss before={base:.0f} MB  with payload={with_payload:.0f} MB"
        f"  peak during send={peak:.0f} MB  send time={elapsed:.1f} s"
        f" ({megabytes / elapsed:.1f} MB/s via the server)"
    )
    stats = {
        "mbps": megabytes / elapsed,
        "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "faults": after.ru_minflt - before.ru_minflt,
    }
    print(json.dumps(stats))


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "dgram":
        dgram(
            int(sys.argv[2]) if len(sys.argv) > 2 else 6,
            int(sys.argv[3]) if len(sys.argv) > 3 else 30,
        )
    elif mode == "dgram-child":
        print(json.dumps(asyncio.run(_dgram_child(sys.argv[2] == "fix", int(sys.argv[3])))))
    elif mode == "stack":
        stack(
            int(sys.argv[2]) if len(sys.argv) > 2 else 6,
            int(sys.argv[3]) if len(sys.argv) > 3 else 30,
        )
    elif mode == "stack-child":
        result = asyncio.run(memory(int(sys.argv[3]), fix=sys.argv[2] == "fix", quiet=True))
        print(json.dumps(result))
    elif mode == "memory":
        asyncio.run(memory(int(sys.argv[2]) if len(sys.argv) > 2 else 100))
    elif mode == "memory-child":
        asyncio.run(_memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "fix"))
    else:
        raise SystemExit(__doc__)
