"""Stream tokens from a fake language model to another participant, with TTFT and latency.

Starts the embedded dev server on loopback, then two participants in this process: ``model``
serves ``generate`` as a streaming RPC method (an async generator), ``viewer`` calls it and
prints the tokens as they arrive, then time to first token and inter-token latency.

    python examples/llm_tokens.py [--tokens 200] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import AsyncIterator

from livekit_rpc.room import Room, RoomOptions, RtcConfiguration
from livekit_rpc.rpc.types import RpcInvocationData
from livekit_rpc.server.app import DevServer
from livekit_rpc.server.auth import DEV_API_KEY, DEV_API_SECRET, mint_token
from livekit_rpc.server.config import ServerConfig

LOOPBACK = RoomOptions(rtc_config=RtcConfiguration(gather_loopback=True))
WORDS = "the robot arm moves to the red block and lifts it gently before turning left".split()


async def fake_model(prompt: str, count: int, rate: float) -> AsyncIterator[str]:
    """Tokens at about ``rate`` per second, after a short 'prefill' delay."""
    rng = random.Random(prompt)
    await asyncio.sleep(0.05)
    for _ in range(count):
        yield rng.choice(WORDS) + " "
        await asyncio.sleep(1 / rate)


async def main(count: int, rate: float) -> None:
    async with DevServer(ServerConfig(port=0, rtc_hosts=("127.0.0.1",))) as server:

        def token(identity: str) -> str:
            return mint_token(DEV_API_KEY, DEV_API_SECRET, identity=identity, room="llm")

        model, viewer = Room(), Room()
        await model.connect(server.url, token("model"), LOOPBACK)

        @model.local_participant.register_rpc_method("generate")
        async def generate(data: RpcInvocationData) -> AsyncIterator[str]:
            async for piece in fake_model(data.payload, count, rate):
                yield piece

        await viewer.connect(server.url, token("viewer"), LOOPBACK)
        try:
            started = time.perf_counter()
            async with viewer.local_participant.stream_rpc(
                destination_identity="model", method="generate", payload="describe the scene"
            ) as stream:
                async for piece in stream:
                    print(piece, end="", flush=True)
            elapsed = time.perf_counter() - started
            print()
            ttft = (stream.time_to_first_chunk or 0) * 1000
            p50 = (stream.inter_chunk_p50 or 0) * 1000
            p99 = (stream.inter_chunk_p99 or 0) * 1000
            print(
                f"{stream.chunk_count} tokens in {elapsed:.2f} s; time to first token "
                f"{ttft:.1f} ms (includes the model's 50 ms prefill); inter-token latency "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (the model paces at {1000 / rate:.0f} ms)"
            )
        finally:
            await viewer.disconnect()
            await model.disconnect()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second")
    args = parser.parse_args()
    asyncio.run(main(args.tokens, args.rate))
