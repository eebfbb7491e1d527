"""The SDK against the real app: TestClient's transport injected into the SDK's httpx client."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from tests.helpers.api import login
from tests.helpers.i11_people import onboard_first_admin

SDK = Path(__file__).resolve().parents[2] / "sdk"
if str(SDK) not in sys.path:  # the SDK is its own distribution; tests import it from the tree
    sys.path.insert(0, str(SDK))

from pdx_client.roles import _Role  # noqa: E402

R = TypeVar("R", bound=_Role)


def sdk_login(api: TestClient, cls: type[R], client_id: str, secret: str) -> R:
    """A role object whose requests go through the app in-process (no sockets)."""
    role: R = cls.login("http://testserver", client_id, secret, transport=api._transport)
    return role


def demo(api: TestClient, creds: dict[str, Any], cls: type[R], name: str) -> R:
    return sdk_login(api, cls, creds[name]["client_id"], creds[name]["client_secret"])


def new_client(
    api: TestClient, creds: dict[str, Any], name: str, kind: str
) -> tuple[str, str, str]:
    """A new organisation and a client of it: (org id, client id, client secret)."""
    admin = login(api, creds, "operator-admin")
    r = api.post("/v1/organisations", headers=admin, json={"name": name, "kind": kind})
    assert r.status_code == 201, r.text
    org_id: str = r.json()["id"]
    role = {"provider": "data-provider", "enterprise": "data-consumer"}[kind]
    person = onboard_first_admin(api, admin, org_id, f"admin-{org_id[:8]}")
    r = api.post(
        f"/v1/organisations/{org_id}/clients",
        headers=person,
        json={"name": f"{name} client", "roles": [role]},
    )
    assert r.status_code == 201, r.text
    return org_id, r.json()["client_id"], r.json()["client_secret"]
