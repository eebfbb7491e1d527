"""The market part of `pdx demo` runs end to end against the app."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.demo_market import run_market_demo


def test_market_demo_runs_end_to_end(
    capi: TestClient, creds: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ids = run_market_demo(capi, creds)
    printed = capsys.readouterr().out
    assert "requested → offered → accepted → agreed → verified → finalized" in printed
    assert "(5) checkpoint signed by the ledger key" in printed
    agreement = capi.get(
        f"/v1/market/agreements/{ids['agreement']}",
        headers={"Authorization": "Bearer x"},
    )
    assert agreement.status_code == 401  # and the agreement is not public
    assert "requester: gross/total 0.90 CNY" in printed
