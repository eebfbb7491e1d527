"""A contract terminated while a computation request is decided must not cover that request.

The request is decided on the contract that covers each input; the platform used to load
datasets and contracts once for the policy decision and again, in another transaction, to
write the request, so a contract terminated in between still ended up recorded as the
cover of a new computation (a time-of-check/time-of-use gap). The attack terminates the
contract through the API at the moment the policy has allowed the request, before the
write: the platform must either refuse the request (409, nothing written) or have written
it before the termination took effect (its ledger entry precedes the termination's).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import policies
from exchange.models import Computation
from gateway.platform import Platform
from tests.helpers.api import assert_problem, compute_client
from tests.test_api_contracts import (
    active_contract,
    make_org,
    measure_csv,
    register_dataset,
)

PURPOSE = "readmission risk research"
TERMINATION_DEADLINE_S = 3.0
"""How long the hook lets the termination run: it completes at once unless the request's
transaction holds it back (SQLite's write lock, PostgreSQL's share lock on the contract)."""


class TerminateAfterAllow:
    """The platform's real decision point; on the first allowed `computation.request` it has
    the provider terminate the contract through the API before the decision is returned."""

    def __init__(self, inner: policies.DecisionPoint, terminate: Any) -> None:
        self._inner = inner
        self._terminate = terminate
        self.fired = threading.Event()
        self.done = threading.Event()
        self.response: Any = None

    @property
    def policy(self) -> policies.ActivePolicy:
        return self._inner.policy

    def load(self, policy: policies.ActivePolicy) -> None:
        self._inner.load(policy)

    def decide(self, path: str, input: Mapping[str, Any]) -> policies.Decision:
        decision = self._inner.decide(path, input)
        if input.get("action") == "computation.request" and decision.allow:
            if not self.fired.is_set():
                self.fired.set()
                threading.Thread(target=self._run, daemon=True).start()
                self.done.wait(TERMINATION_DEADLINE_S)
        return decision

    def _run(self) -> None:
        try:
            self.response = self._terminate()
        finally:
            self.done.set()


@pytest.fixture
def capi(platform: Platform, creds: dict[str, Any]) -> Iterator[TestClient]:
    yield from compute_client(platform)


def test_contract_terminated_while_the_request_is_decided_does_not_cover_it(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    ent_org, ent = make_org(capi, creds, "Riverside Health Analytics", "enterprise")
    org, prov = make_org(capi, creds, "Northgate District Hospital", "provider")
    ds = register_dataset(capi, prov, measure_csv(0, 40), "ward readings", "general-2")
    contract = active_contract(capi, ent, prov, org, [ds["id"]], PURPOSE)

    def terminate() -> Any:
        return capi.post(
            f"/v1/contracts/{contract['id']}/terminate",
            headers=prov,
            json={"reason": "data use agreement withdrawn"},
        )

    assert platform.pdp is not None
    hook = TerminateAfterAllow(platform.pdp, terminate)
    platform.pdp = hook
    try:
        r = capi.post(
            "/v1/computations",
            headers=ent,
            json={
                "operator": "stats.count",
                "inputs": [ds["id"]],
                "params": {},
                "purpose": PURPOSE,
            },
        )
        assert hook.fired.is_set(), "the request was never allowed: nothing was attacked"
        assert hook.done.wait(60), "the termination never finished"
    finally:
        platform.pdp = hook._inner
    terminated = hook.response
    assert terminated is not None and terminated.status_code == 200, terminated
    ended_at = terminated.json()["ledger_index"]
    with platform.session() as s:
        mine = select(func.count()).where(Computation.requester_org == ent_org)
        written = s.scalar(mine.select_from(Computation))
    if r.status_code == 201:
        # Serialised before the termination: the request was written under a contract in
        # force, and its ledger entry precedes the termination's.
        assert r.json()["inputs"][0]["contract_id"] == contract["id"]
        assert r.json()["ledger_index"] < ended_at, (r.json()["ledger_index"], ended_at)
    else:
        problem = assert_problem(r, 409, "conflict")
        assert problem.get("contract_id") == contract["id"]
        assert written == 0
