"""The ``livekit-rpc`` command line: ``token`` and ``server``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from livekit.protocol import models
from livekit.protocol import rtc as proto_rtc

from livekit_rpc.cli import COMMANDS, build_parser, main
from livekit_rpc.server import mint_token, verify_token

ROOT = Path(__file__).resolve().parents[1]


def test_token_prints_a_valid_jwt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--identity", "alice", "--room", "r1", "--ttl", "60"]) == 0
    jwt = capsys.readouterr().out.strip()
    claims = verify_token(jwt, "devkey", "secret")
    assert (claims.identity, claims.room) == ("alice", "r1")
    assert 0 < claims.expires_at - time.time() <= 60


def test_token_with_custom_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["token", "--identity", "bob", "--room", "r2", "--api-key", "k", "--api-secret", "s"]
    assert main(argv) == 0
    claims = verify_token(capsys.readouterr().out.strip(), "k", "s")
    assert claims.identity == "bob"


def test_token_rejects_empty_identity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--identity", "", "--room", "r"]) == 2
    assert "identity" in capsys.readouterr().err


def test_parser_is_table_driven() -> None:
    assert set(COMMANDS) >= {"server", "token"}
    args = build_parser().parse_args(["server", "--dev", "--rtc-host", "127.0.0.1"])
    assert args.port == 7880 and args.host == "127.0.0.1" and args.rtc_host == ["127.0.0.1"]
    assert not args.standard_sctp_packets
    args = build_parser().parse_args(["server", "--standard-sctp-packets"])
    assert args.standard_sctp_packets


def test_server_rejects_bad_rtc_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["server", "--port", "0", "--rtc-host", "not-an-ip"]) == 2
    assert "not-an-ip" in capsys.readouterr().err


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_server_subprocess_shuts_down_cleanly(stop_signal: signal.Signals) -> None:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "livekit_rpc.cli",
        "server",
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 20)).decode()
        match = re.search(r"ws://127\.0\.0\.1:(\d+)", line)
        assert match, line
        url = match.group(0)
        jwt = mint_token("devkey", "secret", "alice", "r1")
        async with aiohttp.ClientSession() as http:
            ws = await http.ws_connect(f"{url}/rtc", headers={"Authorization": f"Bearer {jwt}"})
            first = proto_rtc.SignalResponse.FromString((await ws.receive(5)).data)
            assert first.WhichOneof("message") == "join"
            process.send_signal(stop_signal)
            leave = proto_rtc.SignalResponse.FromString((await ws.receive(5)).data)
            assert leave.leave.reason == models.DisconnectReason.SERVER_SHUTDOWN
            closing = await ws.receive(5)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            await ws.close()
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
