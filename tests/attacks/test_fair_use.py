"""Fair use of computations, attacked through the API: quotas, fair scheduling, limits first.

Finding (issue 11): jobs ran one at a time in arrival order, so six cheap requests from
one tenant delayed another tenant's `stats.count` from 1.2 s to 87 s, and output-size
checks ran after the work. Each test here fails on that code:

* quotas: an organisation over its queued or running quota gets 429 problem+json and
  nothing is written (no computation, no ledger entry, no budget, nothing run);
* fair scheduling: a victim's job, requested after an attacker's flood, starts before
  most of the flood (order taken from the ledger's `computation.running` entries, the
  runner's actual start order, never from timings);
* limits first: an oversized output or cost is refused at request time, before any job
  runs and before any ε is charged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

import audit
from exchange.models import Computation, PrivacyBudgetAccount, PrivacyCharge
from gateway.platform import Platform
from gateway.settings import Settings
from ledger.records import decode_leaf
from sandbox.isolation import Limits, Sandbox, SandboxSession
from sandbox.operators import REGISTRY
from tests.conftest import login
from tests.helpers.api import assert_problem, compute_client
from tests.test_api_computations import PURPOSE, ask, setup_network, wait_for
from tests.test_api_contracts import make_org, register_dataset

GATE_TIMEOUT_S = 180.0
END_STATES = ("released", "failed", "rejected", "review")
QUOTA = "computation-quota-exceeded"


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> Settings:
    """The conftest settings, with this module's fair-use settings (indirect parameters)."""
    extra: dict[str, Any] = getattr(request, "param", {})
    return Settings(home=tmp_path / "home", database_url=db_url, max_upload_bytes=64 << 20, **extra)


@pytest.fixture
def capi(platform: Platform, creds: dict[str, Any]) -> Iterator[TestClient]:
    yield from compute_client(platform)


class Gate:
    """Holds every job at its first isolated worker until opened (the jobs really run after).

    The job has already entered `running` (and written that ledger entry) when it gets
    here, so holding it fills the runner's workers deterministically.
    """

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.arrived = threading.Semaphore(0)
        self.waiting = 0
        self._lock = threading.Lock()

    def factory(self) -> Callable[[], Sandbox]:
        gate = self

        class Gated(Sandbox):
            def open_session(
                self, operator: str, inputs: Sequence[Path] = (), *, limits: Limits | None = None
            ) -> SandboxSession:
                with gate._lock:
                    gate.waiting += 1
                gate.arrived.release()
                assert gate.opened.wait(GATE_TIMEOUT_S), "gate never opened"
                return super().open_session(operator, inputs, limits=limits)

        return lambda: Gated(REGISTRY)

    def await_held(self, n: int) -> None:
        """Wait until `n` jobs are held at the gate."""
        for _ in range(n):
            assert self.arrived.acquire(timeout=GATE_TIMEOUT_S), "a job never reached the gate"


def open_dataset(api: TestClient, creds: dict[str, Any], rows: int = 40) -> str:
    """A general-1 open dataset (computations need only a purpose: no contract, no ε)."""
    _, prov = make_org(api, creds, "Open Data Bureau", "provider")
    lines = ["station,riders,minutes"]
    lines += [f"S{i % 7},{10 + i % 13},{5 + i % 11}" for i in range(rows)]
    ds = register_dataset(
        api, prov, "\n".join(lines) + "\n", "open ridership", "general-1", open_attribute="open"
    )
    assert ds["level"] == "general-1", ds
    return str(ds["id"])


def count_request(api: TestClient, headers: dict[str, str], dataset_id: str, **params: Any) -> Any:
    body = {
        "operator": params.pop("operator", "stats.count"),
        "inputs": [dataset_id],
        "params": params,
        "purpose": PURPOSE,
    }
    return api.post("/v1/computations", headers=headers, json=body)


def written(platform: Platform) -> dict[str, int]:
    """Everything a request could write: computations, ledger entries, budgets, runs."""
    with platform.session() as s:
        return {
            "computations": s.scalar(select(func.count()).select_from(Computation)) or 0,
            "ledger": platform.ledger.size(s),
            "budgets": s.scalar(select(func.count()).select_from(PrivacyBudgetAccount)) or 0,
            "charges": s.scalar(select(func.count()).select_from(PrivacyCharge)) or 0,
            "runs": platform.compute.sandbox_runs,
        }


def failure_audits(platform: Platform) -> int:
    with platform.session() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(audit.AuditRecord)
                .where(audit.AuditRecord.event_type == "computation.request_failed")
            )
            or 0
        )


def wait_state(api: TestClient, headers: dict[str, str], comp_id: str, *states: str) -> None:
    wait_for(api, headers, comp_id, *states, timeout=GATE_TIMEOUT_S)


def running_order(platform: Platform, comp_ids: Sequence[str]) -> list[str]:
    """`comp_ids` in the order the runner started them: their `computation.running` entries."""
    started = {}
    with platform.session() as s:
        for comp_id in comp_ids:
            (entry,) = platform.ledger.entries(s, object_id=comp_id, type="computation.running")
            assert decode_leaf(entry.leaf)["type"] == "computation.running"
            started[comp_id] = entry.index
    return sorted(comp_ids, key=started.__getitem__)


# -- quotas -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings", [{"quota_queued_per_org": 1, "quota_running_per_org": 1}], indirect=True
)
def test_request_over_the_queued_quota_is_refused_and_writes_nothing(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    gate = Gate()
    platform.compute.sandbox = gate.factory()
    dataset_id = open_dataset(capi, creds)
    _, ent = make_org(capi, creds, "Flooding Analytics", "enterprise")
    first = count_request(capi, ent, dataset_id)
    assert first.status_code == 201, first.text
    gate.await_held(1)  # running: its one run slot is taken
    second = count_request(capi, ent, dataset_id)
    assert second.status_code == 201, second.text
    assert second.json()["state"] == "approved"  # waits: the running quota is 1

    before, audits = written(platform), failure_audits(platform)
    problem = assert_problem(count_request(capi, ent, dataset_id), 429, QUOTA)
    assert problem["quota"] == "queued"
    assert (problem["running"], problem["waiting"]) == (1, 1)
    assert written(platform) == before  # no computation, ledger entry, budget or run
    assert failure_audits(platform) == audits + 1  # the refusal itself is audited

    # Another organisation is not affected by this one's quota.
    fintech = login(capi, creds, "enterprise-fintech")
    other = count_request(capi, fintech, dataset_id)
    assert other.status_code == 201, other.text

    gate.opened.set()
    for r, headers in ((first, ent), (second, ent), (other, fintech)):
        done = wait_for(capi, headers, r.json()["id"], *END_STATES)
        assert done["state"] == "released", done["error"]
    # Slots free again: the organisation may ask once more.
    assert count_request(capi, ent, dataset_id).status_code == 201


@pytest.mark.parametrize(
    "settings", [{"quota_queued_per_org": 0, "quota_running_per_org": 1}], indirect=True
)
def test_request_over_the_running_quota_is_refused_and_writes_nothing(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    gate = Gate()
    platform.compute.sandbox = gate.factory()
    dataset_id = open_dataset(capi, creds)
    _, ent = make_org(capi, creds, "Flooding Analytics", "enterprise")
    first = count_request(capi, ent, dataset_id)
    assert first.status_code == 201, first.text
    gate.await_held(1)
    wait_state(capi, ent, first.json()["id"], "running")

    before, audits = written(platform), failure_audits(platform)
    problem = assert_problem(count_request(capi, ent, dataset_id), 429, QUOTA)
    assert problem["quota"] == "running"
    assert (problem["running"], problem["waiting"], problem["running_quota"]) == (1, 0, 1)
    assert written(platform) == before
    assert failure_audits(platform) == audits + 1

    gate.opened.set()
    done = wait_for(capi, ent, first.json()["id"], *END_STATES)
    assert done["state"] == "released", done["error"]
    assert count_request(capi, ent, dataset_id).status_code == 201


# -- fair scheduling ----------------------------------------------------------------------------


FLOOD = 6


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({}, id="defaults"),  # 2 workers, 1 running per organisation
        pytest.param({"job_workers": 2, "quota_running_per_org": 2}, id="attacker-fills-workers"),
    ],
    indirect=True,
)
def test_a_flood_does_not_push_another_tenants_job_behind_it(
    capi: TestClient, creds: dict[str, Any], platform: Platform, settings: Settings
) -> None:
    """An attacker floods cheap jobs, then a victim asks for one: the victim starts after
    at most the attacker's jobs already running (none waits for a free worker by default;
    when the attacker may hold every worker, about one job), never behind the flood."""
    gate = Gate()
    platform.compute.sandbox = gate.factory()
    dataset_id = open_dataset(capi, creds)
    _, attacker = make_org(capi, creds, "Flooding Analytics", "enterprise")
    victim = login(capi, creds, "enterprise-fintech")
    flood = []
    for _ in range(FLOOD):
        r = count_request(capi, attacker, dataset_id)
        assert r.status_code == 201, r.text
        flood.append(r.json()["id"])
    workers = getattr(platform.compute.runner, "workers", 1)
    held = min(workers, settings.quota_running_per_org)
    gate.await_held(held)  # the attacker's first jobs hold all the workers it may use
    r = count_request(capi, victim, dataset_id)
    assert r.status_code == 201, r.text
    victim_job = r.json()["id"]

    gate.opened.set()
    done = wait_for(capi, victim, victim_job, *END_STATES)
    assert done["state"] == "released", done["error"]
    result = capi.get(f"/v1/computations/{victim_job}/result", headers=victim)
    assert result.status_code == 200, result.text
    assert result.json()["output"]["groups"][0]["rows"] == 40
    for comp_id in flood:
        end = wait_for(capi, attacker, comp_id, *END_STATES)
        assert end["state"] == "released", end["error"]

    order = running_order(platform, [*flood, victim_job])
    position = order.index(victim_job)
    overtaken = len(order) - 1 - position
    # The victim starts after at most the attacker's jobs that were already running and
    # one more (two workers that take jobs at the same moment may write their `running`
    # entries in either order); in arrival order (one FIFO worker) it would start last.
    assert position <= held + 1, order
    assert overtaken >= FLOOD - held - 1, order


# -- limits before work ---------------------------------------------------------------------------


@pytest.mark.parametrize("settings", [{"max_row_passes": 50_000}], indirect=True)
def test_oversize_output_or_cost_is_refused_before_anything_runs(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    # general-4: provider approval, release review and ε = 0.5 charged per released job.
    net = setup_network(capi, creds, "general-4", rows=(40, 40, 40))
    before, audits = written(platform), failure_audits(platform)

    # 1000 bins × (20 declared groups + other): 21,042 values > 10,000 (the default limit).
    groups = [f"g{i}" for i in range(20)]
    params = {
        "columns": ["systolic_bp"],
        "bins": 1000,
        "range": [80.0, 180.0],
        "group_by": "ward",
        "groups": groups,
    }
    problem = assert_problem(
        ask(capi, net, "stats.histogram", params), 422, "computation-output-too-large"
    )
    assert problem["limit"] == "output" and problem["maximum"] == 10_000
    assert problem["declared"]["output_values"] == 21 * 1002
    assert problem["declared"]["shape"] == {"groups": 21, "fields_per_group": 1002}

    # Federated training: 120 rows × (2 + 200 rounds × 200 epochs) row passes > 50,000.
    fl = {"features": ["systolic_bp", "age"], "label": "readmitted", "rounds": 200}
    fl["local_epochs"] = 200
    problem = assert_problem(ask(capi, net, "fl.logreg", fl), 422, "computation-too-costly")
    assert problem["limit"] == "cost"
    assert problem["declared"]["row_passes"] == 120 * (2 + 200 * 200)
    assert problem["declared"]["shape"]["weights"] == 3

    # Nothing was written or run, and no ε was charged to any input's budget.
    assert written(platform) == before
    assert failure_audits(platform) == audits + 2

    # Within the limits the same kind of request is accepted (and waits for approvals).
    small = {"columns": ["systolic_bp"], "bins": 8, "range": [80.0, 180.0]}
    r = ask(capi, net, "stats.histogram", small)
    assert r.status_code == 201, r.text
    assert r.json()["state"] == "awaiting_approval"
