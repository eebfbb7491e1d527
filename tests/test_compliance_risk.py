"""DSL art. 30 risk assessment of important data: on demand, signed, on the ledger."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.cli import main
from gateway.platform import Platform
from ledger import decode_leaf
from tests.conftest import login
from tests.helpers.i16_compliance import failing, register_dataset, run_check

Creds = dict[str, dict[str, Any]]


def test_important_data_needs_a_current_risk_report(
    api: TestClient,
    creds: Creds,
    platform: Platform,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ds = register_dataset(api, creds, name="bus GPS traces", level="important")
    register_dataset(api, creds, name="station footfall")  # general-4: out of scope
    assert set(failing(run_check(api, creds))) == {"DSL-05"}  # important data, no report
    security = login(api, creds, "security-admin")
    r = api.post("/v1/compliance/risk-reports", headers=security)
    assert r.status_code == 201, r.text
    report = r.json()
    assert [d["id"] for d in report["datasets"]] == [ds["id"]]
    assert report["volumes"]["datasets"] == 1 and report["volumes"]["rows"] == ds["rows"]
    assert report["processing_activities"] == {"dataset.registered": 1}
    assert [x["id"] for x in report["risks"]] == ["DSL-05"]  # from the run that found it
    assert report["countermeasures"]["grading_cells"]["important/conditional"]["allow"]
    with platform.session() as s:
        leaf = decode_leaf(platform.ledger.entry(s, report["ledger_index"]).leaf)
    assert leaf["type"] == "risk.report_generated"
    assert leaf["payload_digest"] == report["digest"]
    assert failing(run_check(api, creds)) == {}
    assert (
        api.post("/v1/compliance/risk-reports", headers=login(api, creds, "auditor")).status_code
        == 403
    )
    monkeypatch.setenv("PDX_HOME", str(platform.settings.home))
    monkeypatch.setenv("PDX_DATABASE_URL", platform.settings.database_url)
    capsys.readouterr()
    assert main(["compliance", "risk-report"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert cli["volumes"]["datasets"] == 1 and cli["risks"] == []
