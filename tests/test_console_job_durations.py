"""Job durations on the enterprise's page: waiting (request → running) and running (→ end)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.console import i18n
from gateway.console.job_plots import durations
from gateway.platform import Platform
from tests.helpers.api import compute_client, login
from tests.helpers.s12_console_market import console_login
from tests.test_api_computations import wait_for
from tests.test_api_contracts import active_contract, measure_csv, register_dataset

PURPOSE = "service planning research"


@pytest.fixture
def capi(platform: Platform, creds: dict[str, Any]) -> Iterator[TestClient]:
    yield from compute_client(platform)


def _step(state: str, at: str) -> dict[str, str]:
    return {"state": state, "event": state, "at": at, "by": "x"}


def test_waiting_and_running_come_from_the_transitions() -> None:
    recovered = {
        "created_at": "2026-12-05T08:00:00Z",
        "transitions": [
            _step("awaiting_approval", "2026-12-05T08:00:00Z"),
            _step("approved", "2026-12-05T08:00:30Z"),
            _step("running", "2026-12-05T08:01:00Z"),
            _step("running", "2026-12-05T08:02:00Z"),  # recovered: still the first start
            _step("released", "2026-12-05T08:02:30Z"),
        ],
    }
    found = durations(recovered)
    assert found is not None and found[1:] == (60.0, 90.0)
    never_ran = {"created_at": "2026-12-05T08:00:00Z",
                 "transitions": [_step("rejected", "2026-12-05T08:00:10Z")]}  # fmt: skip
    assert durations(never_ran) is None
    still_running = {"created_at": "2026-12-05T08:00:00Z",
                     "transitions": [_step("running", "2026-12-05T08:00:10Z")]}  # fmt: skip
    assert durations(still_running) is None


def test_the_enterprise_sees_its_jobs_durations(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    ent = login(capi, creds, "enterprise-fintech")
    prov = login(capi, creds, "provider-transport")
    org = creds["provider-transport"]["org_id"]
    ds = register_dataset(capi, prov, measure_csv(0, 40), "stop readings", "general-2")
    active_contract(capi, ent, prov, org, [ds["id"]], PURPOSE)
    label = i18n.t("zh-CN", "job_durations")
    console_login(capi, creds, "enterprise-fintech")
    empty = capi.get("/console/enterprise")
    assert f'aria-label="{label}"' in empty.text
    assert f"<title>{i18n.t('zh-CN', 'job_running_s')}</title>" not in empty.text
    r = capi.post(
        "/v1/computations",
        headers=ent,
        json={"operator": "stats.count", "inputs": [ds["id"]], "purpose": PURPOSE},
    )
    assert r.status_code == 201, r.text
    wait_for(capi, ent, r.json()["id"], "released", "review")
    page = capi.get("/console/enterprise")
    assert page.status_code == 200
    assert f"<title>{i18n.t('zh-CN', 'job_running_s')}</title>" in page.text
    assert f"<title>{i18n.t('zh-CN', 'job_waiting_s')}</title>" in page.text
