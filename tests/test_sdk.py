"""The pdx-client SDK against the real server: every role's main flow, trails, proofs."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.platform import Platform
from ledger import hasher
from ledger.merkle import TreeHasher, consistency_proof, inclusion_proof, root
from tests.helpers.api import EXAMPLE_CSV, assert_problem, login
from tests.helpers.clocks import eventually
from tests.helpers.i15_sdk import SDK, demo, new_client, sdk_login
from tests.test_api_contracts import dataset_metadata, measure_csv

from pdx_client import (  # isort: skip
    ApiError,
    Auditor,
    CheckpointStore,
    Enterprise,
    Provider,
    SecurityAdmin,
    VerificationError,
)
from pdx_client.proofs import Checkpoint, MerkleHasher, verify_consistency, verify_inclusion

SERVER_PACKAGES = ("gateway", "exchange", "sandbox", "ledger", "crypto", "policies", "audit")


def test_the_sdk_imports_without_the_server_or_its_dependencies() -> None:
    """Every SDK module imports with the server packages and their dependencies blocked."""
    blocked = [*SERVER_PACKAGES, "fastapi", "sqlalchemy", "starlette", "regopy", "tenseal"]
    script = f"""
import importlib, pkgutil, sys
BLOCKED = {blocked!r}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
sys.path.insert(0, {str(SDK)!r})
import pdx_client
for m in pkgutil.walk_packages(pdx_client.__path__, "pdx_client."):
    if m.name.endswith("__main__"):
        continue
    importlib.import_module(m.name)
print(sorted(k for k in sys.modules if k.split(".")[0] in BLOCKED))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd="/", check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _node(h: TreeHasher, leaves: list[bytes], level: int, index: int) -> bytes:
    return root(h, leaves[index << level : (index + 1) << level])


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13, 64, 100])
def test_sdk_proof_checks_agree_with_the_ledger_and_refuse_tampering(size: int) -> None:
    """The SDK's RFC 9162 checks accept the server's proofs and refuse altered ones."""
    server_h = hasher("sha256")
    leaves = [server_h.leaf(f"leaf {i}".encode()) for i in range(size)]

    h = MerkleHasher()
    top = root(server_h, leaves)
    for index in range(size):
        proof = inclusion_proof(
            server_h, index, size, lambda lvl, i: _node(server_h, leaves, lvl, i)
        )
        verify_inclusion(h, index, size, leaves[index], proof, top)
        if proof:
            bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
            with pytest.raises(VerificationError):
                verify_inclusion(h, index, size, leaves[index], bad, top)
    for first in range(1, size):
        old = root(server_h, leaves[:first])
        proof = consistency_proof(
            server_h, first, size, lambda lvl, i: _node(server_h, leaves, lvl, i)
        )
        verify_consistency(h, first, size, old, top, proof)
        forked = h.leaf(b"another history")
        with pytest.raises(VerificationError):
            verify_consistency(h, first, size, forked, top, proof)


PURPOSE = "readmission risk research"


def _meta(name: str, level: str, **over: Any) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads(dataset_metadata(name, level))
    meta.update(over)
    return meta


def test_provider_scan_reports_every_problem_at_once_and_stores_nothing(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    provider = demo(api, creds, Provider, "provider-transport")
    with platform.session() as s:
        size_before = platform.ledger.size(s)
    before = len(provider.datasets())
    report = provider.scan(_meta("transit trips", "general-1"), EXAMPLE_CSV)
    assert not report.ok
    codes = [f.type for f in report.findings]
    # Registration would stop at the first of these; the dry run names all of them.
    assert codes.count("level-below-content") == 1
    assert codes.count("invalid-metadata") >= 2  # pi and sensitive_pi both unset
    assert report.required_level is not None and report.required_level != "general-1"
    assert any(f["detections"] for f in report.fields)
    # Invalid metadata is reported field by field beside the content's findings.
    broken = provider.scan({"name": "x", "level": "nope"}, EXAMPLE_CSV)
    assert len([f for f in broken.findings if f.type == "invalid-metadata"]) >= 3
    assert broken.rows == report.rows
    # Nothing was stored or recorded.
    assert len(provider.datasets()) == before
    with platform.session() as s:
        assert platform.ledger.size(s) == size_before
    # The scan at the required level with the flags set is clean, and so is registering.
    good = _meta("transit trips", report.required_level, pi=True, sensitive_pi=True)
    assert provider.scan(good, EXAMPLE_CSV).ok
    ds = provider.register(good, EXAMPLE_CSV)
    assert ds.ledger_index is not None
    # A consumer may not scan: the same policy as registration.
    enterprise = demo(api, creds, Enterprise, "enterprise-fintech")
    with pytest.raises(ApiError) as refused:
        Provider(enterprise.session).scan(good, EXAMPLE_CSV)
    assert refused.value.status == 403 and refused.value.code == "forbidden"


def test_three_hospitals_end_to_end_through_the_sdk(
    capi: TestClient, creds: dict[str, Any]
) -> None:
    """Must-show 1's flow: register, agree, request, approve run and release, result."""
    ent_org, ent_id, ent_secret = new_client(capi, creds, "Riverside Analytics", "enterprise")
    enterprise = sdk_login(capi, Enterprise, ent_id, ent_secret)
    hospitals: list[Provider] = []
    inputs: list[str] = []
    for i, name in enumerate(("Northgate", "Lakeside", "Hillcrest")):
        org, cid, secret = new_client(capi, creds, f"{name} Hospital", "provider")
        hospital = sdk_login(capi, Provider, cid, secret)
        ds = hospital.register(_meta(f"{name} wards", "general-4"), measure_csv(i, 40))
        agreement = enterprise.propose_agreement(org, [ds.id], PURPOSE, agreement_id="DUA-1")
        assert hospital.sign_agreement(agreement.id).lifecycle == "active"
        hospitals.append(hospital)
        inputs.append(ds.id)
    assert {a.provider_org for a in enterprise.agreements()} >= {h.me().org_id for h in hospitals}
    seen: list[str] = []
    result = enterprise.compute(
        "stats.mean",
        inputs,
        {"columns": ["systolic_bp"], "clip": [60.0, 240.0]},
        PURPOSE,
        approvers=hospitals,
        timeout=300,
        progress=lambda job: seen.append(job.stage),
    )
    assert result.output["groups"][0]["values"]["mean(systolic_bp)"] > 60
    # The SDK generated the job key here; the platform returned ciphertext it opened.
    assert result.output["decrypted_by"] == "requester"
    assert "awaiting_approval" in seen and seen[-1] == "released"
    # An approval for the wrong stage is refused before anything is sent.
    with pytest.raises(Exception) as wrong:
        hospitals[0].approve(result.computation_id, "run")
    assert "not waiting for a run approval" in str(wrong.value)
    # Another organisation's result is refused with the server's problem.
    other = demo(capi, creds, Enterprise, "enterprise-fintech")
    with pytest.raises(ApiError) as refused:
        other.result(result.computation_id)
    assert refused.value.status == 403


def test_auditor_and_security_admin_read_what_their_role_reads(
    api: TestClient, creds: dict[str, Any]
) -> None:
    auditor = demo(api, creds, Auditor, "auditor")
    security = demo(api, creds, SecurityAdmin, "security-admin")
    assert auditor.policy()["revision"] >= 1
    entries = auditor.ledger_entries()
    assert entries and entries[0]["index"] == 0
    assert any(k for k in security.keys())
    provider_org = creds["provider-transport"]["org"]
    org_id = demo(api, creds, Provider, "provider-transport").me().org_id
    assert provider_org  # the seeded name; the id comes from /v1/me
    assert all(org_id in e.parties for e in auditor.entries_of(org_id))
    with pytest.raises(ApiError) as refused:  # the auditor changes nothing (三员分立)
        SecurityAdmin(auditor.session).put_matrix(auditor.policy()["matrix"])
    assert refused.value.status == 403


def _sealed(platform: Platform, index: int) -> bool:
    with platform.session() as s:
        return platform.ledger.sealed_size(s) > index


def test_parties_read_and_verify_their_own_entries_and_no_one_elses(
    api: TestClient, creds: dict[str, Any], platform: Platform, tmp_path: Any
) -> None:
    """Must-show 3 over the API: own entries with proofs; a third organisation is refused."""
    provider = demo(api, creds, Provider, "provider-transport")
    enterprise = demo(api, creds, Enterprise, "enterprise-fintech")
    other = demo(api, creds, Provider, "provider-health")
    ds = provider.register(_meta("trail rows", "general-2"), measure_csv(1, 20))
    deal = enterprise.propose_agreement(provider.me().org_id, [ds.id], PURPOSE)
    assert deal.ledger_index is not None and ds.ledger_index is not None
    assert eventually(lambda: _sealed(platform, max(ds.ledger_index or 0, deal.ledger_index or 0)))
    key = api.get("/v1/ledger/verifier-key")  # public: no token
    assert key.status_code == 200, key.text
    vkey = key.text.strip()
    assert api.get("/v1/ledger/checkpoint").status_code == 200
    for party, own in ((provider, ds.ledger_index), (enterprise, deal.ledger_index)):
        store = CheckpointStore(tmp_path / f"{party.me().org_id}.json")
        checked = party.trail.verify(verifier_key=vkey, store=store)
        assert own in checked.verified
        entry = party.trail.entry(own)
        assert entry.inclusion is not None and party.me().org_id in entry.parties
    # The third organisation: refused for the others' entries and listings.
    for index in (ds.ledger_index, deal.ledger_index):
        with pytest.raises(ApiError) as refused:
            other.trail.entry(index)
        assert refused.value.status == 403 and refused.value.code == "forbidden"
    with pytest.raises(ApiError) as refused:
        other.trail.entries(provider.me().org_id)
    assert refused.value.status == 403
    assert ds.ledger_index not in [e.index for e in other.trail.entries()]
    r = api.get(
        "/v1/trail/entries",
        params={"org": provider.me().org_id},
        headers=login(api, creds, "enterprise-fintech"),
    )
    assert_problem(r, 403, "forbidden")


def test_trail_verify_detects_a_rolled_back_or_forked_log(
    api: TestClient, creds: dict[str, Any], platform: Platform, tmp_path: Any
) -> None:
    provider = demo(api, creds, Provider, "provider-transport")
    ds = provider.register(_meta("fork rows", "general-2"), measure_csv(2, 20))
    assert eventually(lambda: _sealed(platform, ds.ledger_index or 0))
    vkey = api.get("/v1/ledger/verifier-key").text.strip()
    store = CheckpointStore(tmp_path / "seen.json")
    provider.trail.verify(verifier_key=vkey, store=store)
    seen = provider.trail.checkpoint(vkey)
    # Remembered a bigger tree than the log now shows: a rollback.
    store.put(Checkpoint(seen.origin, seen.size + 5, seen.root, ""))
    with pytest.raises(VerificationError, match="rolled back"):
        provider.trail.verify(verifier_key=vkey, store=store)
    # Remembered another root for an earlier size: a fork.
    store.put(Checkpoint(seen.origin, max(1, seen.size - 1), b"\x07" * 32, ""))
    with pytest.raises(VerificationError, match="fork|prefix"):
        provider.trail.verify(verifier_key=vkey, store=store)
    # A checkpoint signed by another key is refused before anything else.
    with pytest.raises(VerificationError):
        provider.trail.verify(verifier_key=_other_key(vkey), store=None)


def _other_key(vkey: str) -> str:
    import hashlib

    name = vkey.split("+")[0]
    raw = b"\x01" + bytes(range(32))
    kh = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4].hex()
    return f"{name}+{kh}+{base64.b64encode(raw).decode()}"


def test_a_token_near_expiry_is_renewed_before_use(api: TestClient, creds: dict[str, Any]) -> None:
    now = [0.0]
    c = creds["provider-transport"]
    from pdx_client import Session

    session = Session(
        "http://testserver",
        c["client_id"],
        c["client_secret"],
        transport=api._transport,
        clock=lambda: now[0],
    )
    session.login()
    first = session._token
    now[0] = session.token_expires_in - 10  # inside the refresh margin
    assert session.get("/v1/me")["client_id"] == c["client_id"]
    assert session._token != first
    assert time.monotonic() > 0


def test_sdk_reads_verifier_keys_whose_base64_contains_plus() -> None:
    """A key's base64 may contain "+", the separator: about one key in three does."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from pdx_client.proofs import NoteVerifier

    from ledger.note import verifier_key

    seen = 0
    for _ in range(200):
        private = Ed25519PrivateKey.generate()
        vkey = verifier_key("pdx.test/log", private.public_key())
        if "+" not in vkey.split("+", 2)[2]:
            continue
        seen += 1
        verifier = NoteVerifier(vkey)  # before the fix: "not a signed-note verifier key"
        assert verifier.name == "pdx.test/log"
        assert verifier.verify(b"checkpoint", private.sign(b"checkpoint"))
        assert not verifier.verify(b"checkpoint", private.sign(b"another"))
        if seen == 5:
            break
    assert seen == 5
