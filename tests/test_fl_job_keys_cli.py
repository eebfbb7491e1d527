"""`pdx compute request --operator fl.logreg --wait` closes the rounds under the requester's key.

Against a real server (uvicorn subprocess), as `tests/test_sdk_cli.py`. On the code before
this change the server refused the job key for `fl.logreg` (422, exit 1); with the job key
and no one closing the rounds, the CLI would have waited until the run's deadline.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.server import RealServer
from tests.test_api_contracts import dataset_metadata, measure_csv
from tests.test_sdk_cli import _login, pdx, server  # noqa: F401  (the module's real server)


def test_the_cli_trains_under_its_own_key_and_opens_the_model(
    server: RealServer,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inputs = []
    for i, name in enumerate(("provider-transport", "provider-health")):
        config = tmp_path / name
        _login(server, name, config, capsys, monkeypatch)
        meta = tmp_path / f"meta-{i}.json"
        meta.write_text(dataset_metadata(f"cli fl wards {i}", "general-1", "open"))
        data = tmp_path / f"wards-{i}.csv"
        data.write_text(measure_csv(30 + i, 40))
        register = ["datasets", "register", str(data), "--metadata", f"@{meta}", "--json"]
        code, out, err = pdx(register, config, capsys, monkeypatch)
        assert code == 0, err
        inputs.append(json.loads(out)["id"])
    ent = tmp_path / "ent"
    _login(server, "enterprise-fintech", ent, capsys, monkeypatch)
    monkeypatch.setenv("PDX_JOB_KEY_PASSPHRASE", "correct horse battery staple")
    params = {"features": ["systolic_bp", "age"], "label": "readmitted", "rounds": 3,
              "local_epochs": 5}  # fmt: skip
    request = ["compute", "request", "--operator", "fl.logreg", "--input", inputs[0]]
    request += ["--input", inputs[1], "--params", json.dumps(params)]
    request += ["--purpose", "ward statistics", "--wait", "--timeout", "300", "--json"]
    code, out, err = pdx(request, ent, capsys, monkeypatch)
    assert code == 0, err
    job = json.loads(out)
    assert job["state"] == "released", job
    events = [t["event"] for t in job["transitions"]]
    assert "fl_round_posted" in events  # this machine closed the rounds
    code, out, err = pdx(["compute", "result", job["id"], "--json"], ent, capsys, monkeypatch)
    assert code == 0, err
    model = json.loads(out)["output"]
    assert model["decrypted_by"] == "requester" and model["rows"] == 80
    assert len(model["coef"]) == 2 and model["rounds_run"] >= 1
