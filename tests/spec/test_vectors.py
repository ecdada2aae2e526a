"""spec/spec.md embeds the output of spec/vectors.py; the two must never drift apart."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec" / "spec.md"
SCRIPT = ROOT / "spec" / "vectors.py"


def _load_vectors() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lkrpc_spec_vectors", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while executing it
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def vectors() -> ModuleType:
    return _load_vectors()


def test_spec_embeds_current_vectors(vectors: ModuleType) -> None:
    embedded = vectors.embedded(SPEC.read_text(encoding="utf-8"))
    assert embedded == vectors.render(), (
        "spec/spec.md §11 is out of date: run `python spec/vectors.py --update`"
    )


def test_script_prints_the_same_markdown() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert result.stdout == _load_vectors().render()


def test_vectors_parse_back_to_the_packets_built(vectors: ModuleType) -> None:
    from livekit_rpc.wire.packets import DataPacket

    for vector in vectors.build_vectors():
        for _, packet in vector.packets:
            data = vectors.serialize(packet)
            parsed = DataPacket()
            parsed.ParseFromString(data)
            assert parsed == packet
            assert len(data) <= 64000


def test_presence_markers_are_on_the_wire(vectors: ModuleType) -> None:
    by_key = {v.key: v for v in vectors.build_vectors()}
    empty_response = vectors.serialize(by_key["V4"].packets[0][1])
    assert empty_response.endswith(bytes.fromhex("12 00"))
    empty_inline = vectors.serialize(by_key["V10"].packets[0][1])
    assert bytes.fromhex("28 00") in empty_inline
    assert empty_inline.endswith(bytes.fromhex("5a 00"))
    zstd_header = vectors.serialize(by_key["V8"].packets[0][1])
    assert zstd_header.endswith(bytes.fromhex("60 91 4e"))
