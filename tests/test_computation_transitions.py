"""Computation transitions are compare-and-set on the state they expect: a late one changes nothing.

A job that recovery has already ended (a restart, or another gateway, marked it failed
while it ran) must not be finished by its first runner: before, that runner overwrote
`failed` with `released` and the ledger read running → failed → released.
"""

from __future__ import annotations

import threading
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
        # Another gateway's start-up (or this one's after a crash) recovers the job.
        assert exchange.computations.recover(platform.compute) >= 1
        failed = capi.get(f"/v1/computations/{comp_id}", headers=ent).json()
        assert failed["state"] == "failed" and failed["error"]["code"] == "interrupted"
        held.release.set()  # the first runner now finishes its work
        assert runner.finished.wait(180), "the first runner never returned"
    finally:
        held.release.set()
        platform.compute.runner = runner.inner
    after = capi.get(f"/v1/computations/{comp_id}", headers=ent).json()
    assert after["state"] == "failed", after["transitions"]
    assert after["error"]["code"] == "interrupted"
    assert not after["result_available"]
    ends = [t for _, t in ledger_types(platform, comp_id) if t in END_EVENTS]
    assert ends == ["computation.failed"], ledger_types(platform, comp_id)
