"""`pdx demo`: the scripted scenario a new user watches, run against a live server over HTTP."""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from gateway.demo_compute import ComputeDemoError, run_compute_demo
from gateway.demo_market import MarketDemoError, run_market_demo
from ledger import (
    Checkpoint,
    LedgerError,
    hasher,
    open_note,
    parse_verifier_key,
    verify_consistency,
    verify_inclusion,
)

DEFAULT_CSV = Path(__file__).resolve().parents[1] / "examples" / "transit_trips.csv"


class DemoError(Exception):
    """The demo could not go on; the message says which step and why."""


def _step(n: int, text: str) -> None:
    print(f"\n[{n}] {text}")


def _login(client: httpx.Client, creds: dict[str, Any], name: str) -> str:
    c = creds.get(name)
    if c is None:
        raise DemoError(f"credentials file has no client '{name}'")
    r = client.post(
        "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": c["client_id"],
            "client_secret": c["client_secret"],
        },
    )
    if r.status_code != 200:
        raise DemoError(f"login as {name} failed: {r.status_code} {r.text[:200]}")
    token: str = r.json()["access_token"]
    print(f"    {name} ({c['org']}, {c['kind']}) has a {r.json()['expires_in']} s access token")
    return token


def transit_metadata(
    name: str,
    level: str,
    *,
    description: str = "Transit-card trips with card holders' identity and contact details",
) -> dict[str, Any]:
    """docs/compliance.md GRD-02 metadata for examples/transit_trips.csv (it holds ID numbers)."""
    return {
        "name": name,
        "description": description,
        "classification_path": ["transport", "public transit", "card trips"],
        "level": level,
        "impact_object": "individual-rights",
        "impact_degree": "serious",
        "processing_degree": "raw",
        "source_agency": "Municipal Transport Bureau",
        "source_system": "fare collection system",
        "accountable_department": "Transit Data Office",
        "pi": True,
        "sensitive_pi": True,
        "share_attribute": "conditional",
        "open_attribute": "conditional",
    }


def _register(
    client: httpx.Client, token: str, csv_path: Path, meta: dict[str, Any]
) -> httpx.Response:
    with open(csv_path, "rb") as f:
        return client.post(
            "/v1/datasets",
            headers={"Authorization": f"Bearer {token}"},
            files={
                "metadata": (None, json.dumps(meta, ensure_ascii=False), "application/json"),
                "file": (csv_path.name, f, "text/csv"),
            },
        )


def run_demo(
    *,
    url: str,
    credentials: Path | str,
    csv_path: str | None = None,
    with_computations: bool = True,
) -> None:
    creds_path = Path(credentials)
    if not creds_path.exists():
        raise DemoError(f"no credentials file at {creds_path}; start the server with `make run`")
    creds = json.loads(creds_path.read_text(encoding="utf-8"))
    data = Path(csv_path) if csv_path else DEFAULT_CSV
    if not data.exists():
        raise DemoError(f"no CSV at {data}")
    with httpx.Client(base_url=url, timeout=120) as client:
        try:
            client.get("/healthz").raise_for_status()
        except httpx.HTTPError as exc:
            raise DemoError(f"server at {url} is not reachable ({exc})") from None
        print(f"pdx demo against {url}")

        _step(1, "A data provider logs in with its client credentials")
        token = _login(client, creds, "provider-transport")

        name = f"transit-card-trips-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        _step(2, f"It registers {data.name} declared general-1 (一般数据 1级)")
        r = _register(client, token, data, transit_metadata(name, "general-1"))
        if r.status_code != 422:
            raise DemoError(f"expected the scan to refuse general-1, got {r.status_code}")
        p = r.json()
        print(f"    refused: {r.status_code} {p['type']}")
        print(f"    {p['detail']}")
        required = p["required_level"]

        auditor = {"Authorization": f"Bearer {_login(client, creds, 'auditor')}"}
        earlier_note = _get(client, "/v1/ledger/checkpoint", auditor).content

        _step(3, f"It registers again at the level the scan requires: {required} (就高从严)")
        r = _register(client, token, data, transit_metadata(name, required))
        if r.status_code != 201:
            raise DemoError(f"registration failed: {r.status_code} {r.text[:300]}")
        ds = r.json()
        print(f"    registered {ds['id']}: {ds['rows']} rows, {ds['size_bytes']} bytes")
        print(f"    stored encrypted; sha256={ds['digests']['sha256'][:16]}…")
        print(f"    sm3={ds['digests']['sm3'][:16]}…")

        _step(4, "The catalogue shows per-field detections")
        r = client.get(f"/v1/datasets/{ds['id']}", headers={"Authorization": f"Bearer {token}"})
        for field in r.json()["fields"]:
            if field["detections"]:
                hits = ", ".join(
                    f"{k} {v['hits']} ({v['ratio']:.0%})" for k, v in field["detections"].items()
                )
                print(f"    {field['name']:<16} {field['level']:<10} {hits}")

        _step(5, "Preview: synthetic rows with the same shapes and no real value")
        r = client.get(
            f"/v1/datasets/{ds['id']}/preview",
            params={"rows": 3},
            headers={"Authorization": f"Bearer {token}"},
        )
        for row in r.json()["rows"]:
            print("    " + json.dumps(row, ensure_ascii=False))

        _step(6, "An auditor checks the registration on the ledger with the public key alone")
        _audit_registration(client, auditor, ds, earlier_note)

        _step(7, "An enterprise asks to compute on the general-4 dataset without a contract")
        enterprise = {"Authorization": f"Bearer {_login(client, creds, 'enterprise-fintech')}"}
        r = client.post(
            "/v1/computations",
            json={
                "operator": "stats.mean",
                "inputs": [ds["id"]],
                "params": {"columns": ["fare_yuan"], "clip": [0, 100]},
                "purpose": "fare pricing study",
            },
            headers=enterprise,
        )
        if r.status_code != 403:
            raise DemoError(f"expected the policy to refuse, got {r.status_code} {r.text[:200]}")
        print(f"    refused: {r.status_code} {r.json()['type']}")
        for reason in r.json().get("reasons", []):
            print(f"      {reason}")

        _step(8, "The auditor may read everything and change nothing (三员分立)")
        policy = _get(client, "/v1/policies", auditor).json()
        print(f"    reads policy revision {policy['revision']} ({policy['digest'][:19]}…)")
        r = client.put("/v1/policies/matrix", json=policy["matrix"], headers=auditor)
        if r.status_code != 403:
            raise DemoError(f"the auditor changed the policy: {r.status_code}")
        print(f"    tries to change the grading matrix: {r.status_code} {r.json()['detail']}")

        _step(9, "The security administrator tightens the grading matrix; the ledger shows it")
        security = {"Authorization": f"Bearer {_login(client, creds, 'security-admin')}"}
        try:
            _change_matrix(client, security, auditor, policy["matrix"])
            if with_computations:
                print("\n--- usable but invisible: computations across three hospitals ---")
                try:
                    run_compute_demo(client, creds)
                except ComputeDemoError as exc:
                    raise DemoError(str(exc)) from None
                print("\n--- the data market: list, negotiate, compute, settle, certify ---")
                try:
                    run_market_demo(client, creds)
                except MarketDemoError as exc:
                    raise DemoError(str(exc)) from None
        finally:
            # The demo leaves the live policy as it found it: the matrix it read in step 8
            # becomes the active one again (a new revision, on the ledger like any other).
            _restore_matrix(client, security, policy["matrix"])
    print("\ndemo finished")


def _change_matrix(
    client: httpx.Client,
    security: dict[str, str],
    auditor: dict[str, str],
    matrix: dict[str, Any],
) -> None:
    """Raise the minimum cohort for general-4 computations, find it on the ledger, undo it.

    The demo runs against live platforms: it puts the matrix it found back afterwards
    (a new revision with the same bundle digest), so running it twice changes nothing.
    """
    changed = json.loads(json.dumps(matrix))
    rule = changed["cells"]["general-4/conditional"]["actions"]["computation.request"]
    obligations = rule.setdefault("obligations", {})
    obligations["min_cohort"] = int(obligations.get("min_cohort", 10)) + 5
    r = client.put("/v1/policies/matrix", json=changed, headers=security)
    if r.status_code != 200:
        raise DemoError(f"policy activation failed: {r.status_code} {r.text[:300]}")
    try:
        body = r.json()
        print(f"    revision {body['revision']} active after {body['tests_passed']} policy tests")
        for change in body["changes"][:3]:
            print(f"      {change}")
        entry = _get(client, f"/v1/ledger/entries/{body['ledger_index']}", auditor).json()
        record = entry["record"]
        print(
            f"    ledger entry {entry['index']}: {record['type']} by {record['actor']}, "
            f"bundle {record['payload_digest'][:23]}…"
        )
    finally:
        restored = client.put("/v1/policies/matrix", json=matrix, headers=security)
    if restored.status_code != 200:
        raise DemoError(f"restoring the policy failed: {restored.status_code}")
    print(f"    the demo's change undone: revision {restored.json()['revision']} as before")


def _restore_matrix(client: httpx.Client, security: dict[str, str], matrix: dict[str, Any]) -> None:
    r = client.put("/v1/policies/matrix", json=matrix, headers=security)
    if r.status_code != 200:
        raise DemoError(f"restoring the grading matrix failed: {r.status_code} {r.text[:300]}")
    print(f"\n    grading matrix restored as revision {r.json()['revision']}")


def _get(client: httpx.Client, path: str, headers: dict[str, str], **params: int) -> httpx.Response:
    r = client.get(path, headers=headers, params=params)
    if r.status_code != 200:
        raise DemoError(f"GET {path} failed: {r.status_code} {r.text[:300]}")
    return r


def _audit_registration(
    client: httpx.Client, auditor: dict[str, str], ds: dict[str, Any], earlier_note: bytes
) -> None:
    """Checkpoint → entry → inclusion proof → consistency with an earlier checkpoint."""
    vkey = _get(client, "/v1/ledger/verifier-key", auditor).text.strip()
    verifier = parse_verifier_key(vkey)
    print(f"    verifier key {vkey[:60]}…")
    index = ds["ledger_index"]
    deadline = time.monotonic() + 10
    while True:  # blocks seal every 200 ms; wait for the one holding our entry
        text, _ = open_note(_get(client, "/v1/ledger/checkpoint", auditor).content, [verifier])
        checkpoint = Checkpoint.parse(text)
        if checkpoint.size > index:
            break
        if time.monotonic() > deadline:
            raise DemoError("the registration entry was not sealed within 10 s")
        time.sleep(0.2)
    earlier = Checkpoint.parse(open_note(earlier_note, [verifier])[0])
    print(f"    checkpoint: signed note, tree size {checkpoint.size}, signature verified")
    entry = _get(client, f"/v1/ledger/entries/{index}", auditor).json()
    leaf = base64.b64decode(entry["leaf"])
    record = entry["record"]
    print(f"    entry {index}: {record['type']} {record['object_id']} by {record['actor']}")
    print(f"      payload_digest {record['payload_digest'][:23]}… (the data itself is not here)")
    h = hasher(os.environ.get("PDX_LEDGER_HASH", "sha256"))  # the deployment's tree hash
    proof = _get(
        client, "/v1/ledger/proof/inclusion", auditor, index=index, tree_size=checkpoint.size
    ).json()
    hashes = [base64.b64decode(x) for x in proof["hashes"]]
    try:
        verify_inclusion(h, index, checkpoint.size, h.leaf(leaf), hashes, checkpoint.root_hash)
        print(f"    inclusion proof ({len(hashes)} hashes) verifies against the checkpoint root")
        consistency = _get(
            client,
            "/v1/ledger/proof/consistency",
            auditor,
            first=earlier.size,
            second=checkpoint.size,
        ).json()
        verify_consistency(
            h,
            earlier.size,
            checkpoint.size,
            earlier.root_hash,
            checkpoint.root_hash,
            [base64.b64decode(x) for x in consistency["hashes"]],
        )
    except LedgerError as exc:
        raise DemoError(f"ledger proof failed: {exc.detail}") from None
    print(
        f"    consistency proof: the tree of {earlier.size} entries seen before the "
        f"registration is a prefix of today's {checkpoint.size}"
    )
