"""Provider decisions signed with the provider's own key: verified, kept, on the trail (CRY-06).

Through the real server: a signed run and release approval is verified against the key
the provider's organisation registered, kept in the decision, and its digest is the
payload digest of the provider's ledger entry. A signature by another organisation's
key, over another query's digest, a refusal's signature shown as a yes, or a tampered
one is refused and changes nothing. CRY-06 fails while an approval is unsigned (or its
stored signature is altered) and passes once every approval is signed.
"""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import crypto
from exchange.models import Computation
from gateway.platform import Platform
from ledger.records import decode_leaf
from tests.helpers.api import assert_problem
from tests.helpers.i15_sdk import new_client, sdk_login
from tests.helpers.i16_compliance import run_check
from tests.test_api_computations import PURPOSE, ask, setup_network, wait_for
from tests.test_api_contracts import measure_csv
from tests.test_sdk import _meta

from pdx_client import Enterprise, PartyKey, Provider  # isort: skip
from pdx_client.partykeys import release_message  # isort: skip

Creds = dict[str, dict[str, Any]]


def _register_key(api: TestClient, hospital: dict[str, Any], algorithm: str) -> None:
    """The hospital makes its key pair here and registers only the public half."""
    key = crypto.generate_key_pair(algorithm)
    r = api.post(
        f"/v1/market/parties/{hospital['org']}/keys",
        headers=hospital["h"],
        json={"algorithm": algorithm, "public_key": base64.b64encode(key.public_bytes()).decode()},
    )
    assert r.status_code == 201, r.text
    hospital["key"], hospital["key_id"] = key, r.json()["keys"][-1]["id"]


def _sign(hospital: dict[str, Any], message: str) -> dict[str, str]:
    signature = hospital["key"].sign(message.encode())
    return {"key_id": hospital["key_id"], "signature": base64.b64encode(signature).decode()}


def _snapshot(api: TestClient, platform: Platform, net: dict[str, Any], comp_id: str) -> Any:
    """What a refused decision must leave as it was: the job and the ledger."""
    body = api.get(f"/v1/computations/{comp_id}", headers=net["ent"]).json()
    with platform.session() as s:
        size = platform.ledger.size(s)
    return body["state"], body["decisions"], body["transitions"], body["inputs"], size


def _cry06(api: TestClient, creds: Creds) -> dict[str, Any]:
    finding: dict[str, Any] = next(
        f for f in run_check(api, creds)["findings"] if f["id"] == "CRY-06"
    )
    return finding


def _entry(platform: Platform, comp_id: str, index: int) -> dict[str, Any]:
    with platform.session() as s:
        entries = platform.ledger.entries(s, object_id=comp_id)
    leaf: dict[str, Any] = next(decode_leaf(e.leaf) for e in entries if e.index == index)
    return leaf


def test_signed_approvals_are_verified_kept_and_on_the_trail_and_forgeries_change_nothing(
    capi: TestClient, creds: Creds, platform: Platform
) -> None:
    net = setup_network(capi, creds, "general-4")
    first, second, third = net["hospitals"]
    _register_key(capi, first, "ed25519")
    _register_key(capi, second, "sm2-sm3")  # the national suite signs approvals too
    _register_key(capi, third, "ed25519")
    params = {"columns": ["systolic_bp"], "bins": 8, "range": [80.0, 180.0]}
    comp = ask(capi, net, "stats.histogram", params).json()
    other = ask(capi, net, "stats.histogram", {**params, "bins": 4}).json()
    assert comp["state"] == other["state"] == "awaiting_approval"
    comp_id = comp["id"]
    run = f"/v1/computations/{comp_id}/approve-run"
    digest = capi.get(f"/v1/computations/{comp_id}/query", headers=first["h"]).json()[
        "query_digest"
    ]
    other_digest = capi.get(f"/v1/computations/{other['id']}/query", headers=first["h"]).json()[
        "query_digest"
    ]
    assert digest != other_digest
    tampered = _sign(first, digest)
    raw = bytearray(base64.b64decode(tampered["signature"]))
    raw[5] ^= 1
    tampered["signature"] = base64.b64encode(bytes(raw)).decode()
    forgeries: list[tuple[dict[str, str], int, str]] = [
        # another organisation's key, even over the right query
        (_sign(second, digest), 422, "approval-signing-key-unknown"),
        # its own key over another query's digest
        (_sign(first, other_digest), 403, "approval-signature-invalid"),
        # a refusal's signature presented as an approval
        (_sign(first, f"reject:{digest}"), 403, "approval-signature-invalid"),
        (tampered, 403, "approval-signature-invalid"),
        ({"key_id": "sha256:" + "0" * 64, "signature": tampered["signature"]}, 422, ""),
    ]
    before = _snapshot(capi, platform, net, comp_id)
    for signature, status, code in forgeries:
        body = {"query_digest": digest, "signature": signature}
        problem = assert_problem(capi.post(run, headers=first["h"], json=body), status)
        if code:
            assert problem["type"].endswith(code), problem
        assert _snapshot(capi, platform, net, comp_id) == before
    # Signed for real: kept in the decision, its digest the provider's ledger payload.
    for h in net["hospitals"]:
        body = {"query_digest": digest, "signature": _sign(h, digest)}
        r = capi.post(run, headers=h["h"], json=body)
        assert r.status_code == 200, r.text
    decided = r.json()
    mine = [d for d in decided["decisions"] if d.get("stage") == "run"]
    assert len(mine) == 3
    by_org = {d["org"]: d["signature"] for d in mine}
    assert by_org[first["org"]]["key_id"] == first["key_id"]
    assert by_org[second["org"]]["algorithm"] == "sm2-sm3"
    assert all(s["signed"] == digest and s["approve"] for s in by_org.values())
    approved = [t for t in decided["transitions"] if t["event"] == "provider_approved"]
    for t, h in zip(approved, net["hospitals"], strict=True):
        entry = _entry(platform, comp_id, t["ledger_index"])
        assert entry["payload_digest"] == by_org[h["org"]]["digest"]
        assert by_org[h["org"]]["digest"] in t["detail"]
    held = wait_for(capi, net["ent"], comp_id, "review", "failed", "rejected")
    assert held["state"] == "review", held["error"]
    # The release: signed over the digest of the output the provider reviewed.
    release = f"/v1/computations/{comp_id}/approve-release"
    output = capi.get(f"/v1/computations/{comp_id}/review", headers=first["h"]).json()
    message = release_message(comp_id, output)
    before = _snapshot(capi, platform, net, comp_id)
    for wrong in (_sign(first, digest), _sign(first, release_message(comp_id, {"x": 1}))):
        problem = assert_problem(
            capi.post(release, headers=first["h"], json={"signature": wrong}), 403
        )
        assert problem["type"].endswith("approval-signature-invalid")
        assert _snapshot(capi, platform, net, comp_id) == before
    for h in net["hospitals"]:
        r = capi.post(release, headers=h["h"], json={"signature": _sign(h, message)})
        assert r.status_code == 200, r.text
    done = r.json()
    assert done["state"] == "released"
    releases = [d for d in done["decisions"] if d.get("stage") == "release"]
    assert [d["signature"]["signed"] for d in releases] == [message] * 3
    # Every provider decision on this deployment is signed and verifies: CRY-06 holds.
    assert _cry06(capi, creds)["status"] == "pass"
    # An altered stored signature (database access) is caught: it no longer verifies.
    with platform.session() as s, s.begin():
        row = s.get(Computation, comp_id)
        assert row is not None
        decisions = [dict(d) for d in row.decisions]
        i = next(n for n, d in enumerate(decisions) if d.get("stage") == "release")
        decisions[i]["signature"] = {**decisions[i]["signature"], "signed": digest}
        row.decisions = decisions
    failed = _cry06(capi, creds)
    assert failed["status"] == "fail"
    assert any("1 provider approvals" in o for o in failed["evidence"]["offenders"])


def test_an_unsigned_approval_fails_cry06_and_a_signed_one_does_not(
    capi: TestClient, creds: Creds, platform: Platform
) -> None:
    net = setup_network(capi, creds, "general-4")
    first, second, _ = net["hospitals"]
    params = {"columns": ["systolic_bp"], "bins": 8, "range": [80.0, 180.0]}
    comp_id = ask(capi, net, "stats.histogram", params).json()["id"]
    run = f"/v1/computations/{comp_id}/approve-run"
    assert _cry06(capi, creds)["status"] == "not-applicable"
    _register_key(capi, first, "ed25519")
    digest = capi.get(f"/v1/computations/{comp_id}/query", headers=first["h"]).json()[
        "query_digest"
    ]
    r = capi.post(run, headers=first["h"], json={"signature": _sign(first, digest)})
    assert r.status_code == 200, r.text
    assert _cry06(capi, creds)["status"] == "pass"
    r = capi.post(run, headers=second["h"], json={"query_digest": digest})
    assert r.status_code == 200, r.text
    failed = _cry06(capi, creds)
    assert failed["status"] == "fail"
    assert failed["evidence"]["offenders"] == [
        "1 provider approvals carry no signature by the provider's key that verifies"
    ]


def test_the_sdk_keeps_the_party_key_and_signs_every_hospital_decision(
    capi: TestClient, creds: Creds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDX_CONFIG_DIR", str(tmp_path))
    ent_org, ent_id, ent_secret = new_client(capi, creds, "Riverside Analytics", "enterprise")
    enterprise = sdk_login(capi, Enterprise, ent_id, ent_secret)
    hospitals: list[Provider] = []
    inputs: list[str] = []
    for i, name in enumerate(("Northgate", "Lakeside", "Hillcrest")):
        org, cid, secret = new_client(capi, creds, f"{name} Hospital", "provider")
        hospital = sdk_login(capi, Provider, cid, secret)
        key = hospital.use_key(PartyKey.load_or_create(org))
        path = tmp_path / "partykeys" / f"{org}.pem"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert PartyKey.load_or_create(org).key_id == key.key_id  # kept, not remade
        party = hospital.session.get(f"/v1/market/parties/{org}")
        assert [k["id"] for k in party["keys"]] == [key.key_id]  # the public half only
        assert key.public_b64 in party["keys"][0]["public_key"]
        ds = hospital.register(_meta(f"{name} wards", "general-4"), measure_csv(i, 40))
        agreement = enterprise.propose_agreement(org, [ds.id], PURPOSE, agreement_id="DUA-1")
        hospital.sign_agreement(agreement.id)
        hospitals.append(hospital)
        inputs.append(ds.id)
    result = enterprise.compute(
        "stats.mean",
        inputs,
        {"columns": ["systolic_bp"], "clip": [60.0, 240.0]},
        PURPOSE,
        approvers=hospitals,
        timeout=300,
    )
    job = enterprise.session.get(f"/v1/computations/{result.computation_id}")
    decisions = [d for d in job["decisions"] if d.get("action") == "computation.approve"]
    assert len(decisions) == 6 and all(d["signature"]["algorithm"] == "ed25519" for d in decisions)
    assert _cry06(capi, creds)["status"] == "pass"
