"""Passkeys in the console over the app: enrol on the security page, sign in, remove."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.platform import Platform, build_platform
from gateway.settings import Settings
from tests.helpers.i20_console import csrf_of
from tests.helpers.s12_webauthn import SoftAuthenticator
from tests.test_passkeys import ORIGIN, Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def platform(settings: Settings, clock: Clock) -> Iterator[Platform]:
    p = build_platform(settings, clock=clock)
    yield p
    p.engine.dispose()


@pytest.fixture
def api(platform: Platform, creds: dict[str, Any]) -> Iterator[TestClient]:
    with TestClient(create_app(platform)) as client:
        yield client


def totp_sign_in(api: TestClient, person: dict[str, str], clock: Clock) -> str:
    page = api.get("/console/login")
    r = api.post(
        "/console/login",
        data={
            "csrf": csrf_of(page.text),
            "login": person["login"],
            "password": person["password"],
            "totp": pyotp.TOTP(person["totp_secret"]).at(clock.now),
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    clock.now += timedelta(seconds=30)
    security = api.get("/console/security")
    assert security.status_code == 200, security.text
    return csrf_of(security.text)


def test_enrol_sign_in_and_remove_a_passkey_through_the_console(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> None:
    person = creds["security-admin"]["person"]
    csrf = totp_sign_in(api, person, clock)
    page = api.get("/console/security").text
    assert 'id="passkey-add"' in page and "/console/static/passkeys.js" in page
    assert "<script>" not in page  # CSP: no inline script
    # Enrol: the options, the authenticator, the answer (the CSRF token rides in a header).
    refused = api.post("/console/security/passkeys/options")
    assert refused.status_code == 403, refused.text
    opts = api.post("/console/security/passkeys/options", headers={"X-CSRF-Token": csrf})
    assert opts.status_code == 200, opts.text
    auth = SoftAuthenticator(origin=ORIGIN)
    done = api.post(
        "/console/security/passkeys",
        content=json.dumps({"credential": auth.create(opts.json()["options"])}),
        headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"},
    )
    assert done.status_code == 200 and done.json()["ok"], done.text
    listed = api.get("/console/security").text
    assert auth_id(auth)[:16] in listed
    # Sign out, then sign in with the password and the passkey (no TOTP code).
    api.post("/console/logout", data={"csrf": csrf})
    login_page = api.get("/console/login").text
    assert 'id="passkey-signin"' in login_page
    csrf = csrf_of(login_page)
    wrong = api.post(
        "/console/login/passkey-options",
        data={"csrf": csrf, "login": person["login"], "password": "not the password!!"},
    )
    assert wrong.status_code == 401 and "options" not in wrong.json()
    options = api.post(
        "/console/login/passkey-options",
        data={"csrf": csrf, "login": person["login"], "password": person["password"]},
    ).json()["options"]
    assert options is not None
    assertion = json.dumps(auth.get(options))
    form = {"csrf": csrf, "login": person["login"], "password": person["password"]}
    r = api.post("/console/login", data={**form, "passkey": assertion}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console/", r.text
    home = api.get("/console/", follow_redirects=True)
    assert home.status_code == 200 and person["login"] in home.text
    # The same assertion again (a replay from another browser) does not sign in.
    api.post("/console/logout", data={"csrf": csrf_of(api.get("/console/security").text)})
    csrf = csrf_of(api.get("/console/login").text)
    form["csrf"] = csrf
    replay = api.post("/console/login", data={**form, "passkey": assertion})
    assert replay.status_code == 401
    # Remove it on the security page: a fresh TOTP code is needed.
    csrf = totp_sign_in(api, person, clock)
    page = api.get("/console/security").text
    (action,) = re.findall(r'action="(/console/security/passkeys/[^"]+/remove)"', page)
    bad = api.post(action, data={"csrf": csrf, "totp": "000000"}, follow_redirects=True)
    assert "Not removed" in bad.text or "未移除" in bad.text
    assert auth_id(auth)[:16] in bad.text
    code = pyotp.TOTP(person["totp_secret"]).at(clock.now)
    ok = api.post(action, data={"csrf": csrf, "totp": code}, follow_redirects=True)
    assert ok.status_code == 200 and auth_id(auth)[:16] not in ok.text, ok.text


def auth_id(auth: SoftAuthenticator) -> str:
    from tests.helpers.s12_webauthn import b64u

    return b64u(auth.credential_id)
