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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from sandbox.errors import OutboundRefused, OutboundTimeout

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


def _pinned_conn(conn: HTTPConnection, target: PinnedTarget, connect: Callable[[], Any]) -> Any:
    if conn.host.lower() != target.host:
        raise OSError("refused: not the checked node host")
    named = conn._dns_host
    conn._dns_host = target.address  # the socket goes here; TLS still checks `host`
    try:
        return connect()
    finally:
        conn._dns_host = named


class _PinnedHTTPConnection(HTTPConnection):
    pdx_target: ClassVar[PinnedTarget]

    def _new_conn(self) -> socket.socket:
        return cast(socket.socket, _pinned_conn(self, self.pdx_target, super()._new_conn))


class _PinnedHTTPSConnection(HTTPSConnection):
    pdx_target: ClassVar[PinnedTarget]

    def _new_conn(self) -> socket.socket:
        return cast(socket.socket, _pinned_conn(self, self.pdx_target, super()._new_conn))


def _pinned_classes(target: PinnedTarget) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pools whose sockets go to `target.address`, whatever the URL's host."""
    http_conn = type("PinnedHTTPConnection", (_PinnedHTTPConnection,), {"pdx_target": target})
    https_conn = type("PinnedHTTPSConnection", (_PinnedHTTPSConnection,), {"pdx_target": target})
    http_pool = type("PinnedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
    https_pool = type("PinnedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
    return {"http": http_pool, "https": https_pool}


class _PinnedAdapter(HTTPAdapter):
    """Sends only to the checked host, over sockets to the checked address, with timeouts."""

    def __init__(self, target: PinnedTarget, policy: OutboundPolicy) -> None:
        self._target = target
        self._timeout = (policy.connect_timeout_s, policy.read_timeout_s)
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pinned_classes(self._target)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        raise requests.ConnectionError("refused: node connections take no proxy")

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        host = (urlsplit(request.url or "").hostname or "").lower()
        if host != self._target.host:
            raise requests.ConnectionError("refused: not the checked node host")
        bound = self._timeout
        if timeout is not None:  # never longer than the policy's
            c, r = timeout if isinstance(timeout, tuple) else (timeout, timeout)
            bound = (min(c or bound[0], bound[0]), min(r or bound[1], bound[1]))
        return super().send(request, stream=stream, timeout=bound, verify=verify, cert=cert)


def pinned_session(target: PinnedTarget, policy: OutboundPolicy) -> requests.Session:
    """A session that talks to `target` only, at its checked address, with the timeouts."""
    session = requests.Session()
    session.trust_env = False  # no proxies or .netrc from the environment
    session.max_redirects = 0
    adapter = _PinnedAdapter(target, policy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


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
