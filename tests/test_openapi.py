"""Issue 15 item 5: the OpenAPI fits clients (security, problems, ids, local docs)."""

from __future__ import annotations

import base64
import json
import re
from typing import Any
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from gateway.app import PUBLIC_PATHS
from tests.conftest import login

METHODS = ("get", "put", "post", "delete", "patch")
PROBLEM_JSON = "application/problem+json"


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_the_schema_is_valid_openapi(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    validate(schema)  # openapi-spec-validator: raises on any violation
    assert schema["openapi"].startswith("3.1")


def test_every_operation_is_secured_or_marked_public_and_answers_problems(
    api: TestClient,
) -> None:
    schema = api.get("/openapi.json").json()
    flows = schema["components"]["securitySchemes"]["oauth2"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "/v1/auth/token"
    ops = operations(schema)
    assert len(ops) > 50
    for path, method, op in ops:
        where = f"{method.upper()} {path}"
        if op.get("x-pdx-public"):
            assert op["security"] == [], where
            assert path in PUBLIC_PATHS, where
        else:
            assert op["security"] == [{"oauth2": []}], where
        problems = [
            status
            for status, response in op["responses"].items()
            if status[0] in "45" and PROBLEM_JSON in response.get("content", {})
        ]
        assert problems, where
    public = {path for path, _, op in ops if op.get("x-pdx-public")}
    assert "/v1/auth/token" in public and "/v1/computations" not in public


def test_operation_ids_are_stable_and_unique(api: TestClient) -> None:
    ops = operations(api.get("/openapi.json").json())
    ids = [op["operationId"] for _, _, op in ops]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+_[a-z0-9_]+", i) for i in ids), ids
    by_route = {f"{m} {p}": op["operationId"] for p, m, op in ops}
    assert by_route["post /v1/computations/{computation_id}/approve-run"] == (
        "computations_approve_run"
    )
    assert by_route["get /v1/datasets"] == "datasets_list_datasets"


def test_no_operation_answers_a_bare_array_or_an_untyped_object_for_lists(
    api: TestClient,
) -> None:
    schema = api.get("/openapi.json").json()
    schemas = schema["components"]["schemas"]
    for path, method, op in operations(schema):
        ok = op["responses"].get("200") or op["responses"].get("201") or {}
        body = ok.get("content", {}).get("application/json", {}).get("schema", {})
        assert body.get("type") != "array", f"{method.upper()} {path} answers a bare array"
        ref = body.get("$ref", "")
        if ref.split("/")[-1].startswith("Page_"):
            page = schemas[ref.split("/")[-1]]
            assert set(page["properties"]) == {"items", "total", "next"}


def test_docs_are_served_from_local_assets(api: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        r = api.get(page)
        assert r.status_code == 200
        scripts = re.findall(r'src="([^"]+)"', r.text) + re.findall(r'href="([^"]+)"', r.text)
        assets = [s for s in scripts if s.endswith((".js", ".css"))]
        assert assets, page
        for asset in assets:
            assert not urlsplit(asset).netloc, f"{page} loads {asset} from another host"
            got = api.get(asset)
            assert got.status_code == 200 and len(got.content) > 10_000, asset
        assert "fonts.googleapis" not in r.text
    assert "oauth2RedirectUrl" in api.get("/docs").text
    assert api.get("/docs/oauth2-redirect").status_code == 200


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_authorization_server_metadata_leads_to_a_working_token_endpoint(
    api: TestClient, creds: dict[str, Any]
) -> None:
    r = api.get("/.well-known/oauth-authorization-server")
    assert r.status_code == 200, r.text
    meta = r.json()
    assert "client_credentials" in meta["grant_types_supported"]
    assert "client_secret_basic" in meta["token_endpoint_auth_methods_supported"]
    c = creds["enterprise-fintech"]
    token = api.post(
        urlsplit(meta["token_endpoint"]).path,
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    )
    assert token.status_code == 200, token.text
    claims = _claims(token.json()["access_token"])
    # RFC 9068 §2.2: the access token names its client; its issuer is the metadata's.
    assert claims["client_id"] == c["client_id"] and claims["iss"] == meta["issuer"]
    keys = api.get(urlsplit(meta["jwks_uri"]).path).json()["keys"]
    assert keys and all(k["kty"] == "OKP" for k in keys)
    assert api.get("/v1/me", headers=login(api, creds, "enterprise-fintech")).status_code == 200
