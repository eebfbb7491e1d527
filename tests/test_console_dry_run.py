"""A policy change dry-run against recent decisions (POST /v1/policies/dry-run and the console's
security-admin page): flips counted per action, nothing stored, no identity disclosed."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gateway.platform import Platform
from tests.helpers.api import login
from tests.helpers.i20_console import csrf_of, form_login

RULE = '\ndeny contains "dry run: no catalogue reads" if action == "catalog.read"\n'


def _state(api: TestClient, sec: dict[str, str], platform: Platform) -> tuple[Any, ...]:
    active = api.get("/v1/policies", headers=sec).json()
    history = api.get("/v1/policies/history", headers=sec).json()
    with platform.session() as s:
        size = platform.ledger.size(s)
    return active["revision"], active["digest"], len(history), size


def test_a_dry_run_counts_the_flips_per_action_and_changes_nothing(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    sec = login(api, creds, "security-admin")
    prov = login(api, creds, "provider-transport")
    for _ in range(3):
        assert api.get("/v1/datasets", headers=prov).status_code == 200
    active = api.get("/v1/policies", headers=sec).json()
    before = _state(api, sec, platform)
    source = active["sources"]["authz.rego"] + RULE
    r = api.post(
        "/v1/policies/dry-run", json={"modules": {"authz.rego": source}, "limit": 1000}, headers=sec
    )
    assert r.status_code == 200, r.text
    run = r.json()
    by_action = {a["action"]: a for a in run["actions"]}
    reads = by_action["catalog.read"]
    assert reads["allow_to_deny"] == reads["evaluated"] >= 3
    assert all(a["allow_to_deny"] == 0 for k, a in by_action.items() if k != "catalog.read")
    assert all(a["deny_to_allow"] == 0 for a in run["actions"])
    assert run["changed"] == reads["allow_to_deny"] and run["failed"] == 0
    assert run["evaluated"] == sum(a["evaluated"] for a in run["actions"])
    # Nothing recorded, loaded or put on the ledger; the live policy still allows.
    assert _state(api, sec, platform) == before
    assert api.get("/v1/datasets", headers=prov).status_code == 200
    # The answer names nobody: no subject, organisation or client of any decision.
    for who in creds.values():
        for key in ("client_id", "org_id"):
            if isinstance(who.get(key), str):
                assert who[key] not in r.text


def test_an_unchanged_bundle_flips_nothing(
    api: TestClient, creds: dict[str, dict[str, Any]]
) -> None:
    sec = login(api, creds, "security-admin")
    r = api.post("/v1/policies/dry-run", json={"limit": 50}, headers=sec)
    assert r.status_code == 200, r.text
    assert r.json()["changed"] == 0 and r.json()["evaluated"] > 0


def test_a_broken_candidate_is_a_problem_and_the_auditor_may_not_dry_run(
    api: TestClient, creds: dict[str, dict[str, Any]], platform: Platform
) -> None:
    sec = login(api, creds, "security-admin")
    before = _state(api, sec, platform)
    broken = api.post(
        "/v1/policies/dry-run",
        json={"modules": {"authz.rego": "package pdx.authz\n\nthis is not"}},
        headers=sec,
    )
    assert broken.status_code == 422, broken.text
    assert broken.headers["content-type"].startswith("application/problem+json")
    assert broken.json()["type"].endswith("/policy-invalid")
    assert api.post("/v1/policies/dry-run", json={"limit": 0}, headers=sec).status_code == 422
    # Reading recent decisions' effect is part of changing policy: not the auditor's.
    aud = login(api, creds, "auditor")
    assert api.post("/v1/policies/dry-run", json={}, headers=aud).status_code == 403
    assert _state(api, sec, platform) == before


def test_the_security_admin_dry_runs_a_change_in_the_console(
    api: TestClient, creds: dict[str, dict[str, Any]]
) -> None:
    prov = login(api, creds, "provider-transport")
    assert api.get("/v1/datasets", headers=prov).status_code == 200
    r = form_login(api, creds["security-admin"]["person"])
    assert r.status_code == 303
    page = api.get("/console/admin")
    assert 'hx-post="/console/admin/policies/dry-run"' in page.text
    sec = login(api, creds, "security-admin")
    source = api.get("/v1/policies", headers=sec).json()["sources"]["authz.rego"] + RULE
    fragment = api.post(
        "/console/admin/policies/dry-run",
        data={"module": "authz.rego", "source": source},
        headers={"X-CSRF-Token": csrf_of(page.text)},
    )
    assert fragment.status_code == 200, fragment.text
    assert 'data-testid="dry-run"' in fragment.text
    assert '<tr class="bad"><td>catalog.read</td>' in fragment.text
    # Without the CSRF token the same post is refused.
    refused = api.post(
        "/console/admin/policies/dry-run", data={"module": "authz.rego", "source": source}
    )
    assert refused.status_code == 403
