"""Passkeys (WebAuthn) as a person's second factor, attacked through the real app."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from audit.models import AuditRecord
from gateway.app import create_app
from gateway.platform import Platform, build_platform
from gateway.settings import Settings
from ledger.models import LedgerEntry
from tests.conftest import login
from tests.helpers.s12_webauthn import SoftAuthenticator

PERSON_GRANT = "urn:pdx:params:oauth:grant-type:person"
PASSWORD = "correct horse battery staple"
ORIGIN = "http://localhost:8700"  # the default: settings.port 8700, rp id localhost


class Clock:
    """The platform's clock, moved by the test (TOTP steps and challenge expiry)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


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


def totp_at(secret: str, clock: Clock) -> str:
    return pyotp.TOTP(secret).at(clock.now)


def new_person(api: TestClient, creds: dict[str, Any], clock: Clock, name: str) -> dict[str, Any]:
    """A security-admin person invited, enrolled with TOTP and signed in; their headers."""
    org = creds["security-admin"]["org_id"]
    inv = api.post(
        f"/v1/organisations/{org}/invitations",
        json={"display_name": name.title(), "roles": ["security-admin"]},
        headers=login(api, creds, "security-admin"),
    )
    assert inv.status_code == 201, inv.text
    r = api.post(
        "/v1/invitations/redeem",
        json={"code": inv.json()["code"], "login": name, "password": PASSWORD},
    )
    assert r.status_code == 201, r.text
    secret = r.json()["totp_secret"]
    ok = api.post(
        "/v1/invitations/confirm",
        json={"login": name, "password": PASSWORD, "totp": totp_at(secret, clock)},
    )
    assert ok.status_code == 200, ok.text
    clock.now += timedelta(seconds=30)
    tok = token(api, name, totp=totp_at(secret, clock))
    assert tok.status_code == 200, tok.text
    clock.now += timedelta(seconds=30)
    return {
        "login": name,
        "secret": secret,
        "person_id": r.json()["person_id"],
        "headers": {"Authorization": f"Bearer {tok.json()['access_token']}"},
    }


def token(
    api: TestClient, name: str, *, totp: str = "", passkey: dict[str, Any] | None = None
) -> Any:
    form = {"grant_type": PERSON_GRANT, "username": name, "password": PASSWORD}
    if passkey is not None:
        form["passkey"] = json.dumps(passkey)
    else:
        form["totp"] = totp
    return api.post("/v1/auth/token", data=form)


def enrol(api: TestClient, person: dict[str, Any], auth: SoftAuthenticator) -> dict[str, Any]:
    opts = api.post("/v1/me/passkeys/options", headers=person["headers"])
    assert opts.status_code == 200, opts.text
    r = api.post(
        "/v1/me/passkeys",
        json={"credential": auth.create(opts.json()["options"])},
        headers=person["headers"],
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def signin_options(api: TestClient, name: str, password: str = PASSWORD) -> Any:
    return api.post("/v1/auth/passkey-options", json={"username": name, "password": password})


def challenge(api: TestClient, name: str) -> dict[str, Any]:
    r = signin_options(api, name)
    assert r.status_code == 200, r.text
    options: dict[str, Any] = r.json()["options"]
    assert options is not None
    return options


def refused(r: Any) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_grant"
    assert "access_token" not in r.json()


def count(platform: Platform, model: Any, event: str) -> int:
    column = model.type if model is LedgerEntry else model.event_type
    with platform.session() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(column == event)))


def test_enrol_then_sign_in_with_password_and_passkey(
    api: TestClient, creds: dict[str, Any], clock: Clock, platform: Platform
) -> None:
    alice = new_person(api, creds, clock, "alice")
    # No passkey yet: after the password, the options say so (sign in with TOTP).
    none_yet = signin_options(api, "alice")
    assert none_yet.status_code == 200 and none_yet.json()["options"] is None
    auth = SoftAuthenticator(origin=ORIGIN)
    added = enrol(api, alice, auth)
    assert added["ledger_index"] is not None
    assert count(platform, LedgerEntry, "person.passkey_added") == 1
    assert count(platform, AuditRecord, "person.passkey_added") == 1
    listed = api.get("/v1/me/passkeys", headers=alice["headers"]).json()["items"]
    assert [p["id"] for p in listed] == [added["id"]]
    # The wrong password gets no challenge (and says nothing about passkeys).
    refused(signin_options(api, "alice", "not the password at all"))
    options = challenge(api, "alice")
    assert [c["id"] for c in options["allowCredentials"]] == [added["credential_id"]]
    r = token(api, "alice", passkey=auth.get(options))
    assert r.status_code == 200, r.text
    me = api.get("/v1/me", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
    assert me.status_code == 200 and me.json()["client_id"] == alice["person_id"]
    assert count(platform, LedgerEntry, "person.passkey_used") == 1
    # The password stays the first factor: a valid assertion with a wrong password fails.
    form = {
        "grant_type": PERSON_GRANT,
        "username": "alice",
        "password": "not the password at all",
        "passkey": json.dumps(auth.get(challenge(api, "alice"))),
    }
    refused(api.post("/v1/auth/token", data=form))


def test_a_replayed_assertion_is_refused(
    api: TestClient, creds: dict[str, Any], clock: Clock, platform: Platform
) -> None:
    bob = new_person(api, creds, clock, "bob")
    auth = SoftAuthenticator(origin=ORIGIN)
    enrol(api, bob, auth)
    options = challenge(api, "bob")
    assertion = auth.get(options)
    assert token(api, "bob", passkey=assertion).status_code == 200
    refused(token(api, "bob", passkey=assertion))  # the very same answer
    refused(token(api, "bob", passkey=auth.get(options)))  # a new signature, same challenge
    assert count(platform, LedgerEntry, "person.passkey_used") == 1


def test_an_assertion_for_another_rp_or_origin_is_refused(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> None:
    carol = new_person(api, creds, clock, "carol")
    auth = SoftAuthenticator(origin=ORIGIN)
    # Registration made on a phishing origin does not verify either.
    opts = api.post("/v1/me/passkeys/options", headers=carol["headers"]).json()["options"]
    bad = api.post(
        "/v1/me/passkeys",
        json={"credential": auth.create(opts, origin="https://pdx-login.example")},
        headers=carol["headers"],
    )
    assert bad.status_code == 422 and bad.json()["type"].endswith("invalid-input"), bad.text
    assert api.get("/v1/me/passkeys", headers=carol["headers"]).json()["items"] == []
    enrol(api, carol, auth)
    refused(
        token(api, "carol", passkey=auth.get(challenge(api, "carol"), origin="https://evil.test"))
    )
    refused(token(api, "carol", passkey=auth.get(challenge(api, "carol"), rp_id="evil.test")))
    assert token(api, "carol", passkey=auth.get(challenge(api, "carol"))).status_code == 200


def test_a_counter_going_backwards_is_refused(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> None:
    dave = new_person(api, creds, clock, "dave")
    auth = SoftAuthenticator(origin=ORIGIN)
    enrol(api, dave, auth)
    assert (
        token(api, "dave", passkey=auth.get(challenge(api, "dave"), counter=7)).status_code == 200
    )
    # A clone of the authenticator, whose counter lags behind the original's.
    refused(token(api, "dave", passkey=auth.get(challenge(api, "dave"), counter=5)))
    refused(token(api, "dave", passkey=auth.get(challenge(api, "dave"), counter=7)))
    assert (
        token(api, "dave", passkey=auth.get(challenge(api, "dave"), counter=8)).status_code == 200
    )


def test_challenges_are_single_use_and_expire(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> None:
    erin = new_person(api, creds, clock, "erin")
    auth = SoftAuthenticator(origin=ORIGIN)
    # Registration: an expired challenge, then a spent one.
    opts = api.post("/v1/me/passkeys/options", headers=erin["headers"]).json()["options"]
    clock.now += timedelta(minutes=2, seconds=1)
    late = api.post(
        "/v1/me/passkeys", json={"credential": auth.create(opts)}, headers=erin["headers"]
    )
    assert late.status_code == 422 and "expired" in late.json()["detail"], late.text
    opts = api.post("/v1/me/passkeys/options", headers=erin["headers"]).json()["options"]
    first = api.post(
        "/v1/me/passkeys", json={"credential": auth.create(opts)}, headers=erin["headers"]
    )
    assert first.status_code == 201, first.text
    other = SoftAuthenticator(origin=ORIGIN)
    again = api.post(
        "/v1/me/passkeys", json={"credential": other.create(opts)}, headers=erin["headers"]
    )
    assert again.status_code == 422 and "spent" in again.json()["detail"], again.text
    assert api.get("/v1/me/passkeys", headers=erin["headers"]).json()["total"] == 1
    # A challenge serves one ceremony: a sign-in challenge does not register a key, and a
    # registration challenge does not sign in.
    crossed = api.post(
        "/v1/me/passkeys",
        json={"credential": other.create(challenge(api, "erin"))},
        headers=erin["headers"],
    )
    assert crossed.status_code == 422, crossed.text
    reg = api.post("/v1/me/passkeys/options", headers=erin["headers"]).json()["options"]
    refused(token(api, "erin", passkey=auth.get(reg)))
    # Sign-in: a challenge two minutes old is refused, a fresh one works.
    options = challenge(api, "erin")
    clock.now += timedelta(minutes=2, seconds=1)
    refused(token(api, "erin", passkey=auth.get(options)))
    assert token(api, "erin", passkey=auth.get(challenge(api, "erin"))).status_code == 200


def test_another_persons_credential_or_challenge_cannot_be_used(
    api: TestClient, creds: dict[str, Any], clock: Clock
) -> None:
    frank = new_person(api, creds, clock, "frank")
    grace = new_person(api, creds, clock, "grace")
    franks = SoftAuthenticator(origin=ORIGIN)
    graces = SoftAuthenticator(origin=ORIGIN)
    enrol(api, frank, franks)
    enrol(api, grace, graces)
    # Grace's password, Grace's challenge, Frank's authenticator: refused.
    refused(token(api, "grace", passkey=franks.get(challenge(api, "grace"))))
    # Frank's challenge and authenticator, submitted as Grace: refused (not her challenge).
    refused(token(api, "grace", passkey=franks.get(challenge(api, "frank"))))
    # A challenge issued after Frank's password, answered by Grace for herself: refused.
    refused(token(api, "grace", passkey=graces.get(challenge(api, "frank"))))
    # Frank's own challenge, answered by Grace's key under Frank's name: refused.
    refused(token(api, "frank", passkey=graces.get(challenge(api, "frank"))))
    assert token(api, "frank", passkey=franks.get(challenge(api, "frank"))).status_code == 200
    # The same authenticator cannot be registered to a second person.
    opts = api.post("/v1/me/passkeys/options", headers=grace["headers"]).json()["options"]
    dup = api.post(
        "/v1/me/passkeys", json={"credential": franks.create(opts)}, headers=grace["headers"]
    )
    assert dup.status_code == 409, dup.text


def test_a_service_client_cannot_manage_its_owners_passkeys(
    api: TestClient, creds: dict[str, Any]
) -> None:
    """The demo clients are owned by people; their tokens act for them, but not here."""
    client = login(api, creds, "security-admin")
    r = api.post("/v1/me/passkeys/options", headers=client)
    assert r.status_code == 403, r.text
    assert api.get("/v1/me/passkeys", headers=client).status_code == 403


def test_removing_a_passkey_needs_a_fresh_second_factor(
    api: TestClient, creds: dict[str, Any], clock: Clock, platform: Platform
) -> None:
    heidi = new_person(api, creds, clock, "heidi")
    auth = SoftAuthenticator(origin=ORIGIN)
    key = enrol(api, heidi, auth)
    path = f"/v1/me/passkeys/{key['id']}/remove"
    no_factor = api.post(path, json={}, headers=heidi["headers"])
    assert no_factor.status_code == 401, no_factor.text
    wrong = api.post(path, json={"totp": "000000"}, headers=heidi["headers"])
    assert wrong.status_code == 401, wrong.text
    assert api.get("/v1/me/passkeys", headers=heidi["headers"]).json()["total"] == 1
    earlier = challenge(api, "heidi")  # issued while the passkey exists
    # A passkey assertion is a fresh second factor too.
    r = api.post(
        path,
        json={"passkey": auth.get(challenge(api, "heidi"))},
        headers=heidi["headers"],
    )
    assert r.status_code == 200 and r.json()["ledger_index"] is not None, r.text
    assert api.get("/v1/me/passkeys", headers=heidi["headers"]).json()["items"] == []
    assert count(platform, LedgerEntry, "person.passkey_removed") == 1
    assert signin_options(api, "heidi").json()["options"] is None
    # The removed key no longer signs in, even with a challenge issued before removal.
    refused(token(api, "heidi", passkey=auth.get(earlier)))
    second = enrol(api, heidi, SoftAuthenticator(origin=ORIGIN))
    ok = api.post(
        f"/v1/me/passkeys/{second['id']}/remove",
        json={"totp": totp_at(heidi["secret"], clock)},
        headers=heidi["headers"],
    )
    assert ok.status_code == 200, ok.text
