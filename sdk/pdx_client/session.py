"""An authenticated session: client-credentials tokens refreshed before expiry, mTLS, problems."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from typing import Any

import httpx

from pdx_client._pages import read_page
from pdx_client.errors import ApiError, PdxError, TransportError

__all__ = ["BearerAuth", "Session"]

PROBLEM = "application/problem+json"
# Renew this long before the access token's `expires_in` runs out (tokens last ≤ 15 min).
REFRESH_MARGIN_S = 60.0


def _problem(response: httpx.Response) -> PdxError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return ApiError(
            response.text[:200].strip() or response.reason_phrase,
            type="about:blank",
            title=response.reason_phrase,
            status=response.status_code,
        )
    # OAuth token errors (RFC 6749 §5.2) carry `error`/`error_description` beside the problem.
    detail = body.get("detail") or body.get("error_description") or response.reason_phrase
    ext = {k: v for k, v in body.items() if k not in ("type", "title", "detail", "status")}
    return ApiError(
        str(detail),
        type=str(body.get("type", "about:blank")),
        title=str(body.get("title", response.reason_phrase)),
        status=response.status_code,
        extensions=ext,
    )


class BearerAuth(httpx.Auth):
    """A session's token on another httpx client's requests (`httpx.Client(auth=...)`).

    Tools that speak HTTP themselves (the audit monitor) get the session's token
    bookkeeping: a login when needed, renewal before expiry, one fresh login on a 401.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._session._ensure_token()}"
        response = yield request
        if response.status_code == 401:
            self._session.login()
            request.headers["Authorization"] = f"Bearer {self._session._ensure_token()}"
            yield request


class Session:
    """One organisation's client, logged in with client credentials (RFC 6749 §4.4).

    `cert`: `(certificate, key)` PEM paths for mutual TLS (the token is then bound to
    it, RFC 8705). `transport`: any httpx transport (tests pass the app's). `http`: an
    httpx client to send through instead of a new one (its base URL and TLS settings
    apply; `close()` leaves it open to its owner).
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        cert: tuple[str, str] | None = None,
        verify: bool | str = True,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        http: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id
        self._secret = client_secret
        self._clock = clock
        self._token: str | None = None
        self._refresh: str | None = None
        self._expires_at = 0.0
        self._owned = http is None
        self.http = http or httpx.Client(
            base_url=self.url, cert=cert, verify=verify, timeout=timeout, transport=transport
        )

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owned:
            self.http.close()

    # -- tokens --------------------------------------------------------------------------

    def _grant(self, form: dict[str, str]) -> None:
        form = {**form, "client_id": self.client_id, "client_secret": self._secret}
        r = self._send("POST", "/v1/auth/token", data=form, auth=False)
        body = r.json()
        self._token = body["access_token"]
        self._refresh = body.get("refresh_token")
        self._expires_at = self._clock() + float(body.get("expires_in", 300))

    def login(self) -> None:
        """A fresh login (client credentials)."""
        self._grant({"grant_type": "client_credentials"})

    def _ensure_token(self) -> str:
        if self._token is None:
            self.login()
        elif self._clock() >= self._expires_at - REFRESH_MARGIN_S:
            try:
                if self._refresh is None:
                    raise ApiError("no refresh token", status=400)
                self._grant({"grant_type": "refresh_token", "refresh_token": self._refresh})
            except ApiError:
                self.login()  # the login's family ended (revoked, expired): start a new one
        assert self._token is not None
        return self._token

    @property
    def auth(self) -> BearerAuth:
        """The token of this session for another httpx client (never for `self.http`)."""
        return BearerAuth(self)

    @property
    def token_expires_in(self) -> float:
        return max(0.0, self._expires_at - self._clock())

    # -- requests ------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, auth: bool = True, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", None) or {})
        if auth:
            headers["Authorization"] = f"Bearer {self._ensure_token()}"
        try:
            r = self.http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{self.url} not reachable: {exc}", title="Server not reachable"
            ) from None
        if r.status_code >= 400:
            raise _problem(r)
        return r

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Send with a valid token; a problem answer raises `ApiError`."""
        try:
            return self._send(method, path, **kw)
        except ApiError as exc:
            if exc.status != 401 or "files" in kw:
                raise
            self.login()  # the token was revoked or the key rotated: once more, fresh
            return self._send(method, path, **kw)

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, json: Any = None, **kw: Any) -> Any:
        return self.request("POST", path, json=json, **kw).json()

    def public(self, path: str) -> httpx.Response:
        """A public route (checkpoint, verifier key): no token sent."""
        return self._send("GET", path, auth=False)

    def iterate(self, path: str, *, limit: int = 100, **params: Any) -> Iterator[Any]:
        """Every item of a list route, page by page, whatever its pagination shape."""
        query = {k: v for k, v in params.items() if v is not None}
        r = self.request("GET", path, params={"limit": limit, **query})
        while True:
            items, nxt, _ = read_page(r)
            yield from items
            if not nxt or not items:
                return
            r = self.request("GET", nxt)
