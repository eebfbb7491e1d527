"""A provider approves a run and then its release in the console (SQLite and PostgreSQL): each
verdict is the stage the provider saw, sent to `approve-run` / `approve-release` where the
server has them and to `/approve` where it does not, and each is one ledger entry."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from gateway.platform import Platform
from tests.helpers.api import login
from tests.helpers.i20_console import csrf_of, form_login
from tests.test_api_computations import PURPOSE, ledger_types, wait_for
from tests.test_api_contracts import active_contract, measure_csv, register_dataset


def _approve_in_console(api: TestClient, comp_id: str, state: str) -> None:
    page = api.get("/console/provider")
    assert page.status_code == 200
    form = rf'action="/console/provider/computations/{comp_id}/approve"(.*?)</form>'
    row = re.search(form, page.text, re.S)
    assert row, page.text
    shown = re.search(r'name="state" value="([^"]+)"', row.group(1))
    assert shown and shown.group(1).replace("-", "_") == state
    r = api.post(
        f"/console/provider/computations/{comp_id}/approve",
        data={"csrf": csrf_of(page.text), "state": shown.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


def test_a_provider_approves_the_run_then_the_release_in_the_console(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    prov = login(capi, creds, "provider-transport")
    ent = login(capi, creds, "enterprise-fintech")
    org = creds["provider-transport"]["org_id"]
    ds = register_dataset(capi, prov, measure_csv(5, 60), "Ward readings", "general-4")
    active_contract(capi, ent, prov, org, [ds["id"]], PURPOSE)
    body = {
        "operator": "stats.histogram",
        "inputs": [ds["id"]],
        "params": {"columns": ["systolic_bp"], "bins": 4, "range": [80.0, 180.0]},
        "purpose": PURPOSE,
    }
    r = capi.post("/v1/computations", headers=ent, json=body)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    assert r.json()["state"].replace("-", "_") == "awaiting_approval"
    assert form_login(capi, creds["provider-transport"]["person"]).status_code == 303
    _approve_in_console(capi, comp_id, "awaiting_approval")
    held = wait_for(capi, ent, comp_id, "review", "failed", "rejected")
    assert held["state"] == "review", held.get("error")
    _approve_in_console(capi, comp_id, "review")
    done = wait_for(capi, ent, comp_id, "released", "failed", "rejected")
    assert done["state"] == "released", done.get("error")
    types = [t for _, t in ledger_types(platform, comp_id)]
    assert types.count("computation.approved") >= 1 and "computation.released" in types
