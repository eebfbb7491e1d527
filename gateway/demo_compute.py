"""`pdx demo`, computation part: three district hospitals, one enterprise, usable but invisible.

Run against a live server over HTTP (or a test client): the system administrator
creates three provider organisations (hospitals) and an enterprise, each hospital
registers its ward readings (one keeps them on its own node, a PySyft Datasite), the
enterprise signs a contract with each, then asks for the mean and the histogram of
systolic blood pressure across all three and trains a federated readmission model. The
hospitals approve each run and review each output before release, each decision signed
with the hospital's own key (made by the SDK, public half registered); the enterprise
fetches the results; an auditor checks the job's ledger entries and an inclusion proof.
"""

from __future__ import annotations

import base64
import os
import random
import secrets
import time
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import pyotp
from pdx_client import Auditor, Computation, Enterprise, PartyKey, PdxError, Provider
from pdx_client.proofs import MerkleHasher, verify_inclusion

__all__ = ["ComputeDemoError", "admit", "first_admin", "run_compute_demo", "ward_readings"]

HOSPITALS = ("Northgate", "Lakeside", "Hillcrest")
PURPOSE = "cardiovascular readmission research"
MEASURE = "systolic_bp"


R = TypeVar("R", Provider, Enterprise, Auditor)


class ComputeDemoError(Exception):
    """The computation demo could not go on; the message says which step and why."""


def _step(n: int, text: str) -> None:
    print(f"\n[C{n}] {text}")


def _check(r: httpx.Response, status: int, what: str) -> Any:
    if r.status_code != status:
        raise ComputeDemoError(f"{what} failed: {r.status_code} {r.text[:300]}")
    return r.json()


def _token(client: httpx.Client, client_id: str, secret: str) -> dict[str, str]:
    r = client.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    body = _check(r, 200, "login")
    return {"Authorization": f"Bearer {body['access_token']}"}


def _login(client: httpx.Client, creds: dict[str, Any], name: str) -> dict[str, str]:
    c = creds.get(name)
    if c is None:
        raise ComputeDemoError(f"credentials have no client '{name}'")
    return _token(client, c["client_id"], c["client_secret"])


def _organisation(
    client: httpx.Client, admin: dict[str, str], name: str, kind: str
) -> tuple[str, dict[str, str]]:
    issued = admit(client, admin, name, kind)
    print(f"    {name} ({kind}): client {issued['client_id']}")
    return issued["org"], issued


def _sdk(client: httpx.Client, cls: type[R], c: dict[str, str]) -> R:
    """An SDK role logged in through the demo's own HTTP client (a live server or a test's)."""
    role = cls.login(str(client.base_url), c["client_id"], c["client_secret"], http=client)
    assert isinstance(role, cls)
    return role


def admit(client: httpx.Client, admin: dict[str, str], name: str, kind: str) -> dict[str, str]:
    """A new organisation and one client of it: {org, client_id, client_secret}."""
    org = _check(
        client.post("/v1/organisations", headers=admin, json={"name": name, "kind": kind}),
        201,
        f"creating {name}",
    )
    role = "data-provider" if kind == "provider" else "data-consumer"
    # The operator only invites the first administrator, who enrols and issues clients.
    person = first_admin(client, admin, org["id"], name)
    issued = _check(
        client.post(
            f"/v1/organisations/{org['id']}/clients",
            headers=person,
            json={"name": f"{name} data office"[:200], "roles": [role]},
        ),
        201,
        f"issuing a client for {name}",
    )
    return {
        "org": org["id"],
        "client_id": issued["client_id"],
        "client_secret": issued["client_secret"],
    }


def first_admin(
    client: httpx.Client, admin: dict[str, str], org_id: str, name: str
) -> dict[str, str]:
    """Invite, enrol (password + TOTP) and sign in an organisation's first administrator."""
    invitation = _check(
        client.post(
            f"/v1/organisations/{org_id}/first-admin-invitation",
            headers=admin,
            json={"display_name": f"{name} administrator"[:200]},
        ),
        201,
        f"inviting {name}'s administrator",
    )
    login = "admin-" + secrets.token_hex(6)
    password = secrets.token_urlsafe(18)
    enrolled = _check(
        client.post(
            "/v1/invitations/redeem",
            json={"code": invitation["code"], "login": login, "password": password},
        ),
        201,
        f"enrolling {name}'s administrator",
    )
    totp = pyotp.TOTP(enrolled["totp_secret"])
    _check(
        client.post(
            "/v1/invitations/confirm",
            json={"login": login, "password": password, "totp": totp.now()},
        ),
        200,
        "confirming the first TOTP code",
    )
    form = {
        "grant_type": "urn:pdx:params:oauth:grant-type:person",
        "username": login,
        "password": password,
        "totp": totp.at(int(time.time()) + 30),  # the next step: the current one was spent
    }
    token = _check(client.post("/v1/auth/token", data=form), 200, "signing in the administrator")
    return {"Authorization": f"Bearer {token['access_token']}"}


def ward_readings(seed: int, rows: int) -> str:
    """Synthetic ward readings: blood pressure, age, ward, readmission within 30 days."""
    rng = random.Random(seed)
    lines = ["patient_ref,ward,systolic_bp,age,readmitted"]
    for i in range(rows):
        age = rng.randrange(25, 92)
        bp = round(rng.gauss(108 + age * 0.45, 13), 1)
        risk = (bp - 135) / 14 + (age - 60) / 18 + rng.gauss(0, 0.8)
        lines.append(f"W{seed:02d}-{i:05d},{rng.choice('ABCD')},{bp},{age},{int(risk > 0)}")
    return "\n".join(lines) + "\n"


def ward_metadata(name: str, hospital: str) -> dict[str, Any]:
    """docs/compliance.md GRD-02 metadata for `ward_readings` (general-4, conditional)."""
    return {
        "name": name,
        "description": "Ward blood-pressure readings and 30-day readmissions",
        "classification_path": ["health", "hospital care", "ward readings"],
        "level": "general-4",
        "impact_object": "public-interest",
        "impact_degree": "serious",
        "processing_degree": "desensitised",
        "source_agency": f"{hospital} District Hospital",
        "source_system": "ward information system",
        "accountable_department": "Medical records office",
        "pi": False,
        "sensitive_pi": False,
        "share_attribute": "conditional",
        "open_attribute": "conditional",
    }


def _run(
    enterprise: Enterprise,
    hospitals: list[dict[str, Any]],
    operator: str,
    params: dict[str, Any],
    timeout: float,
) -> dict[str, Any]:
    """Request, every hospital approves, wait, every hospital reviews, fetch the result."""
    inputs = [h["dataset"] for h in hospitals]
    job = enterprise.request(operator, inputs, params, PURPOSE)
    comp_id = job.id
    ob = job.obligations
    print(f"    requested {operator}: job {comp_id} is {job.state}")
    print(
        f"    obligations: provider approval={ob.get('require_provider_approval')}, "
        f"release review={ob.get('release_review')}, min cohort={ob.get('min_cohort')}, "
        f"ε={ob.get('dp_epsilon')}"
    )
    if job.stage == "awaiting_approval":
        for h in hospitals:
            h["sdk"].approve(comp_id, "run")
            print(f"    {h['name']} approves the run (signed with its own key)")
    job = enterprise.wait(comp_id, {"review", "released"}, timeout=timeout)
    if job.stage in ("rejected", "failed"):
        raise ComputeDemoError(f"{operator} job {job.state}: {job.error}")
    if job.stage == "review":
        held = hospitals[0]["sdk"].review(comp_id)
        eps = held.get("dp_epsilon", (held.get("dp") or {}).get("epsilon"))
        print(f"    held for review (gated, ε={eps}); each hospital reviews it and approves")
        for h in hospitals:
            job = h["sdk"].approve(comp_id, "release")
    if job.stage != "released":
        raise ComputeDemoError(f"{operator} job is {job.state}, not released")
    result: dict[str, Any] = enterprise.result(comp_id).model_dump()
    result["job"] = _job(job)
    return result


def _job(job: Computation) -> dict[str, Any]:
    body: dict[str, Any] = job.model_dump(mode="json")
    return body


def _print_mean(result: dict[str, Any]) -> None:
    group = result["output"]["groups"][0]
    mean = group["values"].get(f"mean({MEASURE})")
    print(f"    mean {MEASURE} across the three hospitals: {mean:.2f} mmHg (DP-noised)")
    print(f"    records covered (noisy): {group['rows']:.0f}; ε spent {result['epsilon_spent']}")


def _print_histogram(result: dict[str, Any]) -> None:
    out = result["output"]
    edges = out["bin_edges"]
    cells = out["groups"][0]["histogram"]
    labels = ["<" + f"{edges[0]:g}"]
    labels += [f"{edges[i]:g}-{edges[i + 1]:g}" for i in range(len(edges) - 1)]
    labels += [">" + f"{edges[-1]:g}"]
    for label, count in zip(labels, cells, strict=True):
        text = "suppressed" if count is None else f"{count:7.1f} " + "#" * max(0, int(count // 8))
        print(f"    {label:>9} {text}")


def _audit(auditor: Auditor, comp_id: str, timeout: float = 15) -> list[dict[str, Any]]:
    """The auditor lists the job's ledger entries and proves the release is in the log."""
    entries = auditor.ledger_entries(object_id=comp_id)
    for e in entries:
        rec = e["record"]
        digest = f" {rec['payload_digest'][:19]}…" if rec.get("payload_digest") else ""
        print(f"    #{e['index']:<5} {rec['type']:<32} by {rec['actor']}{digest}")
    released = next(e for e in entries if e["record"]["type"] == "computation.released")
    vkey = auditor.trail.verifier_key()
    deadline = time.monotonic() + timeout
    while True:
        checkpoint = auditor.checkpoint(vkey)  # its signature checked with the log's key
        if checkpoint.size > released["index"]:
            break
        if time.monotonic() > deadline:
            raise ComputeDemoError("the release was not sealed into a checkpoint in time")
        time.sleep(0.2)
    proof = auditor.session.get(
        "/v1/ledger/proof/inclusion", index=released["index"], tree_size=checkpoint.size
    )
    h = MerkleHasher(os.environ.get("PDX_LEDGER_HASH", "sha256"))
    verify_inclusion(
        h,
        released["index"],
        checkpoint.size,
        h.leaf(base64.b64decode(released["leaf"])),
        [base64.b64decode(x) for x in proof["hashes"]],
        checkpoint.root,
    )
    print(
        f"    entry #{released['index']} (the release) is in the signed checkpoint of "
        f"{checkpoint.size} entries: inclusion proof verified with the public key alone"
    )
    return entries


def run_compute_demo(
    client: httpx.Client,
    creds: dict[str, Any],
    *,
    node_held: bool = True,
    fl_rounds: int = 5,
    rows: tuple[int, int, int] = (220, 180, 260),
    timeout: float = 600,
) -> dict[str, Any]:
    """Run the computation scenario; returns the ids it created and the three results.

    `node_held`: the third hospital keeps its rows on its own node (an embedded PySyft
    Datasite); the others let the platform hold them encrypted.
    """
    try:
        return _scenario(
            client, creds, node_held=node_held, fl_rounds=fl_rounds, rows=rows, timeout=timeout
        )
    except PdxError as exc:  # the SDK's one-line problem: which request, what the server said
        raise ComputeDemoError(str(exc)) from None


def _scenario(
    client: httpx.Client,
    creds: dict[str, Any],
    *,
    node_held: bool,
    fl_rounds: int,
    rows: tuple[int, int, int],
    timeout: float,
) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    _step(1, "The system administrator admits three district hospitals and an enterprise")
    admin = _login(client, creds, "operator-admin")
    hospitals: list[dict[str, Any]] = []
    for name in HOSPITALS:
        org, issued = _organisation(client, admin, f"{name} District Hospital {stamp}", "provider")
        hospital = _sdk(client, Provider, issued)
        # Its signing key is made here, on the hospital's side; only the public half is sent.
        hospital.use_key(PartyKey.generate())
        hospitals.append({"name": name, "org": org, "sdk": hospital})
    ent_org, issued = _organisation(
        client, admin, f"Riverside Health Analytics {stamp}", "enterprise"
    )
    enterprise = _sdk(client, Enterprise, issued)

    _step(2, "Each hospital registers its ward readings (general-4, conditional)")
    for i, (h, n) in enumerate(zip(hospitals, rows, strict=True)):
        on_node = node_held and i == len(hospitals) - 1
        if on_node:
            h["sdk"].register_node("embedded")
        meta = ward_metadata(f"{h['name']} ward readings", h["name"])
        ds = h["sdk"].register(meta, ward_readings(i, n).encode(), node=on_node)
        h["dataset"] = ds.id
        where = "rows stay on its own node (PySyft Datasite)" if on_node else "stored encrypted"
        print(f"    {h['name']}: {ds.rows} rows, {where}; ledger #{ds.ledger_index}")

    _step(3, "The enterprise proposes a purpose-bound contract to each; each hospital signs")
    for h in hospitals:
        agreement = f"DUA-{stamp}-{h['name'][:3].upper()}"
        proposed = enterprise.propose_agreement(
            h["org"], [h["dataset"]], PURPOSE, agreement_id=agreement
        )
        signed = h["sdk"].sign_agreement(proposed.id)
        print(f"    contract with {h['name']}: {signed.lifecycle}, ledger #{signed.ledger_index}")

    _step(4, f"Mean {MEASURE} across all three (Paillier; partials encrypted per hospital)")
    mean = _run(
        enterprise,
        hospitals,
        "stats.mean",
        {"columns": [MEASURE], "clip": [60.0, 240.0]},
        timeout,
    )
    _print_mean(mean)

    _step(5, f"Histogram of {MEASURE} (CKKS; small bins suppressed, DP noise)")
    histogram = _run(
        enterprise,
        hospitals,
        "stats.histogram",
        {"columns": [MEASURE], "bins": 8, "range": [80.0, 200.0]},
        timeout,
    )
    _print_histogram(histogram)

    _step(6, "A federated readmission model (FedAvg, CKKS-aggregated updates)")
    model = _run(
        enterprise,
        hospitals,
        "fl.logreg",
        {"features": [MEASURE, "age"], "label": "readmitted", "rounds": fl_rounds},
        timeout,
    )
    out = model["output"]
    coef = ", ".join(f"{f}={c:+.3f}" for f, c in zip(out["features"], out["coef"], strict=True))
    print(f"    model over {out['rows']} records, {len(out['rounds'])} rounds: {coef}")
    if out.get("dp"):
        print(f"    trained under DP: ε={out['dp']['epsilon']}, σ={out['dp']['sigma']:.3g}")
        print(
            "    (record-level DP-SGD inside each provider's sandbox: per-example clipping "
            "and Gaussian noise, the row count released only noisy)"
        )

    _step(7, "The auditor reads the histogram job's trail on the ledger")
    if "auditor" not in creds:
        raise ComputeDemoError("credentials have no client 'auditor'")
    entries = _audit(_sdk(client, Auditor, creds["auditor"]), histogram["computation_id"])
    return {
        "hospitals": hospitals,
        "enterprise_org": ent_org,
        "results": {"mean": mean, "histogram": histogram, "model": model},
        "ledger_entries": entries,
    }
