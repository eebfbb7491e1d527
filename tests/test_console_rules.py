"""The provider's analysis rules in the console: read on the dataset page, replaced by a form.

A save is one `PUT /v1/datasets/{id}/analysis-rules`: one decision, one ledger entry by
the person. Without the CSRF token nothing changes; another provider cannot set them.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gateway.console import i18n
from gateway.platform import Platform
from tests.helpers.api import login
from tests.helpers.s12_console_market import console_login, entries_since, ledger_size
from tests.test_market_flow import register


def _rules(api: TestClient, headers: dict[str, str], dataset_id: str) -> dict[str, Any]:
    r = api.get(f"/v1/datasets/{dataset_id}/analysis-rules", headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_provider_reads_and_sets_its_datasets_rules_and_no_one_else_can(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    prov = login(api, creds, "provider-transport")
    ds = register(api, prov, "ridership by stop", "general-2", "conditional")["id"]
    csrf = console_login(api, creds, "provider-transport")
    page = api.get(f"/console/provider/datasets/{ds}")
    assert page.status_code == 200
    assert 'data-testid="rules-version">' in page.text and 'value="stats.mean"' in page.text
    form = {
        "csrf": csrf, "operators": ["stats.count", "stats.mean"], "min_cohort": "15",
        "epsilon_per_query": "0.5", "budget_epsilon": "4", "requester_budget_epsilon": "",
        "columns": "", "derived_from": "",
    }  # fmt: skip

    # Without the token: refused, rules unchanged.
    no_token = {k: v for k, v in form.items() if k != "csrf"}
    assert api.post(f"/console/provider/datasets/{ds}/rules", data=no_token).status_code == 403
    assert _rules(api, prov, ds)["version"] == 0

    # A malformed field is said, and nothing is sent.
    start = ledger_size(platform)
    r = api.post(
        f"/console/provider/datasets/{ds}/rules",
        data=form | {"columns": "[not json"},
        follow_redirects=True,
    )
    assert i18n.t("zh-CN", "rules_bad_json") in r.text
    assert _rules(api, prov, ds)["version"] == 0

    r = api.post(f"/console/provider/datasets/{ds}/rules", data=form, follow_redirects=True)
    assert r.status_code == 200 and i18n.t("zh-CN", "rules_saved") in r.text
    saved = _rules(api, prov, ds)
    assert saved["version"] == 1
    assert saved["rules"]["operators"] == ["stats.count", "stats.mean"]
    assert saved["rules"]["min_cohort"] == 15 and saved["rules"]["epsilon_per_query"] == 0.5
    assert saved["rules"].get("requester_budget_epsilon") is None
    entries = [
        e for e in entries_since(platform, start) if e["type"] == "dataset.analysis_rules_set"
    ]
    person = creds["provider-transport"]["person"]["person_id"]
    assert len(entries) == 1 and entries[0]["actor"] == person, entries
    # The page shows what was saved.
    page = api.get(f"/console/provider/datasets/{ds}")
    assert 'value="stats.mean" checked' in page.text and 'value="15"' in page.text

    # Out of range: the API's own refusal is shown, the rules stay.
    r = api.post(
        f"/console/provider/datasets/{ds}/rules",
        data=form | {"epsilon_per_query": "50"},
        follow_redirects=True,
    )
    assert i18n.t("zh-CN", "rules_saved") not in r.text
    assert _rules(api, prov, ds)["version"] == 1

    # Another provider's person, through its own console session: refused, nothing changes.
    other = TestClient(api.app)
    csrf_other = console_login(other, creds, "provider-health")
    start = ledger_size(platform)
    r = other.post(
        f"/console/provider/datasets/{ds}/rules",
        data=form | {"csrf": csrf_other, "min_cohort": "1"},
        follow_redirects=True,
    )
    assert i18n.t("zh-CN", "rules_saved") not in r.text
    assert _rules(api, prov, ds)["rules"]["min_cohort"] == 15
    assert not [e for e in entries_since(platform, start) if e["type"].startswith("dataset.")]
