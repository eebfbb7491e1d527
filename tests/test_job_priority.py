"""An organisation with jobs waiting runs its sandboxes at a lower CPU priority.

Fair share caps one organisation at one running job per worker pair, but that job still
takes a whole core: under a computation flood the other organisation's `stats.count`
latency nearly doubled (load.json `fair_share_victim_p95_ratio` 1.6-1.9, target <= 2).
The job runner now starts a backlogged organisation's jobs under `sandbox.priority.lowered`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from exchange.jobs import ThreadRunner
from sandbox.isolation import Limits, OperatorRegistry, OperatorSpec, Sandbox, SandboxResult
from sandbox.priority import LOWERED_NICE, current_nice, lowered

HELPERS = Path(__file__).resolve().parent / "helpers"
REGISTRY = OperatorRegistry(
    [
        OperatorSpec(
            "niceness",
            "niceness_op:op_niceness",
            limits=Limits(cpu_seconds=5, memory_bytes=512 << 20, wall_seconds=20),
            code_root=HELPERS,
        )
    ]
)


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    sb = Sandbox(REGISTRY)
    sb.check()
    return sb


def _niceness(sandbox: Sandbox) -> int:
    outcome = sandbox.run("niceness")
    assert isinstance(outcome, SandboxResult), outcome
    return int(outcome.output)


def test_a_lowered_thread_starts_its_sandboxes_at_the_lowered_niceness(sandbox: Sandbox) -> None:
    base = os.nice(0)
    assert _niceness(sandbox) == base
    with lowered():
        assert current_nice() == LOWERED_NICE
        assert _niceness(sandbox) == min(19, base + LOWERED_NICE)
        with lowered(False):
            assert _niceness(sandbox) == base
        assert current_nice() == LOWERED_NICE
    assert current_nice() == 0


def test_the_runner_lowers_a_flooding_organisation_and_not_the_other(sandbox: Sandbox) -> None:
    base = os.nice(0)
    runner = ThreadRunner(workers=2, per_key=1)
    gate = threading.Event()
    seen: dict[str, list[int]] = {"flood": [], "victim": []}
    done = threading.Semaphore(0)

    def job(key: str) -> None:
        gate.wait(30)
        seen[key].append(_niceness(sandbox))
        done.release()

    try:
        # The flood's first job starts at once and holds the flood's one running slot
        # until the gate opens; the next two queue behind it.
        runner.submit(gate.wait, key="flood")
        for _ in range(2):
            runner.submit(lambda: job("flood"), key="flood")
        runner.submit(lambda: job("victim"), key="victim")
        gate.set()
        for _ in range(3):
            assert done.acquire(timeout=60)
    finally:
        runner.stop()
    # The flood's second job started with one more waiting; its last with none.
    assert seen["flood"] == [min(19, base + LOWERED_NICE), base]
    assert seen["victim"] == [base]
