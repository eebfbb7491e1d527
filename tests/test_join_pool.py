"""A join party's sandbox uses its cores: a session process pool for large inputs, none for small.

Before this branch `sandbox/join_party.py` blinded and encrypted in the sandbox worker's own
process: no sandbox worker ever had a child, the state had no `workers`, and there was no
`sandbox.session_pool` (every test here fails there).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox import session_pool
from sandbox._registry import ProviderInput
from sandbox.coordinator import ResultParty
from sandbox.errors import InvalidParameters
from sandbox.identifiers import IdKind
from sandbox.isolation import OperatorContext
from sandbox.join_params import JoinClause, PsiSumParams
from sandbox.join_party import party
from sandbox.joins import JoinJob
from sandbox.operators import default_sandbox
from tests.helpers.i18_wiring import join_data

_WORKER = b"sandbox._worker import main"

pytestmark = pytest.mark.skipif(session_pool.cores() < 2, reason="needs two cores")


def _clause() -> JoinClause:
    return JoinClause(left_key="mobile", right_key="msisdn", kind=IdKind.PHONE)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _sandbox_python(pid: int) -> bool:
    """A sandbox worker's interpreter (not the bwrap processes whose argv names it)."""
    argv = _cmdline(pid).split(b"\0")
    return _WORKER in _cmdline(pid) and b"bwrap" not in argv[0]


def _mine(pid: int) -> bool:
    while pid > 1:
        pid = _ppid(pid)
        if pid == os.getpid():
            return True
    return False


def _pool_workers() -> dict[int, int]:
    """{pool worker pid: its sandbox worker's pid} under this test process: a forked copy of
    a sandbox worker (same command line) whose parent is that sandbox worker."""
    out = {}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if _sandbox_python(pid) and _alive(pid) and _mine(pid):
            parent = _ppid(pid)
            if _sandbox_python(parent):
                out[pid] = parent
    return out


def _files(tmp: Path, cohort: int, values: int, common: int) -> tuple[ProviderInput, ...]:
    data = join_data(3, cohort=cohort, values=values, common=common)
    left, right = tmp / "cohort.csv", tmp / "values.csv"
    left.write_text(data.cohort_csv)
    right.write_text(data.values_csv)
    return ProviderInput("org-a", "ds-a", left), ProviderInput("org-b", "ds-b", right)


def _job(tmp: Path, files: tuple[ProviderInput, ...], batch: int) -> JoinJob:
    plan = PsiSumParams(join=_clause(), value="amount", clip=(0, 100), decimals=2).plan()
    return JoinJob("psi.sum", plan, *files, sandbox=default_sandbox(tmp), job_id="job-pool",
                   paillier_bits=1024, batch=batch)  # fmt: skip


def _gone(pids: set[int], deadline_s: float = 10.0) -> bool:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_large_join_runs_on_a_pool_in_each_sandbox_and_tears_it_down(tmp_path: Path) -> None:
    files = _files(tmp_path, cohort=1200, values=1300, common=700)
    job = _job(tmp_path, files, batch=2048)
    seen: dict[str, dict[int, int]] = {}

    def record(_to: str, step: str, _data: bytes) -> None:
        seen[step] = _pool_workers()  # the last call of each step

    before = set(_pool_workers())
    assert job.run_protocol(record).values[0] != 0
    size = session_pool.cores()
    during = seen["value.respond"]  # both parties started, neither finished
    sandboxes = set(during.values())
    assert len(sandboxes) == 2 and len(during) == 2 * size
    assert all(w != s for w, s in during.items())
    # after the value party's last batch: its pool is gone, the matcher's is still there
    last = seen["matcher.pairs"]
    assert len(last) == size and len(set(last.values())) == 1 and set(last) < set(during)
    value_pids = set(during) - set(last)
    assert len(value_pids) == size and not any(_alive(p) for p in value_pids)
    assert _gone(set(during) - before)


def test_small_join_stays_in_process(tmp_path: Path) -> None:
    files = _files(tmp_path, cohort=60, values=70, common=40)
    job = _job(tmp_path, files, batch=16)
    seen: list[dict[int, int]] = []
    before = set(_pool_workers())
    job.run_protocol(lambda _to, _step, _data: seen.append(_pool_workers()))
    assert seen and all(set(s) <= before for s in seen)


# -- in-process: the party's own state ------------------------------------------------------------


def _value_ctx(tmp: Path, rows: int) -> OperatorContext:
    files = _files(tmp, cohort=10, values=rows, common=5)
    plan = PsiSumParams(join=_clause(), value="amount", clip=(0, 100), decimals=2).plan()
    rp = ResultParty("paillier-packed", job_id="job-pool", paillier_bits=1024)
    ctx = OperatorContext(inputs=(files[1].path,), scratch=tmp, params={}, blobs={})
    ctx.params = {"step": "value.start", "plan": plan.to_params(), "job": rp.public.params()}
    ctx.blobs = {"salt": b"s" * 32}
    party(ctx)
    return ctx


def _pairs(ctx: OperatorContext) -> Any:
    ctx.params, ctx.blobs = {"step": "value.pairs", "batch": 4096}, {}
    return party(ctx)


def test_value_party_records_its_pool_and_releases_it_after_the_last_batch(
    tmp_path: Path,
) -> None:
    ctx = _value_ctx(tmp_path, session_pool.MIN_ROWS + 100)
    pool = ctx.state["pool"]
    assert ctx.state["workers"] == session_pool.cores() == pool.size
    assert len(pool.pids) == pool.size and os.getpid() not in pool.pids
    assert all(_alive(p) for p in pool.pids)
    _pairs(ctx)
    assert "pool" not in ctx.state and ctx.state["workers"] == pool.size
    assert not any(_alive(p) for p in pool.pids)


def test_small_value_party_stays_in_process(tmp_path: Path) -> None:
    ctx = _value_ctx(tmp_path, session_pool.MIN_ROWS - 100)
    _pairs(ctx)
    assert ctx.state["workers"] == 0 and "pool" not in ctx.state


def test_a_failing_step_shuts_the_pool_down(tmp_path: Path) -> None:
    ctx = _value_ctx(tmp_path, session_pool.MIN_ROWS + 100)
    pids = ctx.state["pool"].pids
    ctx.params, ctx.blobs = {"step": "value.respond"}, {"blinded": b'{"counts":[3]}\nxx'}
    with pytest.raises(InvalidParameters):
        party(ctx)
    assert not any(_alive(p) for p in pids)
