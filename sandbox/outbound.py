"""Outbound connections to provider nodes: address policy, DNS pinning, timeouts, deadlines.

A provider names its node by URL, so the platform connecting there is a server-side
request on an attacker's behalf (CWE-918, SSRF). Every connection the platform makes to
a node goes through this module:

1. `OutboundPolicy.resolve` parses the URL (http/https, no user info), resolves the host
   once and checks *every* address it resolves to: loopback, link-local, private
   (RFC 1918, RFC 6598 shared space, RFC 4193 ULA), unspecified, multicast, reserved and
   the cloud metadata endpoints are refused unless a network the deployment configured
   (`PDX_NODE_ALLOW_NETWORKS`) contains the address. Metadata endpoints are refused
   even then: no deployment needs its node to be the instance metadata service.
2. `pinned_session` returns a `requests` session whose connections go to the checked
   address only (the hostname stays for TLS SNI and certificate checks), so a second
   DNS answer cannot switch the target (DNS rebinding); a request to any other host is
   refused. Proxies from the environment are ignored, there are no retries, and every
   request has a connect and a read timeout.
3. `within` runs a blocking call against a deadline on a helper thread, so no caller
   waits longer than the deadline, whatever the peer does.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from sandbox.errors import OutboundRefused, OutboundTimeout

if TYPE_CHECKING:
    import requests

__all__ = [
    "METADATA_ADDRESSES",
    "OutboundPolicy",
    "PinnedTarget",
    "pad_until",
    "pinned_session",
    "within",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
# Not global but not flagged by `ipaddress` as private on every Python: RFC 6598.
_SHARED = ipaddress.ip_network("100.64.0.0/10")

T = TypeVar("T")


@dataclass(frozen=True)
class PinnedTarget:
    """A checked node URL: its host as named, and the one address connections go to."""

    scheme: str
    host: str
    port: int
    address: str


@dataclass(frozen=True)
class OutboundPolicy:
    """Which node addresses are allowed, and how long a connection may take."""

    allow_networks: tuple[IPNetwork, ...] = ()
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 120.0
    resolver: Callable[[str, int], Iterable[str]] | None = field(default=None, compare=False)

    @classmethod
    def from_strings(
        cls, networks: Iterable[str], *, connect_timeout_s: float, read_timeout_s: float
    ) -> OutboundPolicy:
        """Build from CIDR strings; `ValueError` for a malformed one."""
        return cls(
            tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip()),
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
        )

    def allows(self, address: IPAddress) -> bool:
        """Whether the platform may connect to `address` under this policy."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        if address in METADATA_ADDRESSES:
            return False
        if any(address.version == n.version and address in n for n in self.allow_networks):
            return True
        return (
            address.is_global
            and not address.is_multicast
            and not address.is_reserved
            and not (address.version == 4 and address in _SHARED)
        )

    def resolve(self, url: str) -> PinnedTarget:
        """Check `url` and pick the address to pin; `OutboundRefused` when not allowed.

        Every address the name resolves to must be allowed, not only the first, so an
        answer mixing a public and a private address is refused.
        """
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise OutboundRefused("the node's address is not allowed") from None
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host or parts.username is not None:
            raise OutboundRefused("the node's address is not allowed")
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(a) for a in self._lookup(host, port)]
        except (OSError, ValueError, UnicodeError):
            addresses = []
        if not addresses or not all(self.allows(a) for a in addresses):
            raise OutboundRefused("the node's address is not allowed")
        return PinnedTarget(parts.scheme, host, port, str(addresses[0]))

    def _lookup(self, host: str, port: int) -> list[str]:
        if self.resolver is not None:
            return list(self.resolver(host, port))
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        # Strip an IPv6 scope id ("fe80::1%eth0"): the address itself is what is checked.
        return [str(info[4][0]).split("%", 1)[0] for info in infos]


# -- pinned connections --------------------------------------------------------------------


def pinned_session(target: PinnedTarget, policy: OutboundPolicy) -> requests.Session:
    """A session that talks to `target` only, at its checked address, with the timeouts."""
    # requests and urllib3 are imported when a node is connected to (`sandbox._pinned_http`),
    # not with this module: every server and `pdx` process imports the policy, few connect.
    from sandbox._pinned_http import pinned_session as pinned

    return pinned(target, policy)


# -- deadlines -----------------------------------------------------------------------------


def within(deadline_s: float, fn: Callable[[], T], *, name: str = "pdx-outbound") -> T:
    """`fn()` on a helper thread; `OutboundTimeout` if it has not finished in `deadline_s`.

    The helper is a daemon thread and is left to finish on its own (its sockets carry
    their own timeouts); nothing the caller holds waits for it.
    """
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    try:
        return future.result(timeout=deadline_s)
    except TimeoutError:
        raise OutboundTimeout("the node did not answer in time") from None


def pad_until(
    started: float, seconds: float, *, clock: Callable[[], float] = time.monotonic
) -> None:
    """Sleep until `started + seconds`, so failures take the same time (no port-state timing)."""
    remaining = started + seconds - clock()
    if remaining > 0:
        time.sleep(remaining)
