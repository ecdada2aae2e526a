"""Control which local addresses aiortc offers as ICE host candidates.

aiortc gathers its host candidates through :func:`aioice.ice.get_host_addresses`, which
returns every address of every interface except ``127.0.0.1`` and ``::1``. That is wrong for
two uses of this project:

* purely local use (tests, a dev server bound to ``127.0.0.1``), where loopback is the *only*
  address that should ever be offered, and
* sandboxed runs where WebRTC traffic must stay on one chosen interface (for example the veth
  address of a network namespace).

This module replaces that function, once and in a controlled way, by a wrapper that consults an
explicit address list:

* :func:`use_host_addresses` is a context manager that restricts gathering for the code running
  inside it. The restriction lives in a :class:`contextvars.ContextVar`, so it follows the
  current task (and the tasks aiortc starts from it) and two peers in the same process can use
  different addresses. Wrap ``pc.setLocalDescription(...)`` in it: that is where aiortc gathers.
* :func:`set_default_host_addresses` sets a process-wide restriction used when no context
  restriction is active.
* With neither set, aioice's own behaviour applies unchanged.

Listed addresses are offered exactly as given, loopback included. Example::

    from livekit_rpc import ice

    with ice.use_host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createAnswer())

While a restriction is active, :func:`remote_candidate_allowed` tells whether a remote candidate
may be handed to aioice: multicast DNS (``*.local``) candidates are refused because resolving
them would send multicast queries on every interface.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import threading
from collections.abc import Callable, Iterator, Sequence

import aioice.ice

__all__ = [
    "active_host_addresses",
    "default_host_addresses_for_bind",
    "install",
    "is_loopback",
    "normalize_addresses",
    "remote_candidate_allowed",
    "set_default_host_addresses",
    "use_host_addresses",
]

_HostAddressFn = Callable[..., list[str]]

_context_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "livekit_rpc_ice_host_addresses", default=None
)
_default_addresses: tuple[str, ...] | None = None
_original: _HostAddressFn | None = None
_lock = threading.Lock()


def normalize_addresses(addresses: Sequence[str]) -> tuple[str, ...]:
    """Check that ``addresses`` is a non-empty list of IP literals; return them normalized.

    :raises ValueError: if an entry is not an IP address or the list is empty.
    :raises TypeError: if ``addresses`` is a single string.
    """
    if isinstance(addresses, str):
        raise TypeError("addresses must be a sequence of strings, not a string")
    result = []
    for address in addresses:
        # Raises ValueError for anything that is not an IP literal.
        result.append(str(ipaddress.ip_address(address)))
    if not result:
        raise ValueError("at least one host address is required")
    return tuple(result)


def _patched_get_host_addresses(use_ipv4: bool = True, use_ipv6: bool = False) -> list[str]:
    addresses = active_host_addresses()
    if addresses is None:
        assert _original is not None
        return _original(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    selected = []
    for address in addresses:
        version = ipaddress.ip_address(address).version
        if (version == 4 and use_ipv4) or (version == 6 and use_ipv6):
            selected.append(address)
    return selected


def install() -> None:
    """Install the address hook into aioice. Idempotent and thread-safe.

    Calling it has no visible effect until a restriction is set: without one the hook defers to
    aioice's original function. The other functions of this module call it themselves.
    """
    global _original
    with _lock:
        current = aioice.ice.get_host_addresses
        if current is _patched_get_host_addresses:
            return
        _original = current
        aioice.ice.get_host_addresses = _patched_get_host_addresses


def set_default_host_addresses(addresses: Sequence[str] | None) -> None:
    """Restrict host candidates process-wide to ``addresses``; ``None`` lifts the restriction.

    A restriction set with :func:`use_host_addresses` takes precedence in its context.

    :raises ValueError: if an entry is not an IP address or the list is empty.
    """
    global _default_addresses
    install()
    _default_addresses = None if addresses is None else normalize_addresses(addresses)


@contextlib.contextmanager
def use_host_addresses(addresses: Sequence[str] | None) -> Iterator[None]:
    """Restrict host candidates gathered inside this context to ``addresses``.

    ``None`` means "no context restriction" (the process default, if any, applies). The value
    is stored in a context variable, so it covers tasks created inside the block too.

    :raises ValueError: if an entry is not an IP address or the list is empty.
    """
    install()
    value = None if addresses is None else normalize_addresses(addresses)
    token = _context_addresses.set(value)
    try:
        yield
    finally:
        _context_addresses.reset(token)


def active_host_addresses() -> tuple[str, ...] | None:
    """The restriction in force here: the context one, else the process default, else ``None``."""
    addresses = _context_addresses.get()
    if addresses is not None:
        return addresses
    return _default_addresses


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback IP literal or the name ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_host_addresses_for_bind(bind_host: str) -> tuple[str, ...] | None:
    """The host candidates a server bound to ``bind_host`` should offer by default.

    A loopback bind gives that loopback address (``localhost`` gives ``127.0.0.1``), a specific
    address gives itself, and a wildcard (``0.0.0.0``, ``::``, empty) or a host name gives
    ``None``, meaning aioice's usual interface scan.
    """
    if bind_host == "localhost":
        return ("127.0.0.1",)
    try:
        address = ipaddress.ip_address(bind_host)
    except ValueError:
        return None
    if address.is_unspecified:
        return None
    return (str(address),)


def remote_candidate_allowed(candidate: str) -> bool:
    """Whether a remote candidate line may be given to aioice under the active restriction.

    ``candidate`` is an SDP candidate attribute value, with or without the ``candidate:``
    prefix. Without a restriction everything is allowed. With one, candidates whose address
    is a multicast DNS name (``*.local``) are refused, since resolving them would send
    multicast traffic outside the chosen addresses. Unparsable lines are refused.
    """
    if active_host_addresses() is None:
        return True
    text = candidate.split(":", 1)[1] if candidate.startswith("candidate:") else candidate
    fields = text.split()
    if len(fields) < 6:
        return False
    host = fields[4]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
