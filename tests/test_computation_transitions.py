"""Computation transitions are compare-and-set on the state they expect: a late one changes nothing.

A job whose run recovery has taken over (its lease lapsed: the worker was thought dead)
must not be finished by its first runner; and a run whose lease is live is not touched by
another gateway's recovery (before issue 13 every start-up failed every running job).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import exchange.computations
from gateway.platform import Platform
from sandbox.isolation import Limits, Sandbox, SandboxSession
from sandbox.operators import REGISTRY
from tests.helpers.api import compute_client
from tests.test_api_computations import ledger_types, wait_for
from tests.test_api_contracts import (
    active_contract,
    make_org,
    measure_csv,
    register_dataset,
)

PURPOSE = "readmission risk research"
END_EVENTS = {"computation.released", "computation.review", "computation.failed",
              "computation.rejected"}  # fmt: skip


class HeldSandbox:
    """A real sandbox whose first worker waits until the test lets it start."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def factory(self) -> Callable[[], Sandbox]:
        held = self

        class Held(Sandbox):
            def open_session(
                self, operator: str, inputs: Sequence[Path] = (), *, limits: Limits | None = None
            ) -> SandboxSession:
                held.entered.set()
                assert held.release.wait(120), "the test never let the job go on"
                return super().open_session(operator, inputs, limits=limits)

        return lambda: Held(REGISTRY)


class FinishedRunner:
    """The platform's runner; `finished` is set when a submitted job has returned."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.finished = threading.Event()

    def submit(self, job: Callable[[], None], key: str = "") -> None:
        def tracked() -> None:
            try:
                job()
            finally:
                self.finished.set()

        self.inner.submit(tracked, key)

    def stop(self) -> None:
        self.inner.stop()


@pytest.fixture
def capi(platform: Platform, creds: dict[str, Any]) -> Iterator[TestClient]:
    yield from compute_client(platform)


def test_a_recovered_job_is_not_finished_by_its_first_runner(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """Recovery leaves a live run alone; once its lease lapses the job runs again, and the
    first runner, finishing late, is fenced off: one end state on the ledger."""
    ent_org, ent = make_org(capi, creds, "Riverside Health Analytics", "enterprise")
    org, prov = make_org(capi, creds, "Northgate District Hospital", "provider")
    ds = register_dataset(capi, prov, measure_csv(0, 40), "ward readings", "general-2")
    active_contract(capi, ent, prov, org, [ds["id"]], PURPOSE)
    held = HeldSandbox()
    runner = FinishedRunner(platform.compute.runner)
    platform.compute.sandbox = held.factory()
    platform.compute.runner = runner
    try:
        r = capi.post(
            "/v1/computations",
            headers=ent,
            json={"operator": "stats.count", "inputs": [ds["id"]], "purpose": PURPOSE},
        )
        assert r.status_code == 201, r.text
        comp_id = r.json()["id"]
        assert held.entered.wait(120), "the job never reached its sandbox"
        assert wait_for(capi, ent, comp_id, "running")["state"] == "running"
        # Another gateway's start-up (or this one's after a crash) while the run is alive:
        # its lease is live, so nothing is recovered (before: the job was failed here).
        exchange.computations.recover(platform.compute)
        live = capi.get(f"/v1/computations/{comp_id}", headers=ent).json()
        assert live["state"] == "running", live["transitions"]
        # The first runner stops renewing (as a dead worker would) and its lease lapses;
        # another worker's delivery of the job takes the run over.
        platform.compute.lease_keeper.stop()
        expire_lease(platform, comp_id)
        second = threading.Thread(
            target=exchange.computations.run_job, args=(platform.compute, comp_id)
        )
        second.start()
        deadline = time.monotonic() + 60
        while "computation.recovered" not in [t for _, t in ledger_types(platform, comp_id)]:
            assert time.monotonic() < deadline, "the second delivery never took the run over"
            time.sleep(0.05)
        held.release.set()  # both runs now go on; the first one is fenced off
        assert runner.finished.wait(180), "the first runner never returned"
        second.join(180)
        after = wait_for(capi, ent, comp_id, "released")
    finally:
        held.release.set()
        platform.compute.runner = runner.inner
    assert after["state"] == "released", after["transitions"]
    types = ledger_types(platform, comp_id)
    ends = [t for _, t in types if t in END_EVENTS]
    assert ends == ["computation.released"], types
    assert [t for _, t in types].count("computation.recovered") == 1, types


def expire_lease(platform: Platform, comp_id: str) -> None:
    """Move the run's lease into the past: what a worker that stopped renewing leaves."""
    from datetime import timedelta

    from sqlalchemy import update

    from exchange.models import ComputationLease

    with platform.session() as session, session.begin():
        moved = session.execute(
            update(ComputationLease)
            .where(ComputationLease.computation_id == comp_id)
            .values(expires_at=platform.now() - timedelta(seconds=1))
        )
        assert getattr(moved, "rowcount", 0) == 1
