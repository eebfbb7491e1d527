"""Onboarding through the API: the operator invites an org's first admin, who enrols."""

from __future__ import annotations

import time

import pyotp
from fastapi.testclient import TestClient

PERSON_GRANT = "urn:pdx:params:oauth:grant-type:person"


def onboard_first_admin(
    api: TestClient, operator: dict[str, str], org_id: str, login_name: str
) -> dict[str, str]:
    """Invite, redeem, confirm and sign in the org's first administrator; their headers.

    Confirmation spends the current TOTP step; signing in uses the next one (accepted
    within RFC 6238's one-step drift), so no sleeping is needed.
    """
    inv = api.post(
        f"/v1/organisations/{org_id}/first-admin-invitation",
        json={"display_name": "First Admin"},
        headers=operator,
    )
    assert inv.status_code == 201, inv.text
    password = "onboarding password 123"
    r = api.post(
        "/v1/invitations/redeem",
        json={"code": inv.json()["code"], "login": login_name, "password": password},
    )
    assert r.status_code == 201, r.text
    totp = pyotp.TOTP(r.json()["totp_secret"])
    ok = api.post(
        "/v1/invitations/confirm",
        json={"login": login_name, "password": password, "totp": totp.now()},
    )
    assert ok.status_code == 200, ok.text
    token = api.post(
        "/v1/auth/token",
        data={
            "grant_type": PERSON_GRANT,
            "username": login_name,
            "password": password,
            "totp": totp.at(int(time.time()) + 30),
        },
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}
