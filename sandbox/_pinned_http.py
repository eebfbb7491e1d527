"""Pinned `requests` sessions to a checked node address (see `sandbox.outbound`).

Kept apart from the policy so that requests and urllib3 are imported only when the
platform connects to a node: `sandbox.outbound.pinned_session` imports this module then.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

if TYPE_CHECKING:
    from sandbox.outbound import OutboundPolicy, PinnedTarget

__all__ = ["pinned_session"]


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
