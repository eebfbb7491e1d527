"""RFC 8705 under PDX_MTLS=1: tokens bound to the client certificate they were issued over."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from crypto.ca import CertificateAuthority, IssuedCertificate
from gateway.app import create_app
from gateway.platform import Platform, initialise


class PresentedCertificate:
    """Stands in for the TLS layer: puts a client certificate into the ASGI TLS extension."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.cert: IssuedCertificate | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.cert is not None:
            chain = [self.cert.cert_pem.decode()]
            scope.setdefault("extensions", {})["tls"] = {"client_cert_chain": chain}
        await self.app(scope, receive, send)


@pytest.fixture
def mtls(platform: Platform, tmp_path: Path) -> Iterator[tuple[TestClient, Any, Any]]:
    platform.settings = platform.settings.replace(mtls=True)
    creds = initialise(platform)
    assert creds is not None
    ca = CertificateAuthority.create(now=datetime.now(UTC))
    wrapper = PresentedCertificate(create_app(platform))
    with TestClient(wrapper) as client:  # type: ignore[arg-type]
        yield client, wrapper, (ca, creds)


def _token(api: TestClient, c: dict[str, Any]) -> Any:
    return api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    )


def test_tokens_are_bound_to_the_certificate_they_were_issued_over(mtls: Any) -> None:
    api, tls, (ca, creds) = mtls
    c = creds["provider-transport"]
    mine = ca.issue_client(c["org_id"], c["client_id"])
    tls.cert = None
    assert _token(api, c).status_code == 401  # no certificate, no token
    tls.cert = ca.issue_client(creds["auditor"]["org_id"], creds["auditor"]["client_id"])
    assert _token(api, c).status_code == 401  # a certificate naming someone else
    tls.cert = mine
    r = _token(api, c)
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["cnf"]["x5t#S256"] == mine.fingerprint_s256
    auth = {"Authorization": f"Bearer {access}"}
    assert api.get("/v1/me", headers=auth).status_code == 200
    # Same client, another certificate (e.g. a stolen token replayed elsewhere): refused.
    tls.cert = ca.issue_client(c["org_id"], c["client_id"])
    refused = api.get("/v1/me", headers=auth)
    assert refused.status_code == 401 and "bound to another" in refused.json()["detail"]
    tls.cert = None
    assert api.get("/v1/me", headers=auth).status_code == 401
