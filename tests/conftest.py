"""Test-suite wide setup: run the whole pytest process inside a private network namespace.

WebRTC tests must never put traffic on the host's real interfaces. When running as root, this
module (imported by pytest before any test module, hence before anything starts threads)
creates a namespace ``lktest<pid>`` with ``lo`` up and a veth pair whose one end carries
:data:`NETNS_ADDRESS`, and moves this process into it. Everything afterwards (aiohttp on
127.0.0.1, aiortc, the official SDK's native threads, subprocesses) lives inside it, with no
route to the outside. The namespace is deleted at exit.

The official LiveKit SDK ignores loopback interfaces, so tests using it need the veth address
(fixture :func:`netns_address`). Without root those tests fail loudly instead of skipping.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import subprocess
import threading

import pytest

NETNS_NAME = f"lktest{os.getpid()}"
NETNS_ADDRESS = "10.231.0.1"
_CLONE_NEWNET = 0x40000000
_netns_error: str | None = None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def _delete_netns() -> None:
    subprocess.run(["ip", "netns", "del", NETNS_NAME], check=False, capture_output=True)


def _remove_stale_namespaces() -> None:
    """Delete ``lktest<pid>`` namespaces left by test processes that no longer exist."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        pid = name.removeprefix("lktest")
        if name.startswith("lktest") and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def _enter_netns() -> None:
    if threading.active_count() != 1:
        raise RuntimeError("threads already running; cannot move the whole process")
    _remove_stale_namespaces()
    _ip("netns", "add", NETNS_NAME)
    atexit.register(_delete_netns)
    _ip("-n", NETNS_NAME, "link", "set", "lo", "up")
    _ip("-n", NETNS_NAME, "link", "add", "lkv0", "type", "veth", "peer", "name", "lkv1")
    _ip("-n", NETNS_NAME, "addr", "add", f"{NETNS_ADDRESS}/24", "dev", "lkv0")
    _ip("-n", NETNS_NAME, "link", "set", "lkv0", "up")
    _ip("-n", NETNS_NAME, "link", "set", "lkv1", "up")
    fd = os.open(f"/run/netns/{NETNS_NAME}", os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns: {os.strerror(errno)}")
    finally:
        os.close(fd)
    # The namespace is per thread: every thread of the process must be inside.
    mine = os.readlink("/proc/thread-self/ns/net")
    for tid in os.listdir("/proc/self/task"):
        if os.readlink(f"/proc/self/task/{tid}/ns/net") != mine:
            raise RuntimeError(f"thread {tid} is outside the test network namespace")


if os.geteuid() == 0:
    try:
        _enter_netns()
    except (OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or ""
        _netns_error = f"could not enter a network namespace: {exc} {detail}".strip()
        _delete_netns()
else:
    _netns_error = "WebRTC tests need root to create a network namespace (ip netns)"


def _in_test_netns() -> bool:
    try:
        return os.stat(f"/run/netns/{NETNS_NAME}").st_ino == os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return False


@pytest.fixture(scope="session")
def netns_address() -> str:
    """The veth address inside the test network namespace, for ICE host candidates.

    Fails (never skips) when the suite is not running inside its namespace.
    """
    if _netns_error is not None:
        pytest.fail(_netns_error, pytrace=False)
    if not _in_test_netns():
        pytest.fail("the test process is not inside its network namespace", pytrace=False)
    return NETNS_ADDRESS
