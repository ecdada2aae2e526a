"""One demo participant, run as its own process: ``python -m livekit_rpc.demo.participant``.

Roles: ``robot`` serves methods; ``flaky`` dies in the middle of a call; ``caller`` runs the
scenario and prints what happened, with timings. Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable

from ..room import Room, RoomOptions, RtcConfiguration
from ..rpc.errors import RpcError
from ..rpc.types import RpcInvocationData

LOOPBACK = RoomOptions(rtc_config=RtcConfiguration(gather_loopback=True))


def say(text: str) -> None:
    print(text, flush=True)


async def run_robot(room: Room) -> None:
    @room.local_participant.register_rpc_method("get_state")
    async def get_state(data: RpcInvocationData) -> str:
        return json.dumps(
            {"battery": 0.87, "pose": [1.0, 2.5, 0.0], "asked_by": data.caller_identity}
        )

    @room.local_participant.register_rpc_method("summarize")
    async def summarize(data: RpcInvocationData) -> str:
        records = json.loads(data.payload)
        return json.dumps({"records": len(records), "bytes": len(data.payload)})

    @room.local_participant.register_rpc_method("generate")
    async def generate(data: RpcInvocationData) -> AsyncIterator[str]:
        for word in (
            "Streaming ",
            "tokens ",
            "from ",
            "a ",
            "fake ",
            "model, ",
            "one ",
            "by ",
            "one.",
        ):
            await asyncio.sleep(0.02)
            yield word


async def run_flaky(room: Room) -> None:
    @room.local_participant.register_rpc_method("slow_job")
    async def slow_job(data: RpcInvocationData) -> str:
        say("[flaky] got slow_job; exiting mid-call")
        os._exit(0)


def big_json(size: int) -> str:
    records = []
    total = 2
    i = 0
    while total < size:
        record = json.dumps(
            {"id": i, "name": f"sensor-{i % 97}", "value": i * 0.25, "ok": i % 3 == 0}
        )
        records.append(record)
        total += len(record) + 1
        i += 1
    return "[" + ",".join(records) + "]"


async def wait_for(room: Room, identities: set[str]) -> None:
    """Return once every identity in ``identities`` is in the room."""
    everyone_here = asyncio.Event()

    def check(*_: object) -> None:
        if identities <= set(room.remote_participants):
            everyone_here.set()

    room.on("participant_connected", check)
    try:
        check()
        await everyone_here.wait()
    finally:
        room.remove_listener("participant_connected", check)


async def expect_error(label: str, call: Awaitable[str]) -> None:
    """Await a call that must fail, and print the error it failed with and how fast."""
    started = time.perf_counter()
    try:
        reply = await call
    except RpcError as error:
        elapsed = (time.perf_counter() - started) * 1000
        say(f"{label} -> RpcError {error.code} {error.message!r}  ({elapsed:.1f} ms)")
        return
    raise RuntimeError(f"{label}: expected an RpcError, got the reply {reply!r}")


async def run_caller(room: Room) -> None:
    local = room.local_participant
    await wait_for(room, {"robot", "flaky"})

    started = time.perf_counter()
    reply = await local.perform_rpc(destination_identity="robot", method="get_state", payload="{}")
    say(f"1. small RPC get_state -> {reply}  ({(time.perf_counter() - started) * 1000:.1f} ms)")

    payload = big_json(10_000_000)
    started = time.perf_counter()
    reply = await local.perform_rpc(
        destination_identity="robot", method="summarize", payload=payload, response_timeout=60
    )
    elapsed = time.perf_counter() - started
    say(
        f"2. 10 MB JSON RPC summarize -> {reply}  ({elapsed * 1000:.0f} ms, "
        f"{len(payload) / elapsed / 1e6:.1f} MB/s; zstd-compressed data stream)"
    )

    await expect_error(
        "3. unknown method self_destruct",
        local.perform_rpc(destination_identity="robot", method="self_destruct", payload=""),
    )

    started = time.perf_counter()
    async with local.stream_rpc(
        destination_identity="robot", method="generate", payload=""
    ) as stream:
        text = "".join([str(chunk) async for chunk in stream])
    ttfc = (stream.time_to_first_chunk or 0) * 1000
    say(
        f"4. streaming RPC generate -> {text!r}  ({stream.chunk_count} chunks, "
        f"first after {ttfc:.1f} ms, total {(time.perf_counter() - started) * 1000:.0f} ms)"
    )

    await expect_error(
        "5. call to a participant that leaves mid-call",
        local.perform_rpc(destination_identity="flaky", method="slow_job", payload=""),
    )


ROLES = {"robot": run_robot, "flaky": run_flaky, "caller": run_caller}


async def main(role: str, url: str, token: str) -> int:
    room = Room()
    await room.connect(url, token, LOOPBACK)
    try:
        await ROLES[role](room)
        if role == "caller":
            return 0
        await asyncio.Event().wait()  # serve until the orchestrator stops us
        return 0
    finally:
        await room.disconnect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("url")
    parser.add_argument("token")
    args = parser.parse_args()
    try:
        sys.exit(asyncio.run(main(args.role, args.url, args.token)))
    except KeyboardInterrupt:
        sys.exit(0)
