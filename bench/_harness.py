"""Shared plumbing of ``bench/room.py`` and ``bench/streaming.py`` (not a script).

* :class:`Netns`: a private network namespace (``lo`` up, a veth pair with
  :data:`NS_ADDRESS` on one end) that the driver process moves itself into before it starts
  any thread; every process it starts afterwards inherits it. The namespace is deleted at
  exit, also on error or signal.
* :class:`ServerProcess`: ``python -m livekit_rpc.cli server --port 0 --rtc-host ADDR`` in
  its own process; its URL is read from its first stdout line.
* :class:`Worker`: a participant in its own process, driven with one JSON command per line on
  stdin and answering one JSON line per command on stdout (``{"event": "ready"}`` first).
* :class:`CpuWindow`: CPU seconds of the server and participant processes (``/proc/<pid>/stat``
  utime+stime) and of everything else on the machine (``/proc/stat`` busy time minus ours)
  over one measured window.
* Payload builders, percentiles and the result table.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar

REPO = Path(__file__).resolve().parent.parent
NS_ADDRESS = "10.231.9.1"
"""The namespace's non-loopback address: ICE host candidate of the server and of every peer."""
ROOM_KEY, ROOM_SECRET = "devkey", "secret"
_CLONE_NEWNET = 0x40000000
_TICK = os.sysconf("SC_CLK_TCK")

# Every process this driver starts, so that an exit path can end exactly these.
_STARTED: list[asyncio.subprocess.Process] = []


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- network namespace -----------------------------------------------------------------------


class Netns:
    """A namespace ``<prefix><pid>`` with ``lo`` and a veth pair; :meth:`enter` moves this
    (still single-threaded) process into it."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.name = f"{prefix}{os.getpid()}"
        self._created = False

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def _remove_stale(self) -> None:
        """Delete namespaces this benchmark left behind in runs whose process is gone."""
        try:
            names = os.listdir("/run/netns")
        except OSError:
            return
        for name in names:
            pid = name.removeprefix(self.prefix)
            if name.startswith(self.prefix) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
                subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)

    def enter(self) -> None:
        if os.geteuid() != 0:
            raise SystemExit("this benchmark needs root: it creates a network namespace")
        if threading.active_count() != 1:
            raise RuntimeError("threads already running; the namespace would not cover them")
        self._remove_stale()
        self._ip("netns", "add", self.name)
        self._created = True
        atexit.register(self.delete)
        self._ip("-n", self.name, "link", "set", "lo", "up")
        self._ip("-n", self.name, "link", "add", "lkb0", "type", "veth", "peer", "name", "lkb1")
        self._ip("-n", self.name, "addr", "add", f"{NS_ADDRESS}/24", "dev", "lkb0")
        self._ip("-n", self.name, "link", "set", "lkb0", "up")
        self._ip("-n", self.name, "link", "set", "lkb1", "up")  # else lkb0 has no carrier
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.setns(fd, _CLONE_NEWNET) != 0:
                errno = ctypes.get_errno()
                raise OSError(errno, f"setns: {os.strerror(errno)}")
        finally:
            os.close(fd)

    def delete(self) -> None:
        kill_started()
        if self._created:
            self._created = False
            subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)

    def udp_drops(self) -> int:
        """``RcvbufErrors`` of this namespace's UDP sockets so far."""
        lines = Path("/proc/net/snmp").read_text().splitlines()
        udp = [line.split() for line in lines if line.startswith("Udp:")]
        return int(udp[1][udp[0].index("RcvbufErrors")])


def kill_started() -> None:
    """SIGKILL every process this driver started that is still running (by its pid)."""
    for process in _STARTED:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)


def install_exit_handlers(netns: Netns) -> None:
    """Ctrl-C, SIGTERM and SIGHUP end the run at once: every started process is killed and
    the namespace deleted before the driver exits."""

    def on_signal(signum: int, _frame: object) -> None:
        netns.delete()
        log(f"interrupted by signal {signum}; processes stopped, namespace deleted")
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)


# -- processes -------------------------------------------------------------------------------


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process in seconds (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_minflt(pid: int) -> int:
    """Minor page faults of a live process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[7])


def machine_busy() -> float:
    """CPU seconds every CPU spent busy since boot (``/proc/stat``)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / _TICK


class ServerProcess:
    """The dev server as a separate process (the project's own CLI)."""

    def __init__(self, logdir: Path, rtc_host: str) -> None:
        self.logfile = logdir / "server.log"
        self.rtc_host = rtc_host
        self.process: asyncio.subprocess.Process | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, within: float = 20.0) -> None:
        with self.logfile.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "livekit_rpc.cli",
                "server",
                "--port",
                "0",
                "--rtc-host",
                self.rtc_host,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=REPO,
                env=_child_env(),
            )
        _STARTED.append(self.process)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), within)
        text = line.decode()
        if "listening on" not in text:
            raise RuntimeError(f"server did not start: {text!r}; see {self.logfile}")
        self.url = text.rsplit(" ", 1)[1].strip()

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 8)
        except TimeoutError:
            process.kill()
            await process.wait()


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), str(REPO / "bench"), env.get("PYTHONPATH", "")) if p
    )
    env.pop("PYTHONASYNCIODEBUG", None)  # debug mode would dominate every figure
    return env


class Worker:
    """A participant process driven over JSON lines."""

    def __init__(self, name: str, argv: Sequence[str], logdir: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.logfile = logdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self._ids = itertools.count(1)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, within: float = 40.0) -> dict[str, Any]:
        with self.logfile.open("wb") as err:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=REPO,
                env=_child_env(),
                limit=1 << 24,
            )
        _STARTED.append(self.process)
        try:
            return await asyncio.wait_for(self._read_reply(None), within)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{self.name} did not get ready ({exc!r}); {self.tail()}") from exc

    def tail(self, lines: int = 8) -> str:
        try:
            text = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f"last lines of {self.logfile}:\n    " + "\n    ".join(text[-lines:])

    async def _read_reply(self, want: int | None) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        while True:
            line = await self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited (code {self.process.returncode})")
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue  # stray output
            if want is None and message.get("event") == "ready":
                return dict(message)
            if want is not None and message.get("id") == want:
                if message.get("error"):
                    raise RuntimeError(f"{self.name}: {message['error']}")
                return dict(message)

    async def send(self, op: str, **kwargs: Any) -> int:
        assert self.process is not None and self.process.stdin is not None
        ident = next(self._ids)
        self.process.stdin.write((json.dumps({"id": ident, "op": op, **kwargs}) + "\n").encode())
        await self.process.stdin.drain()
        return ident

    async def reply(self, ident: int, within: float) -> dict[str, Any]:
        return await asyncio.wait_for(self._read_reply(ident), within)

    async def call(self, op: str, within: float = 60.0, **kwargs: Any) -> dict[str, Any]:
        return await self.reply(await self.send(op, **kwargs), within)

    async def stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.call("quit", within=5)
        try:
            await asyncio.wait_for(process.wait(), 5)
        except TimeoutError:
            process.kill()
            await process.wait()


# -- CPU accounting --------------------------------------------------------------------------


@dataclass
class CpuWindow:
    """CPU seconds spent by named processes, the driver and everything else, over a window."""

    pids: dict[str, int]
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    other: float = 0.0
    _t0: float = 0.0
    _start: dict[str, float] = field(default_factory=dict)
    _faults0: dict[str, int] = field(default_factory=dict)
    _busy0: float = 0.0
    _self0: float = 0.0

    def __enter__(self) -> CpuWindow:
        self._start = {name: proc_cpu(pid) for name, pid in self.pids.items()}
        self._faults0 = {name: proc_minflt(pid) for name, pid in self.pids.items()}
        self._self0 = time.process_time()
        self._busy0 = machine_busy()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        busy = machine_busy() - self._busy0
        self.cpu = {name: proc_cpu(pid) - self._start[name] for name, pid in self.pids.items()}
        self.faults = {
            name: proc_minflt(pid) - self._faults0[name] for name, pid in self.pids.items()
        }
        driver = time.process_time() - self._self0
        self.other = max(0.0, busy - sum(self.cpu.values()) - driver)


class Profiles:
    """``py-spy record`` (raw collapsed stacks) of each process during one window, when a
    py-spy binary is given; files ``<dir>/<window>.<process>.txt``."""

    def __init__(self, pyspy: str | None, outdir: Path, window: str, pids: dict[str, int]):
        self.pyspy = pyspy
        self.outdir = outdir
        self.window = window.replace(" ", "_")
        self.pids = pids
        self._procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Profiles:
        if not self.pyspy:
            return self
        for name, pid in self.pids.items():
            out = self.outdir / f"{self.window}.{name}.txt"
            process = await asyncio.create_subprocess_exec(
                self.pyspy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "500",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            _STARTED.append(process)
            self._procs.append(process)
        await asyncio.sleep(0.5)  # let the samplers attach
        return self

    async def __aexit__(self, *exc: object) -> None:
        for process in self._procs:
            if process.returncode is None:
                process.send_signal(signal.SIGINT)
        for process in self._procs:
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


class Run:
    """The measured windows of one benchmark run: results by window name, errors, and per
    window the CPU seconds of each process, UDP drops and wire bytes."""

    def __init__(self, logdir: Path, pyspy: str | None, netns: Netns) -> None:
        self.calibration = [calibrate()]
        self.logdir = logdir
        self.pyspy = pyspy
        self.netns = netns
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self.details: list[tuple[str, ...]] = []
        self.window_seconds = 0.0
        self.other_seconds = 0.0

    def values(self, name: str, key: str) -> list[float]:
        return [r[key] for r in self.results.get(name, []) if r.get(key) is not None]

    def first(self, name: str, key: str) -> float | None:
        values = self.values(name, key)
        return values[0] if values else None

    def med(self, name: str, key: str) -> float | None:
        values = self.values(name, key)
        return median(values) if values else None

    async def measure(
        self,
        name: str,
        pids: dict[str, int],
        action: Callable[[], Awaitable[dict[str, Any]]],
        *workers: Worker,
    ) -> dict[str, Any] | None:
        """Run ``action`` as one window; keep its result dict under ``name``."""
        drops0 = self.netns.udp_drops()
        try:
            async with Profiles(self.pyspy, self.logdir, name, pids):
                with CpuWindow(pids) as window:
                    result = await action()
        except Exception as exc:
            self.errors.append(f"{name}: {exc!r}")
            log(f"  {name}: ERROR {exc!r}")
            for worker in workers:
                log(f"  {worker.tail()}")
            return None
        result.pop("id", None)
        result["server_cpu"] = window.cpu.get("server", 0.0)
        self.window_seconds += window.wall
        self.other_seconds += window.other
        self.results.setdefault(name, []).append(result)
        summary = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in result.items()
            if not isinstance(v, list | dict)
        )
        log(f"  {name}: {summary}")
        wire = result.get("wire")
        self.details.append(
            (
                name,
                f"{window.wall:.2f}",
                *(f"{window.cpu.get(role, 0):.2f}" for role in pids),
                f"{window.other:.2f}",
                str(window.faults.get("server", 0)),
                str(self.netns.udp_drops() - drops0),
                f"{wire / 1e6:.2f}" if wire else "-",
            )
        )
        self._roles = tuple(pids)
        return result

    def print_details(self) -> None:
        roles = getattr(self, "_roles", ())
        print_grid(
            "Measured windows (CPU seconds per process; other = the rest of the machine)",
            ("window", "wall s", *roles, "other", "server faults", "UDP drops", "wire MB"),
            self.details,
        )
        self.calibration.append(calibrate())
        before, after = self.calibration[0], self.calibration[-1]
        print(
            f"\nCPU calibration (3M-step Python loop): {before:.3f} s before the run, "
            f"{after:.3f} s after (0.080-0.098 s on the machine of the reference notes)."
        )
        capacity = self.window_seconds * (os.cpu_count() or 1)
        share = self.other_seconds / capacity if capacity else 0.0
        print(
            f"Other processes on the machine used {self.other_seconds:.1f} CPU-s during the "
            f"{self.window_seconds:.1f} s of measured windows ({share:.0%} of all CPUs)."
        )
        if share > 0.1:
            print(
                "WARNING: that load competes with the measured processes; figures (above all "
                "the ratios between windows measured at different times) are noisy. Rerun on "
                "a quiet machine."
            )
        if self.errors:
            print("\nErrors:")
            for error in self.errors:
                print(f"  {error}")


def calibrate() -> float:
    """Seconds for a fixed 3-million-step Python loop (median of 3): how fast this machine is
    right now. The reference notes measured 0.080-0.098 s on the machine of the anchors."""

    def loop() -> float:
        started = time.perf_counter()
        total = 0
        for i in range(3_000_000):
            total += i
        return time.perf_counter() - started

    return median([loop() for _ in range(3)])


# -- payloads --------------------------------------------------------------------------------

_FIRST = ["Ada", "Ben", "Chloe", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]
_LAST = ["Ng", "Okafor", "Silva", "Novak", "Berg", "Kim", "Rossi", "Haddad", "Moreau", "Sato"]
_CITIES = [
    ("Lisbon", "PT", 38.72, -9.14),
    ("Osaka", "JP", 34.69, 135.50),
    ("Lagos", "NG", 6.52, 3.38),
    ("Quito", "EC", -0.18, -78.47),
    ("Oslo", "NO", 59.91, 10.75),
]
_STATUS = ["active", "pending", "suspended", "closed"]
_TAGS = ["vip", "beta", "churn-risk", "newsletter", "mobile", "trial", "partner"]


def json_payload(size: int, seed: int = 42) -> str:
    """``json.dumps`` of realistic records (14 keys, nested objects), padded with spaces to
    exactly ``size`` characters (deterministic)."""
    rng = random.Random(seed)
    records: list[str] = []
    total = 2
    i = 0
    while total < size:
        city, country, lat, lon = rng.choice(_CITIES)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        record = json.dumps(
            {
                "id": i,
                "uuid": f"{rng.getrandbits(128):032x}",
                "name": f"{first} {last}",
                "email": f"{first.lower()}.{last.lower()}{i}@example.com",
                "age": rng.randint(18, 90),
                "created": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z",
                "status": rng.choice(_STATUS),
                "score": round(rng.random() * 100, 3),
                "balance": {"amount": round(rng.random() * 1e4, 2), "currency": "EUR"},
                "tags": rng.sample(_TAGS, rng.randint(0, 4)),
                "location": {
                    "city": city,
                    "country": country,
                    "lat": round(lat + rng.random(), 4),
                    "lon": round(lon + rng.random(), 4),
                },
                "verified": rng.random() < 0.5,
                "logins": rng.randint(0, 5000),
                "ip": ".".join(str(rng.randint(1, 254)) for _ in range(4)),
            }
        )
        records.append(record)
        total += len(record) + 2
        i += 1
    text = "[" + ", ".join(records) + "]"
    return text[:size] if len(text) > size else text + " " * (size - len(text))


def random_payload(size: int, seed: int = 7) -> str:
    """Base64 of seeded random bytes, cut to exactly ``size`` characters (incompressible
    apart from the base64 alphabet)."""
    raw = random.Random(seed).randbytes(size * 3 // 4 + 3)
    return base64.b64encode(raw).decode()[:size]


def digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()[:16] + f":{len(payload)}"


# -- statistics and output -------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """Percentile as the sorted-list index ``round(q * (n - 1))``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[round(q * (len(ordered) - 1))]


def median(values: Sequence[float]) -> float:
    return pct(values, 0.5)


def spread(values: Sequence[float], fmt: str = "{:.1f}") -> str:
    """``med [min-max]`` for repetitions, or the single value."""
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(median(values))} [{fmt.format(min(values))}-{fmt.format(max(values))}]"


@dataclass
class Row:
    """One line of the result table.

    ``ratio`` is computed so that the target reads ``ratio <= target`` (``le``) or
    ``ratio >= target`` (``ge``).
    """

    figure: str
    ours: str
    baseline: str
    ratio: float | None
    target: str
    ok: bool | None

    @classmethod
    def compare(
        cls,
        figure: str,
        ours: float | None,
        base: float | None,
        *,
        unit: str,
        base_name: str,
        higher_is_better: bool,
        target: float,
        invert: bool = False,
        fmt: str = "{:.2f}",
    ) -> Row:
        """``ratio = ours / base`` (``base / ours`` with ``invert``); the target is met when
        the ratio is ``>= target`` if ``higher_is_better`` else ``<= target``."""
        ours_text = f"{fmt.format(ours)} {unit}" if ours is not None else "ERR"
        base_text = f"{fmt.format(base)} {unit} ({base_name})" if base is not None else "ERR"
        if ours is None or base is None or not ours or not base:
            return cls(figure, ours_text, base_text, None, _target(higher_is_better, target), None)
        ratio = base / ours if invert else ours / base
        ok = ratio >= target if higher_is_better else ratio <= target
        return cls(figure, ours_text, base_text, ratio, _target(higher_is_better, target), ok)

    @classmethod
    def absolute(
        cls,
        figure: str,
        ours: float | None,
        *,
        unit: str,
        limit: float,
        baseline: str = "-",
        fmt: str = "{:.1f}",
    ) -> Row:
        """An absolute target ``ours <= limit``."""
        if ours is None:
            return cls(figure, "ERR", baseline, None, f"<= {limit:g} {unit}", None)
        ours_text = f"{fmt.format(ours)} {unit}"
        return cls(figure, ours_text, baseline, None, f"<= {limit:g} {unit}", ours <= limit)


def _target(higher_is_better: bool, target: float) -> str:
    return f"{'>=' if higher_is_better else '<='} {target:g}x"


def print_table(title: str, rows: Sequence[Row]) -> None:
    header = ("figure", "ours", "baseline", "ratio", "target", "result")
    body = [
        (
            r.figure,
            r.ours,
            r.baseline,
            f"{r.ratio:.2f}x" if r.ratio is not None else "-",
            r.target,
            "ERR" if r.ok is None and r.ours == "ERR" else ("PASS" if r.ok else "MISS"),
        )
        for r in rows
    ]
    print_grid(title, header, body)


def print_grid(title: str, header: Sequence[str], body: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for line in body:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)))
    sys.stdout.flush()


# -- worker side -----------------------------------------------------------------------------


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve_commands(handlers: dict[str, Callable[..., Any]]) -> None:
    """Worker main loop: run each command (concurrently) and answer it; stop on ``quit``."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()

    async def run(cmd: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": cmd.get("id")}
        try:
            args = {k: v for k, v in cmd.items() if k not in ("id", "op")}
            reply.update(await handlers[cmd["op"]](**args))
        except Exception as exc:
            reply["error"] = f"{cmd.get('op')}: {exc!r}"
        emit(reply)

    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        if cmd.get("op") == "quit":
            emit({"id": cmd.get("id")})
            break
        task = asyncio.ensure_future(run(cmd))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_until(predicate: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.02)


class PairLike(Protocol):
    """Two participants of one kind (``ours`` or ``sdk``) measured together."""

    kind: str

    @property
    def workers(self) -> tuple[Worker, ...]: ...


P = TypeVar("P", bound=PairLike)


async def drive_session(
    args: argparse.Namespace,
    netns: Netns,
    name: str,
    start_pair: Callable[[Run, str, ServerProcess, Path], Awaitable[P | None]],
    measure_all: Callable[[Run, list[P], argparse.Namespace], Awaitable[None]],
    report: Callable[[Run, argparse.Namespace, float], None],
) -> int:
    """Start the server and a pair per kind, measure, stop everything, report.

    Returns 1 if any measurement failed. Process logs are kept when asked, on errors, or when
    profiling.
    """
    logdir = Path(tempfile.mkdtemp(prefix=f"lkbench-{name}-"))
    run = Run(logdir, args.py_spy, netns)
    server = ServerProcess(logdir, NS_ADDRESS)
    started = time.perf_counter()
    pairs: list[P] = []
    try:
        await server.start()
        log(f"server {server.url} (pid {server.pid}), ICE on {NS_ADDRESS}, netns {netns.name}")
        for kind in ["ours"] if args.skip_sdk else ["ours", "sdk"]:
            pair = await start_pair(run, kind, server, logdir)
            if pair is not None:
                pairs.append(pair)
        log("measuring")
        await measure_all(run, pairs, args)
    finally:
        for pair in pairs:
            for worker in pair.workers:
                await worker.stop()
        await server.stop()
    report(run, args, time.perf_counter() - started)
    if args.keep_logs or run.errors or args.py_spy:
        print(f"\nprocess logs kept in {logdir}")
    else:
        shutil.rmtree(logdir, ignore_errors=True)
    return 1 if run.errors else 0


def run_in_namespace(prefix: str, drive: Callable[[Netns], Awaitable[int]]) -> NoReturn:
    """Enter a fresh network namespace, run ``drive`` in it, delete it, exit with its status."""
    netns = Netns(prefix)
    netns.enter()
    install_exit_handlers(netns)
    try:
        status = asyncio.run(drive(netns))
    finally:
        netns.delete()
    sys.exit(status)
