"""The user verbs against a real server (uvicorn subprocess): must-show 3 and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.api import EXAMPLE_CSV
from tests.helpers.clocks import eventually
from tests.helpers.i15_sdk import SDK  # noqa: F401  (puts the SDK on sys.path)
from tests.helpers.server import RealServer, start_server
from tests.test_api_contracts import dataset_metadata, measure_csv

from pdx_client.cli import main  # isort: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    srv = start_server(tmp_path_factory.mktemp("sdk-cli") / "home")
    try:
        yield srv
    finally:
        srv.stop()


def _creds(server: RealServer) -> dict[str, Any]:
    creds: dict[str, Any] = json.loads((server.home / "demo-credentials.json").read_text())
    return creds


def pdx(
    args: list[str], config: Path, capsys: pytest.CaptureFixture[str], mp: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    mp.setenv("PDX_CONFIG_DIR", str(config))
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _login(server: RealServer, name: str, config: Path, capsys: Any, mp: Any) -> None:
    c = _creds(server)[name]
    code, _, err = pdx(
        [
            "login",
            "--url",
            server.url,
            "--client-id",
            c["client_id"],
            # One argument with "=": a secret may begin with "-", which argparse would
            # otherwise take for an option.
            f"--client-secret={c['client_secret']}",
        ],
        config,
        capsys,
        mp,
    )
    assert code == 0, err


def _sealed(server: RealServer, index: int) -> bool:
    note = httpx.get(server.url + "/v1/ledger/checkpoint").text  # public: no token
    return int(note.split("\n")[1]) > index


def test_parties_verify_their_own_entries_with_pdx_trail_verify(
    server: RealServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Must-show 3: a provider and an enterprise verify their entries; a third is refused."""
    prov, ent, third = tmp_path / "prov", tmp_path / "ent", tmp_path / "third"
    _login(server, "provider-transport", prov, capsys, monkeypatch)
    _login(server, "enterprise-fintech", ent, capsys, monkeypatch)
    _login(server, "provider-health", third, capsys, monkeypatch)
    meta = tmp_path / "meta.json"
    meta.write_text(dataset_metadata("cli wards", "general-2"))
    data = tmp_path / "wards.csv"
    data.write_text(measure_csv(3, 30))
    code, out, err = pdx(
        ["datasets", "register", str(data), "--metadata", f"@{meta}", "--json"],
        prov,
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    ds = json.loads(out)
    prov_org = json.loads((prov / "profile.json").read_text())["org_id"]
    code, out, err = pdx(
        [
            "agreements",
            "propose",
            "--provider",
            prov_org,
            "--dataset",
            ds["id"],
            "--purpose",
            "ward statistics",
            "--json",
        ],
        ent,
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    deal = json.loads(out)
    assert eventually(lambda: _sealed(server, max(ds["ledger_index"], deal["ledger_index"])))

    for config, own in ((prov, ds["ledger_index"]), (ent, deal["ledger_index"])):
        code, out, err = pdx(["trail", "verify", "--json"], config, capsys, monkeypatch)
        assert code == 0, err
        first = json.loads(out)
        assert own in first["verified"] and first["previous_size"] is None
        # The checkpoint is remembered: the next run checks consistency with it.
        code, out, err = pdx(["trail", "verify", "--json"], config, capsys, monkeypatch)
        assert code == 0, err
        assert json.loads(out)["previous_size"] == first["checkpoint_size"]
        assert (config / "checkpoints.json").exists()

    code, out, err = pdx(["trail", "show", "--json"], third, capsys, monkeypatch)
    assert code == 0 and ds["ledger_index"] not in [e["index"] for e in json.loads(out)]
    code, out, err = pdx(["trail", "show", "--org", prov_org], third, capsys, monkeypatch)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("pdx: error: 403 forbidden")


def test_verbs_fail_in_one_line_with_non_zero_exits(
    server: RealServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    nobody = tmp_path / "nobody"
    monkeypatch.delenv("PDX_CLIENT_SECRET", raising=False)
    code, _, err = pdx(["datasets", "list"], nobody, capsys, monkeypatch)
    assert code == 2 and err.startswith("pdx: error: not logged in") and err.count("\n") == 1
    c = _creds(server)["provider-transport"]
    code, _, err = pdx(
        ["login", "--url", server.url, "--client-id", c["client_id"], "--client-secret", "bad"],
        nobody,
        capsys,
        monkeypatch,
    )
    assert code == 1 and err.startswith("pdx: error: 401") and err.count("\n") == 1
    code, _, err = pdx(
        ["login", "--url", "http://127.0.0.1:9", "--client-id", "x", "--client-secret", "y"],
        nobody,
        capsys,
        monkeypatch,
    )
    assert code == 1 and "not reachable" in err and err.count("\n") == 1

    prov = tmp_path / "prov"
    _login(server, "provider-transport", prov, capsys, monkeypatch)
    meta = json.loads(dataset_metadata("cli transit", "general-1"))
    code, out, err = pdx(
        ["datasets", "scan", str(EXAMPLE_CSV), "--metadata", json.dumps(meta), "--json"],
        prov,
        capsys,
        monkeypatch,
    )
    report = json.loads(out)
    assert code == 1 and not report["ok"] and len(report["findings"]) >= 3
    code, _, err = pdx(["compute", "approve", "no-such-job"], prov, capsys, monkeypatch)
    assert code == 1 and err.startswith("pdx: error: 404") and err.count("\n") == 1
    code, _, err = pdx(["compute", "status"], prov, capsys, monkeypatch)
    assert code == 2 and "needs the computation id" in err


def test_the_demo_leaves_the_live_policy_as_it_found_it(
    server: RealServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway.demo import run_demo

    creds = _creds(server)
    a = creds["auditor"]
    token = httpx.post(
        server.url + "/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": a["client_id"],
            "client_secret": a["client_secret"],
        },
    ).json()["access_token"]
    auditor = {"Authorization": f"Bearer {token}"}
    before = httpx.get(server.url + "/v1/policies", headers=auditor).json()
    run_demo(
        url=server.url,
        credentials=server.home / "demo-credentials.json",
        with_computations=False,
    )
    assert "grading matrix restored" in capsys.readouterr().out
    after = httpx.get(server.url + "/v1/policies", headers=auditor).json()
    assert after["revision"] > before["revision"]  # the demo did change it, then back
    assert after["matrix"] == before["matrix"]


def test_compute_keeps_the_job_key_on_the_requester_side_and_opens_the_result(
    server: RealServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`pdx compute request` generates the job key here, keeps it encrypted, and `result`
    decrypts what the platform returns as ciphertext."""
    prov, ent = tmp_path / "prov", tmp_path / "ent"
    _login(server, "provider-transport", prov, capsys, monkeypatch)
    _login(server, "enterprise-fintech", ent, capsys, monkeypatch)
    meta = tmp_path / "meta.json"
    meta.write_text(dataset_metadata("cli open wards", "general-1", "open"))
    data = tmp_path / "wards.csv"
    data.write_text(measure_csv(4, 30))
    code, out, err = pdx(
        ["datasets", "register", str(data), "--metadata", f"@{meta}", "--json"],
        prov,
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    ds = json.loads(out)["id"]
    request = ["compute", "request", "--operator", "stats.count", "--input", ds]
    request += ["--purpose", "ward statistics", "--wait", "--json"]
    monkeypatch.delenv("PDX_JOB_KEY_PASSPHRASE", raising=False)
    code, _, err = pdx(request, ent, capsys, monkeypatch)  # no terminal, no passphrase
    assert code == 2 and "PDX_JOB_KEY_PASSPHRASE" in err
    monkeypatch.setenv("PDX_JOB_KEY_PASSPHRASE", "correct horse battery staple")
    code, out, err = pdx(request, ent, capsys, monkeypatch)
    assert code == 0, err
    job = json.loads(out)
    assert job["state"] == "released", job
    kept = ent / "jobkeys" / f"{job['id']}.key"
    assert kept.stat().st_mode & 0o777 == 0o600
    assert kept.read_bytes().startswith(b"PDXJOBKEY1\n")  # encrypted, never the raw primes
    code, out, err = pdx(["compute", "result", job["id"], "--json"], ent, capsys, monkeypatch)
    assert code == 0, err
    output = json.loads(out)["output"]
    assert output["decrypted_by"] == "requester"
    assert output["groups"][0]["rows"] == 30  # general-1 open data: no DP noise
    monkeypatch.setenv("PDX_JOB_KEY_PASSPHRASE", "wrong")
    code, out, err = pdx(["compute", "result", job["id"]], ent, capsys, monkeypatch)
    assert code == 1 and out == "" and err.count("\n") == 1
