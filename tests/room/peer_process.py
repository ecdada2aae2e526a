"""A room participant in its own process, driven by the tests over stdin/stdout.

Usage: ``python peer_process.py URL TOKEN``. The peer joins with loopback ICE candidates,
registers a few RPC methods and then reads one JSON command per line from stdin, answering
each with one JSON line on stdout carrying the same ``id``. Unsolicited lines have an
``event`` key (the first is ``ready``).

RPC methods served: ``echo`` (returns the payload), ``len`` (returns its length), ``sleep``
(sleeps ``float(payload)`` seconds), ``whoami`` (returns the local identity).

Commands: ``rpc`` (dest, method, size or payload, timeout) calls another participant and
answers with the response length and SHA-256, or the error code; ``stats`` reports every data
packet received so far; ``publish`` sends a user packet; ``quit`` disconnects and exits.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import sys
from typing import Any

from livekit.protocol import models

from livekit_rpc.room import Room, RoomOptions, RpcError, RpcInvocationData, RtcConfiguration


def make_payload(size: int, seed: int = 1) -> str:
    """Deterministic, poorly compressible text of exactly ``size`` characters."""
    raw = random.Random(seed).randbytes(size * 3 // 4 + 3)
    return base64.b64encode(raw).decode()[:size]


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main(url: str, token: str) -> None:
    room = Room()
    received: list[dict[str, Any]] = []
    original = room.on_data_packet

    def record(packet: models.DataPacket, kind: int) -> None:
        received.append(
            {
                "type": packet.WhichOneof("value"),
                "from": packet.participant_identity,
                "to": list(packet.destination_identities),
                "topic": packet.user.topic if packet.HasField("user") else "",
                "sequence": packet.sequence,
            }
        )
        original(packet, kind)

    room.on_data_packet = record  # type: ignore[method-assign]
    room.on("participant_connected", lambda p: emit({"event": "joined", "identity": p.identity}))
    room.on("participant_disconnected", lambda p: emit({"event": "left", "identity": p.identity}))
    room.on("disconnected", lambda reason: emit({"event": "disconnected", "reason": int(reason)}))

    await room.connect(url, token, RoomOptions(rtc_config=RtcConfiguration(gather_loopback=True)))
    lp = room.local_participant

    @lp.register_rpc_method("echo")
    def echo(data: RpcInvocationData) -> str:
        return data.payload

    @lp.register_rpc_method("len")
    def length(data: RpcInvocationData) -> str:
        return str(len(data.payload))

    @lp.register_rpc_method("sleep")
    async def sleep(data: RpcInvocationData) -> str:
        await asyncio.sleep(float(data.payload))
        return "slept"

    @lp.register_rpc_method("whoami")
    def whoami(data: RpcInvocationData) -> str:
        return lp.identity

    emit(
        {
            "event": "ready",
            "identity": lp.identity,
            "sid": lp.sid,
            "remotes": sorted(room.remote_participants),
        }
    )

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()

    async def run(cmd: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": cmd.get("id")}
        try:
            op = cmd["op"]
            if op == "rpc":
                payload = cmd.get("payload")
                if payload is None:
                    payload = make_payload(int(cmd.get("size", 0)), int(cmd.get("seed", 1)))
                try:
                    result = await lp.perform_rpc(
                        destination_identity=cmd["dest"],
                        method=cmd["method"],
                        payload=payload,
                        response_timeout=cmd.get("timeout"),
                    )
                    reply.update(
                        ok=True,
                        length=len(result),
                        sha=hashlib.sha256(result.encode()).hexdigest(),
                        text=result[:100],
                    )
                except RpcError as exc:
                    reply.update(ok=False, code=exc.code, message=exc.message)
            elif op == "stats":
                reply.update(ok=True, received=received)
            elif op == "publish":
                await lp.publish_data(
                    cmd.get("payload", "").encode(),
                    destination_identities=cmd.get("to") or None,
                    topic=cmd.get("topic", ""),
                )
                reply.update(ok=True)
            elif op == "quit":
                await room.disconnect()
                reply.update(ok=True)
            else:
                reply.update(ok=False, message=f"unknown op {op}")
        except Exception as exc:
            reply.update(ok=False, message=repr(exc))
        emit(reply)

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            await run(cmd)
            break
        task = asyncio.ensure_future(run(cmd))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
