"""`pdx compute approve --sign` against a real server (uvicorn subprocess): keys stay local.

A provider approves the run and then the release from the CLI, signing each decision with
its own party key kept on its machine (the SDK's `Provider.approve`): the run over the
query digest, the release over the digest of the output it reviewed. The signature is
kept with the decision and its digest is the payload digest of the provider's ledger
entry, which the provider reads with `pdx trail show`. A key its organisation never
registered, and a key another organisation registered, are refused and change nothing.
Before `--sign` the CLI could not sign (argparse refuses the option: exit 2).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.clocks import eventually
from tests.helpers.i15_sdk import new_client
from tests.helpers.server import RealServer, start_server
from tests.test_api_computations import PURPOSE
from tests.test_api_contracts import active_contract, make_org, measure_csv, register_dataset
from tests.test_sdk_cli import pdx

from pdx_client.partykeys import PartyKey, release_message  # isort: skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = start_server(tmp_path_factory.mktemp("cli-sign") / "home")
    try:
        yield srv
    finally:
        srv.stop()


def _headers(api: httpx.Client, client_id: str, secret: str) -> dict[str, str]:
    r = api.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def _job(api: httpx.Client, ent: dict[str, str], comp_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v1/computations/{comp_id}", headers=ent).json()
    return body


def test_pdx_compute_approve_sign_keeps_the_signature_with_the_decision_and_on_the_trail(
    server: RealServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    creds = json.loads((server.home / "demo-credentials.json").read_text())
    api = httpx.Client(base_url=server.url, timeout=120)
    _, ent = make_org(api, creds, "Riverside Health Analytics", "enterprise")
    org, cid, secret = new_client(api, creds, "Northgate District Hospital", "provider")
    prov = _headers(api, cid, secret)
    ds = register_dataset(api, prov, measure_csv(1, 80), "ward readings", "general-4")
    active_contract(api, ent, prov, org, [ds["id"]], PURPOSE)
    params = {"columns": ["systolic_bp"], "bins": 8, "range": [80.0, 180.0]}
    r = api.post(
        "/v1/computations",
        headers=ent,
        json={
            "operator": "stats.histogram",
            "inputs": [ds["id"]],
            "params": params,
            "purpose": PURPOSE,
        },
    )
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    assert r.json()["state"] == "awaiting_approval"
    digest = api.get(f"/v1/computations/{comp_id}/query", headers=prov).json()["query_digest"]

    config = tmp_path / "hospital"
    code, _, err = pdx(
        ["login", "--url", server.url, "--client-id", cid, f"--client-secret={secret}"],
        config,
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    monkeypatch.setenv("PDX_PARTY_KEY_PASSPHRASE", "hospital key passphrase")

    # Refused: a key the hospital never registered, and one another organisation did.
    stranger = PartyKey.generate().save(tmp_path / "stranger.pem")
    other_org, other_cid, other_secret = new_client(api, creds, "Lakeside Clinic", "provider")
    theirs = PartyKey.generate()
    r = api.post(
        f"/v1/market/parties/{other_org}/keys",
        headers=_headers(api, other_cid, other_secret),
        json={"algorithm": "ed25519", "public_key": theirs.public_b64},
    )
    assert r.status_code == 201, r.text
    borrowed = theirs.save(tmp_path / "theirs.pem")
    before = _job(api, ent, comp_id)
    for pem in (stranger, borrowed):
        monkeypatch.delenv("PDX_PARTY_KEY_PASSPHRASE")
        code, _, err = pdx(
            ["compute", "approve", comp_id, "--sign", "--key", str(pem)],
            config,
            capsys,
            monkeypatch,
        )
        monkeypatch.setenv("PDX_PARTY_KEY_PASSPHRASE", "hospital key passphrase")
        assert code == 1 and err.count("\n") == 1, err
        assert "approval-signing-key-unknown" in err or "422" in err, err
        after = _job(api, ent, comp_id)
        assert (after["state"], after["decisions"]) == (before["state"], before["decisions"])

    # Signed for real with the hospital's own key, made and kept in its config dir.
    code, out, err = pdx(
        ["compute", "approve", comp_id, "--sign", "--register-key", "--json"],
        config,
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    mine = PartyKey.load(org_id=org, passphrase="hospital key passphrase")
    pem = next((config / "partykeys").glob("*.pem"))
    assert b"ENCRYPTED" in pem.read_bytes() and oct(pem.stat().st_mode & 0o777) == "0o600"
    run = [d for d in json.loads(out)["decisions"] if d.get("stage") == "run"]
    assert len(run) == 1 and run[0]["approve"]
    signed = run[0]["signature"]
    assert signed["key_id"] == mine.key_id and signed["signed"] == digest
    assert base64.b64decode(signed["public_key"]) == mine.public_raw

    held = eventually(
        lambda: _job(api, ent, comp_id)["state"] in ("review", "failed"), timeout=300, poll=0.5
    )
    assert held
    job = _job(api, ent, comp_id)
    assert job["state"] == "review", job.get("error")
    output = api.get(f"/v1/computations/{comp_id}/review", headers=prov).json()
    code, out, err = pdx(
        ["compute", "approve", comp_id, "--stage", "release", "--sign", "--json"],
        config,
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    done = json.loads(out)
    assert done["state"] == "released"
    (release,) = [d for d in done["decisions"] if d.get("stage") == "release"]
    assert release["signature"]["signed"] == release_message(comp_id, output)
    assert release["signature"]["key_id"] == mine.key_id

    # Both digests are the payload digests of the hospital's own ledger entries.
    approved = {t["event"]: t["ledger_index"] for t in done["transitions"]}
    code, out, err = pdx(["trail", "show", "--json"], config, capsys, monkeypatch)
    assert code == 0, err
    records = {e["index"]: e["record"] for e in json.loads(out)}
    decisions = {"provider_approved": signed, "release_approved": release["signature"]}
    for event, sig in decisions.items():
        assert event in approved, approved
        assert records[approved[event]]["payload_digest"] == sig["digest"], event
