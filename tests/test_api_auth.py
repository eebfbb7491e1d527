"""Token endpoint, JWKS, and the rule that every non-public route needs a valid token."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import select

import audit
import exchange
from gateway.app import PUBLIC_PATHS
from gateway.platform import Platform
from gateway.principals import Principals
from tests.conftest import login
from tests.helpers.api import PROBLEM
from tests.helpers.clocks import ManualMonotonic


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_client_credentials_grant_issues_a_short_eddsa_token(
    api: TestClient, creds: dict[str, Any]
) -> None:
    c = creds["provider-transport"]
    r = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    )
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "EdDSA"
    keys = api.get("/.well-known/jwks.json").json()["keys"]
    assert header["kid"] in {k["kid"] for k in keys}
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == header["kid"])).key
    claims = jwt.decode(body["access_token"], key, algorithms=["EdDSA"], audience="pdx-api")
    assert claims["sub"] == c["client_id"] and claims["org"] == c["org_id"]
    assert claims["exp"] - claims["iat"] == 900


def test_http_basic_client_authentication(api: TestClient, creds: dict[str, Any]) -> None:
    c = creds["auditor"]
    basic = base64.b64encode(f"{c['client_id']}:{c['client_secret']}".encode()).decode()
    r = api.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert r.status_code == 200
    me = api.get("/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert me.json()["roles"] == ["auditor"]


@pytest.mark.parametrize(
    ("data", "status", "error"),
    [
        (
            {"grant_type": "client_credentials", "client_id": "pdx-0", "client_secret": "x"},
            401,
            "invalid_client",
        ),
        (
            {"grant_type": "password", "client_id": "a", "client_secret": "b"},
            400,
            "unsupported_grant_type",
        ),
        ({"grant_type": "client_credentials"}, 400, "invalid_request"),
    ],
)
def test_token_errors_are_problem_documents_with_oauth_error(
    api: TestClient, data: dict[str, str], status: int, error: str
) -> None:
    r = api.post("/v1/auth/token", data=data)
    assert r.status_code == status
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["error"] == error


def test_wrong_secret_is_refused_and_audited(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    c = creds["provider-health"]
    r = api.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"] + "x",
        },
    )
    assert r.status_code == 401
    with platform.session() as s:
        rec = s.scalars(
            select(audit.AuditRecord).where(audit.AuditRecord.event_type == "auth.token_denied")
        ).one()
    assert rec.result == "deny" and rec.object_id == c["client_id"]


def test_token_endpoint_wants_form_encoding(api: TestClient) -> None:
    r = api.post("/v1/auth/token", json={"grant_type": "client_credentials"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_every_non_public_route_requires_a_token(api: TestClient) -> None:
    routes = [r for r in api.app.routes if isinstance(r, APIRoute)]
    assert routes
    checked = 0
    for route in routes:
        if route.path in PUBLIC_PATHS:
            continue
        path = route.path.replace("{dataset_id}", "x").replace("{org_id}", "x")
        for method in route.methods:
            r = api.request(method, path)
            assert r.status_code == 401, (method, route.path, r.status_code)
            assert r.headers["content-type"].startswith(PROBLEM)
            assert r.headers["www-authenticate"].startswith("Bearer")
            checked += 1
    assert checked >= 7


def _forge(api: TestClient, creds: dict[str, Any], mutate: Any) -> str:
    good = login(api, creds, "provider-transport")["Authorization"].split()[1]
    head_b64, payload_b64, sig = good.split(".")
    header = json.loads(base64.urlsafe_b64decode(head_b64 + "=="))
    payload = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    header, payload, sig = mutate(header, payload, sig)
    return ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), sig]
    )


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h, p, s: ({**h, "alg": "none"}, p, ""), id="alg-none"),
        pytest.param(lambda h, p, s: (h, {**p, "org": "another-org"}, s), id="tampered-payload"),
        pytest.param(lambda h, p, s: ({**h, "kid": "unknown"}, p, s), id="unknown-kid"),
        pytest.param(lambda h, p, s: (h, {**p, "aud": "other-api"}, s), id="wrong-audience"),
        pytest.param(lambda h, p, s: (h, p, s[:-4] + "AAAA"), id="bad-signature"),
    ],
)
def test_forged_tokens_are_refused(api: TestClient, creds: dict[str, Any], mutate: Any) -> None:
    token = _forge(api, creds, mutate)
    r = api.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401
    assert r.json()["type"].endswith("/invalid-token")


def test_hs256_with_public_key_as_secret_is_refused(api: TestClient, creds: dict[str, Any]) -> None:
    jwk = api.get("/.well-known/jwks.json").json()["keys"][0]
    now = int(datetime.now(UTC).timestamp())
    claims = {
        "iss": "pdx",
        "aud": "pdx-api",
        "sub": creds["auditor"]["client_id"],
        "org": creds["auditor"]["org_id"],
        "iat": now,
        "nbf": now,
        "exp": now + 60,
        "jti": "x",
    }
    token = jwt.encode(claims, jwk["x"], algorithm="HS256", headers={"kid": jwk["kid"]})
    r = api.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_expired_and_not_yet_valid_tokens_are_refused(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    headers = login(api, creds, "auditor")
    real = platform.clock
    platform.clock = lambda: real() + timedelta(minutes=16)
    assert api.get("/v1/me", headers=headers).status_code == 401
    platform.clock = lambda: real() - timedelta(minutes=5)
    assert api.get("/v1/me", headers=headers).status_code == 401
    platform.clock = real
    assert api.get("/v1/me", headers=headers).status_code == 200


def test_disabled_client_token_stops_working(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    clock = ManualMonotonic()
    app: Any = api.app
    app.state.principals = Principals(platform.session, ttl_s=1.0, clock=clock)
    headers = login(api, creds, "enterprise-fintech")
    assert api.get("/v1/me", headers=headers).status_code == 200
    with platform.session() as s, s.begin():
        s.get(exchange.Client, creds["enterprise-fintech"]["client_id"]).active = False  # type: ignore[union-attr]
    # Changed behind this process's back (as another gateway would): the cached view
    # serves until the principal cache's freshness bound (1 s), the next request after it
    # sees the change.
    clock.advance(0.9)
    assert api.get("/v1/me", headers=headers).status_code == 200
    clock.advance(0.1)
    assert api.get("/v1/me", headers=headers).status_code == 401


def test_malformed_authorization_headers(api: TestClient) -> None:
    for value in ("Basic abc", "Bearer", "Bearer not.a.jwt", "Bearer a.b"):
        r = api.get("/v1/me", headers={"Authorization": value})
        assert r.status_code == 401, value


def test_successful_logins_are_audited(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    login(api, creds, "auditor")
    with platform.session() as s:
        rec = s.scalars(
            select(audit.AuditRecord).where(audit.AuditRecord.event_type == "auth.token_issued")
        ).one()
    assert rec.result == "success" and rec.subject_id == creds["auditor"]["client_id"]


def test_token_request_size_is_capped(api: TestClient) -> None:
    r = api.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": "a", "client_secret": "x" * 9000},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = api.post(
        "/v1/auth/token",
        content=b"grant_type=client_credentials&grant_type=client_credentials",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400


def test_nul_and_control_characters_get_clean_errors_and_are_audited(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    r = api.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": "a\x00b", "client_secret": "x"},
    )
    assert r.status_code == 401
    r = api.get("/v1/datasets/x%00")
    assert r.status_code in (400, 401)
    headers = login(api, creds, "auditor")
    r = api.get("/v1/datasets/x%00", headers=headers)
    assert r.status_code == 400 and r.json()["type"].endswith("/invalid-request")
    r = api.get("/v1/datasets", params={"owner_org": "a\x00"}, headers=headers)
    assert r.status_code == 400
    with platform.session() as s:
        denied = list(
            s.scalars(select(audit.AuditRecord).where(audit.AuditRecord.result == "deny"))
        )
    assert len(denied) >= 2  # the bad login and the unauthenticated probe


def _grant(api: TestClient, c: dict[str, Any], **fields: str) -> Any:
    return api.post(
        "/v1/auth/token",
        data={"client_id": c["client_id"], "client_secret": c["client_secret"], **fields},
    )


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(
    api: TestClient, creds: dict[str, Any]
) -> None:
    c = creds["provider-transport"]
    first = _grant(api, c, grant_type="client_credentials").json()
    assert first["refresh_token"].startswith("pdxr_") and first["refresh_expires_in"] > 0
    second = _grant(api, c, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second.status_code == 200, second.text
    second_body = second.json()
    assert second_body["refresh_token"] != first["refresh_token"]
    for body in (first, second_body):
        me = api.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200
    # The first refresh token again: someone copied it. The whole login dies.
    reused = _grant(api, c, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    assert "revoked" in reused.json()["detail"]
    after = _grant(api, c, grant_type="refresh_token", refresh_token=second_body["refresh_token"])
    assert after.status_code == 400 and after.json()["error"] == "invalid_grant"
    for body in (first, second_body):
        me = api.get("/v1/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 401 and "revoked" in me.json()["detail"]
    # A fresh login is unaffected.
    fresh = _grant(api, c, grant_type="client_credentials").json()
    ok = api.get("/v1/me", headers={"Authorization": f"Bearer {fresh['access_token']}"})
    assert ok.status_code == 200


def test_refresh_token_is_bound_to_its_client(api: TestClient, creds: dict[str, Any]) -> None:
    mine = _grant(api, creds["provider-transport"], grant_type="client_credentials").json()
    theirs = _grant(
        api,
        creds["enterprise-fintech"],
        grant_type="refresh_token",
        refresh_token=mine["refresh_token"],
    )
    assert theirs.status_code == 400 and theirs.json()["error"] == "invalid_grant"
    for bad in ("", "pdxr_unknown", "not-a-token"):
        r = _grant(api, creds["provider-transport"], grant_type="refresh_token", refresh_token=bad)
        assert r.status_code == 400 and r.headers["content-type"].startswith(PROBLEM)


def test_revoked_access_and_refresh_tokens_stop_working(
    api: TestClient, creds: dict[str, Any]
) -> None:
    c = creds["enterprise-fintech"]
    a = _grant(api, c, grant_type="client_credentials").json()
    b = _grant(api, c, grant_type="client_credentials").json()
    auth = {"client_id": c["client_id"], "client_secret": c["client_secret"]}
    r = api.post("/v1/auth/revoke", data={**auth, "token": a["access_token"]})
    assert r.status_code == 200
    me = api.get("/v1/me", headers={"Authorization": f"Bearer {a['access_token']}"})
    assert me.status_code == 401
    # Another token of the same client is untouched; revoking its refresh token kills both.
    assert api.get("/v1/me", headers={"Authorization": f"Bearer {b['access_token']}"}).is_success
    api.post("/v1/auth/revoke", data={**auth, "token": b["refresh_token"]})
    assert (
        api.get("/v1/me", headers={"Authorization": f"Bearer {b['access_token']}"}).status_code
        == 401
    )
    again = _grant(api, c, grant_type="refresh_token", refresh_token=b["refresh_token"])
    assert again.status_code == 400
    # Unknown tokens: 200 (RFC 7009 §2.2); wrong credentials: 401.
    assert api.post("/v1/auth/revoke", data={**auth, "token": "whatever"}).status_code == 200
    wrong = api.post(
        "/v1/auth/revoke", data={"client_id": c["client_id"], "client_secret": "x", "token": "t"}
    )
    assert wrong.status_code == 401


def test_every_v1_route_passes_the_policy_enforcement_point(api: TestClient) -> None:
    """Zero trust: no /v1 route may skip the decision point (the token routes are public)."""
    from gateway.app import PUBLIC_PATHS
    from gateway.pep import enforcements

    missing = [
        (sorted(r.methods), r.path)
        for r in api.app.routes
        if isinstance(r, APIRoute)
        and r.path.startswith("/v1/")
        and r.path not in PUBLIC_PATHS
        and not enforcements(r.dependant)
    ]
    assert missing == []
