"""``livekit-rpc demo``: the embedded dev server and participants in separate processes."""

from .orchestrator import run_demo

__all__ = ["run_demo"]
