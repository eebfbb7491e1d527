"""Issue 12 API consistency through the real app: one pagination, one state word, one time format.

Every list answers `{"items", "total", "next"}` and pages by an opaque cursor that the
server can tell was altered or moved to another list; `approve-run` and `approve-release`
are separate actions and the old `/approve` says it is deprecated; the demo leaves the
live policy as it found it.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gateway.deprecation import DEPRECATED_IN_0_2
from tests.conftest import login
from tests.helpers.api import assert_problem
from tests.helpers.server import start_server
from tests.test_api_computations import ask, setup_network

# (list path, the demo client allowed to read it)
LISTS = [
    ("/v1/organisations", "operator-admin"),
    ("/v1/kms/keys", "security-admin"),
    ("/v1/ledger/entries", "auditor"),
    ("/v1/ledger/blocks", "auditor"),
    ("/v1/operators", "enterprise-fintech"),
    ("/v1/datasets", "auditor"),
]
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
TIMESTAMPISH = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def walk(
    api: TestClient | httpx.Client, url: str, headers: dict[str, str], *, skipped: int = 0
) -> list[Any]:
    """Follow `next` to the end; every page agrees on `total`; returns every item.

    `skipped`: items on pages before `url` (0 when `url` is the first page).
    """
    seen: list[Any] = []
    total = None
    next_url: str | None = url
    while next_url is not None:
        r = api.get(next_url, headers=headers)
        assert r.status_code == 200, (next_url, r.text)
        page = r.json()
        assert set(page) == {"items", "total", "next"}, page.keys()
        total = page["total"] if total is None else total
        assert page["total"] == total
        seen += page["items"]
        next_url = page["next"]
        assert skipped + len(seen) <= total, "more items than the total"
    assert skipped + len(seen) == total
    return seen


def identity(item: Any) -> str:
    return json.dumps(item, sort_keys=True)


def test_every_list_pages_by_cursor_without_gap_or_repeat(
    api: TestClient, creds: dict[str, Any]
) -> None:
    from tests.test_api_contracts import measure_csv, register_dataset

    provider = login(api, creds, "provider-transport")
    for i in range(3):
        register_dataset(api, provider, measure_csv(i, 12), f"paged readings {i}", "general-2")
    for path, who in LISTS:
        headers = login(api, creds, who)
        whole = api.get(path, headers=headers, params={"limit": 500}).json()
        assert whole["next"] is None and len(whole["items"]) == whole["total"], path
        assert whole["total"] >= 2, (path, "too few items to page")
        paged = walk(api, path + "?limit=1", headers)
        assert [identity(i) for i in paged] == [identity(i) for i in whole["items"]], path


def test_audit_records_page_on_while_the_reads_are_audited(
    api: TestClient, creds: dict[str, Any]
) -> None:
    auditor = login(api, creds, "auditor")
    ids: list[str] = []
    url: str | None = "/v1/audit/records?limit=3"
    for _ in range(4):  # each read adds a record at the end; the pages before stay put
        assert url is not None
        page = api.get(url, headers=auditor).json()
        assert set(page) == {"items", "total", "next"}
        ids += [r["id"] for r in page["items"]]
        url = page["next"]
    assert len(ids) == len(set(ids)) == 12


def test_a_page_does_not_shift_when_items_are_added(api: TestClient, creds: dict[str, Any]) -> None:
    admin = login(api, creds, "operator-admin")
    first = api.get("/v1/organisations", params={"limit": 2}, headers=admin).json()
    before = first["total"]
    created = api.post(
        "/v1/organisations", json={"name": "Late Arrival Bureau", "kind": "provider"}, headers=admin
    )
    assert created.status_code == 201, created.text
    rest = walk(api, first["next"], admin, skipped=2)
    ids = [o["id"] for o in first["items"]] + [o["id"] for o in rest]
    assert len(ids) == len(set(ids)) == before + 1  # nothing repeated, nothing skipped
    assert ids[-1] == created.json()["id"]  # oldest first: the new one comes last


def _tampered(cursor: str) -> str:
    body, _, tag = cursor.partition(".")
    raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    forged = raw.replace(b'"s', b'"s0', 1) if b'"s' in raw else raw + b" "
    return base64.urlsafe_b64encode(forged).decode().rstrip("=") + "." + tag


def test_an_altered_or_moved_cursor_is_a_problem(api: TestClient, creds: dict[str, Any]) -> None:
    auditor = login(api, creds, "auditor")
    page = api.get("/v1/ledger/entries", params={"limit": 1}, headers=auditor).json()
    cursor = re.search(r"cursor=([^&]+)", page["next"]).group(1)  # type: ignore[union-attr]
    cursor = httpx.URL("?cursor=" + cursor).params["cursor"]
    ok = api.get("/v1/ledger/entries", params={"limit": 1, "cursor": cursor}, headers=auditor)
    assert ok.status_code == 200, ok.text
    for params, path in (
        ({"cursor": _tampered(cursor)}, "/v1/ledger/entries"),  # its key changed
        ({"cursor": cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")}, "/v1/ledger/entries"),
        ({"cursor": "not-a-cursor"}, "/v1/ledger/entries"),
        ({"cursor": cursor, "type": "dataset.registered"}, "/v1/ledger/entries"),  # new filter
        ({"cursor": cursor}, "/v1/ledger/blocks"),  # another list
        ({"cursor": cursor}, "/v1/datasets"),
    ):
        body = assert_problem(api.get(path, params=params, headers=auditor), 400, "invalid-cursor")
        assert body["title"] == "Invalid cursor"


def _timestamps(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _timestamps(v)]
    if isinstance(value, list):
        return [t for v in value for t in _timestamps(v)]
    return [value] if isinstance(value, str) and TIMESTAMPISH.match(value) else []


def test_timestamps_are_rfc3339_utc_with_z_everywhere(
    api: TestClient, creds: dict[str, Any]
) -> None:
    sec = login(api, creds, "security-admin")
    admin = login(api, creds, "operator-admin")
    bodies = [
        api.get("/v1/kms/keys", headers=sec).json(),
        api.get("/v1/kms/rotation-due", headers=sec).json(),
        api.get("/v1/policies", headers=sec).json(),
        api.get("/v1/policies/history", headers=sec).json(),
        api.get("/v1/organisations", headers=admin).json(),
        api.get("/v1/datasets", headers=login(api, creds, "auditor")).json(),
    ]
    found = [t for b in bodies for t in _timestamps(b)]
    assert len(found) > 10
    bad = [t for t in found if not RFC3339_Z.match(t)]
    assert bad == []


def test_a_contract_given_in_another_zone_is_shown_in_utc(
    capi: TestClient, creds: dict[str, Any]
) -> None:
    from tests.test_api_contracts import make_org, measure_csv, register_dataset

    _, ent = make_org(capi, creds, "Zone Analytics", "enterprise")
    org, prov = make_org(capi, creds, "Zone Hospital", "provider")
    ds = register_dataset(capi, prov, measure_csv(0, 20), "zone readings", "general-2")
    r = capi.post(
        "/v1/contracts",
        json={
            "provider_org": org,
            "datasets": [ds["id"]],
            "purpose": "zone study",
            "not_before": "2026-01-01T08:00:00+08:00",
            "not_after": "2027-01-01T08:00:00+08:00",
        },
        headers=ent,
    )
    assert r.status_code == 201, r.text
    assert r.json()["not_before"] == "2026-01-01T00:00:00Z"
    assert all(RFC3339_Z.match(t) for t in _timestamps(r.json()))


def test_old_approve_is_deprecated_with_its_successors(
    capi: TestClient, creds: dict[str, Any]
) -> None:
    net = setup_network(capi, creds, "general-4", rows=(20, 20, 20))
    comp = ask(capi, net, "stats.count", {}).json()
    assert comp["state"] == "awaiting_approval"
    comp_id = comp["id"]
    first, second, third = net["hospitals"]
    old = capi.post(f"/v1/computations/{comp_id}/approve", headers=first["h"])
    assert old.status_code == 200, old.text
    assert old.headers["Deprecation"] == f"@{int(DEPRECATED_IN_0_2.timestamp())}"
    links = old.headers["Link"]
    assert f'</v1/computations/{comp_id}/approve-run>; rel="successor-version"' in links
    assert f'</v1/computations/{comp_id}/approve-release>; rel="successor-version"' in links
    new = capi.post(f"/v1/computations/{comp_id}/approve-run", headers=second["h"])
    assert new.status_code == 200, new.text
    assert "Deprecation" not in new.headers
    assert [i["approval"]["state"] for i in new.json()["inputs"]].count("approved") == 2
    schema = capi.get("/openapi.json").json()
    assert schema["paths"]["/v1/computations/{computation_id}/approve"]["post"]["deprecated"]


@pytest.mark.slow  # starts the real server
def test_the_demo_leaves_the_live_policy_as_it_found_it(tmp_path: Path) -> None:
    from gateway.demo import run_demo

    real = start_server(tmp_path / "home", deadline_s=60)
    try:
        credentials = real.home / "demo-credentials.json"
        creds = json.loads(credentials.read_text())
        with httpx.Client(base_url=real.url, timeout=60) as client:
            sec = login(client, creds, "security-admin")  # type: ignore[arg-type]
            before = client.get("/v1/policies", headers=sec).json()
            run_demo(url=real.url, credentials=credentials, with_computations=False)
            after = client.get("/v1/policies", headers=sec).json()
            history = client.get("/v1/policies/history", headers=sec).json()
    finally:
        real.stop(timeout=20)
    assert after["digest"] == before["digest"]
    assert after["matrix"] == before["matrix"]
    # The change was made (and is on the ledger), then undone.
    assert after["revision"] == before["revision"] + 2
    assert [h["revision"] for h in history["items"]][-1] == after["revision"]
