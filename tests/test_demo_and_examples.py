"""``livekit-rpc demo`` and the examples run end to end (real WebRTC on loopback)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_demo_runs_every_scenario_and_exits_0() -> None:
    result = run("-m", "livekit_rpc.cli", "demo")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "(loopback only)" in out
    assert re.search(r"^1\. small RPC get_state -> \{.*\"asked_by\": \"caller\"\}", out, re.M)
    assert re.search(
        r'^2\. 10 MB JSON RPC summarize -> \{"records": \d+, "bytes": 100000\d\d\}', out, re.M
    )
    assert (
        "3. unknown method self_destruct -> RpcError 1400 'Method not supported at destination'"
        in out
    )
    assert (
        "4. streaming RPC generate -> 'Streaming tokens from a fake model, one by one.'  (9 chunks"
        in out
    )
    assert (
        "5. call to a participant that leaves mid-call -> RpcError 1503 'Recipient disconnected'"
        in out
    )


def test_llm_tokens_example_prints_tokens_and_latency() -> None:
    result = run("examples/llm_tokens.py", "--tokens", "30", "--rate", "100")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(
        r"30 tokens in [\d.]+ s; time to first token [\d.]+ ms .* inter-token latency "
        r"p50 [\d.]+ ms, p99 [\d.]+ ms",
        summary,
    ), summary
