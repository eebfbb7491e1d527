"""The enforcement point's cheaper paths keep every check: ids in time order, decisions
on the event loop for cached dataset views still per caller, denied and logged."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from audit.decisions import DecisionLog
from gateway.platform import Platform
from tests.conftest import EXAMPLE_CSV, login
from tests.helpers.api import assert_problem
from tests.test_api_datasets import metadata, register


def _logged(platform: Platform, request_id: str) -> list[DecisionLog]:
    platform.decision_logs.flush()
    with platform.session() as s:
        return list(s.scalars(select(DecisionLog).where(DecisionLog.request_id == request_id)))


def test_decision_and_request_ids_arrive_in_time_order(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    # Both are indexed in the decision log: ids that arrive in order are appended to
    # the indexes (random ones made each write dearer as the table grew).
    auditor = login(api, creds, "auditor")
    request_ids, decision_ids = [], []
    for _ in range(6):
        r = api.get("/v1/ledger/entries/0", headers=auditor)
        assert r.status_code == 200, r.text
        rid = r.headers["x-request-id"]
        assert len(rid) == 32 and int(rid, 16) >= 0
        request_ids.append(rid)
        time.sleep(0.002)  # a new millisecond: the ids' time part must grow
    for rid in request_ids:
        (row,) = _logged(platform, rid)
        assert uuid.UUID(row.decision_id).version == 7
        decision_ids.append(row.decision_id)
    assert sorted(request_ids) == request_ids
    assert sorted(decision_ids) == decision_ids
    # A well-formed request id the client sends is kept, and logged with the decision.
    r = api.get("/v1/ledger/entries/0", headers={**auditor, "X-Request-ID": "client-chosen-1"})
    assert r.headers["x-request-id"] == "client-chosen-1"
    assert len(_logged(platform, "client-chosen-1")) == 1


def _important_dataset(api: TestClient, provider: dict[str, str]) -> str:
    """An `important` dataset registered by the transport provider."""
    r = register(api, provider, EXAMPLE_CSV.read_bytes(), metadata(level="important"))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_a_cached_dataset_view_is_still_decided_for_each_caller_and_logged(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    provider = login(api, creds, "provider-transport")
    dataset_id = _important_dataset(api, provider)
    enterprise = login(api, creds, "enterprise-fintech")
    # The owner's read fills the dataset's policy view (decided in a worker thread).
    owner_read = api.get(f"/v1/datasets/{dataset_id}", headers=provider)
    assert owner_read.status_code == 200, owner_read.text
    # The next reads find the view cached and are decided on the event loop: an
    # enterprise without clearance for important data is refused every time, and each
    # refusal is a logged decision of its own request.
    for _ in range(2):
        r = api.get(f"/v1/datasets/{dataset_id}", headers=enterprise)
        assert_problem(r, 403, "forbidden")
        (row,) = _logged(platform, r.headers["x-request-id"])
        assert (row.allow, row.subject_id) == (False, creds["enterprise-fintech"]["client_id"])
        assert f'"id": "{dataset_id}"' in row.input
    again = api.get(f"/v1/datasets/{dataset_id}", headers=provider)
    assert again.status_code == 200
    (row,) = _logged(platform, again.headers["x-request-id"])
    assert row.allow is True


def test_a_revoked_token_is_refused_before_a_cached_view_is_decided(
    api: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    provider = login(api, creds, "provider-transport")
    dataset_id = _important_dataset(api, provider)
    assert api.get(f"/v1/datasets/{dataset_id}", headers=provider).status_code == 200
    token = provider["Authorization"].removeprefix("Bearer ")
    c = creds["provider-transport"]
    r = api.post(
        "/v1/auth/revoke",
        data={"token": token, "client_id": c["client_id"], "client_secret": c["client_secret"]},
    )
    assert r.status_code == 200, r.text
    r = api.get(f"/v1/datasets/{dataset_id}", headers=provider)
    assert_problem(r, 401, "invalid-token")
    assert _logged(platform, r.headers["x-request-id"]) == []  # refused before any decision
