"""`pdx compute request --cohort-file ... --wait` runs the enterprise's side of the join itself.

Against a real server (uvicorn subprocess), as `tests/test_sdk_cli.py`. On the code before
this change the CLI had no `--cohort-file` (argparse exits 2) and the server refused
`params.cohort` (422).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.i18_wiring import LEGAL_BASIS, PURPOSE
from tests.helpers.s15_sdk_psi import cohort_data, cohort_network
from tests.helpers.server import RealServer
from tests.test_sdk_cli import _creds, pdx, server  # noqa: F401  (the module's real server)


def test_the_cli_joins_the_enterprises_own_cohort_file(
    server: RealServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = cohort_data(21, cohort=80, values=90, common=60)
    with httpx.Client(base_url=server.url, timeout=60) as api:
        net = cohort_network(api, _creds(server), data)  # type: ignore[arg-type]
        cid, secret = net["client"]
        config = tmp_path / "ent"
        login = ["login", "--url", server.url, "--client-id", cid, f"--client-secret={secret}"]
        code, _, err = pdx(login, config, capsys, monkeypatch)
        assert code == 0, err
        cohort = tmp_path / "customers.txt"
        cohort.write_text("\n".join(data.cohort) + "\n")
        stop = threading.Event()

        def approve() -> None:  # the bank approves the run when it is asked to
            with httpx.Client(base_url=server.url, timeout=60) as bank:
                while not stop.is_set():
                    listed = bank.get("/v1/computations", headers=net["bank"]).json()
                    for c in listed.get("items", []):
                        if c["state"] in ("awaiting_approval", "review"):
                            bank.post(f"/v1/computations/{c['id']}/approve",
                                      headers=net["bank"], json={})  # fmt: skip
                    stop.wait(0.2)

        thread = threading.Thread(target=approve, daemon=True)
        thread.start()
        monkeypatch.setenv("PDX_JOB_KEY_PASSPHRASE", "correct horse battery staple")
        params = {"cohort": {"key": "msisdn", "kind": "phone"}}
        request = ["compute", "request", "--operator", "psi.cardinality", "--input", net["ds"]]
        request += ["--params", json.dumps(params), "--purpose", PURPOSE]
        request += ["--legal-basis", LEGAL_BASIS, "--cohort-file", str(cohort)]
        request += ["--wait", "--timeout", "300", "--json"]
        try:
            code, out, err = pdx(request, config, capsys, monkeypatch)
        finally:
            stop.set()
            thread.join()
    assert code == 0, err
    job: dict[str, Any] = json.loads(out)
    assert job["state"] == "released", job
    assert job["params"]["cohort"]["size"] == len(data.cohort)
    assert "join_step_posted" in [t["event"] for t in job["transitions"]]
    code, out, err = pdx(["compute", "result", job["id"], "--json"], config, capsys, monkeypatch)
    assert code == 0, err
    opened = json.loads(out)["output"]
    eps = job["obligations"]["dp_epsilon"]
    assert opened["decrypted_by"] == "requester"
    assert abs(opened["intersection_size"] - 60) < 20 / eps
    # Without --cohort-file (or without --wait) nothing is requested: a usage error.
    bare = [a for a in request if a not in ("--cohort-file", str(cohort))]
    code, _, err = pdx(bare, config, capsys, monkeypatch)
    assert code != 0 and "--cohort-file" in err
