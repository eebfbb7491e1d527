"""Compiled policy programs are reused by bundle digest, one caller at a time, bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from policies import (
    AUTHZ_DECISION,
    ActivePolicy,
    EmbeddedDecisionPoint,
    PolicyBundle,
    PolicyInvalid,
)
from policies._engine import RegoProgram
from policies.programs import ProgramPool

ANSWER = "package pdx.authz\n\ndecision := data.pdx.matrix.answer\n"


def _policy(answer: Any, revision: int = 1, source: str = ANSWER) -> ActivePolicy:
    bundle = PolicyBundle({"answer.rego": source}, {"answer": answer})
    return ActivePolicy(revision, bundle.digest, bundle, "test", None, "test")


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each RegoProgram compiled during the test (the grading matrix's answer)."""
    seen: list[str] = []
    real = RegoProgram.__init__

    def counting(self: RegoProgram, modules: Any, data: Any, entrypoints: Any) -> None:
        seen.append(repr(data["pdx"]["matrix"].get("answer")))
        real(self, modules, data, entrypoints)

    monkeypatch.setattr(RegoProgram, "__init__", counting)
    yield seen


def _answer(dp: EmbeddedDecisionPoint) -> Any:
    return dp.decide(AUTHZ_DECISION, {"n": 1}).result


def test_a_bundle_compiled_before_is_not_compiled_again(compiles: list[str]) -> None:
    pool = ProgramPool()
    first = EmbeddedDecisionPoint(_policy(1), pool=pool, cache_size=0)
    assert _answer(first) == 1
    assert first.release_idle() == 1  # the app's shutdown, say
    # A restart in the same process, a second platform: the same bundle, no compile.
    again = EmbeddedDecisionPoint(_policy(1, revision=7), pool=pool, cache_size=0)
    assert _answer(again) == 1
    assert compiles == ["1"]
    # Switching to another revision and rolling back: the first one's program is reused.
    again.load(_policy(2, revision=8))
    assert _answer(again) == 2
    again.load(_policy(1, revision=9))
    assert _answer(again) == 1
    assert compiles == ["1", "2"]
    assert pool.hits == 2


def test_a_dropped_decision_point_gives_its_programs_back(compiles: list[str]) -> None:
    pool = ProgramPool()
    dp = EmbeddedDecisionPoint(_policy(1), pool=pool)
    _answer(dp)
    del dp  # a dry run's decision point goes like this
    assert len(pool) == 1
    assert _answer(EmbeddedDecisionPoint(_policy(1), pool=pool)) == 1
    assert compiles == ["1"]


def test_different_data_is_compiled_anew_and_decides_differently(compiles: list[str]) -> None:
    pool = ProgramPool()
    one = EmbeddedDecisionPoint(_policy(1), pool=pool)
    one.release_idle()
    other = EmbeddedDecisionPoint(_policy({"deny": True}), pool=pool)
    assert _answer(other) == {"deny": True}
    assert compiles == ["1", "{'deny': True}"]
    assert pool.digests() == [_policy(1).digest]  # the other's program is in use
    assert _answer(EmbeddedDecisionPoint(_policy(1), pool=pool)) == 1


def test_a_bundle_that_does_not_compile_is_never_pooled(compiles: list[str]) -> None:
    pool = ProgramPool()
    broken = _policy(1, source="package pdx.authz\n\ndecision := \n")
    for _ in range(2):
        with pytest.raises(PolicyInvalid):
            EmbeddedDecisionPoint(broken, pool=pool)
    assert len(compiles) == 2 and len(pool) == 0 and pool.hits == 0


def test_the_bound_holds() -> None:
    pool = ProgramPool(max_digests=2, per_digest=2)
    programs = [object() for _ in range(6)]
    assert [pool.give("a", p) for p in programs[:3]] == [True, True, False]
    assert not pool.give("a", programs[0])  # never held twice
    pool.give("b", programs[3])
    pool.take("a")  # "a" is now the most recently used
    pool.give("c", programs[4])  # evicts "b", the least recently used
    assert pool.digests() == ["a", "c"]
    assert len(pool) == 2
    assert pool.take("b") is None
    assert pool.take("c") is programs[4] and pool.take("c") is None
    assert not ProgramPool(max_digests=0).give("a", programs[5])


def test_a_program_is_never_used_by_two_callers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads deciding on decision points that share a pool while their policies switch."""
    in_use: set[int] = set()
    overlaps: list[int] = []
    guard = threading.Lock()
    real = RegoProgram.evaluate_value

    def watched(self: RegoProgram, entrypoint: str, value: Any) -> Any:
        with guard:
            if id(self) in in_use:
                overlaps.append(id(self))
            in_use.add(id(self))
        try:
            time.sleep(0.0005)
            return real(self, entrypoint, value)
        finally:
            with guard:
                in_use.discard(id(self))

    monkeypatch.setattr(RegoProgram, "evaluate_value", watched)
    pool = ProgramPool(max_digests=2, per_digest=2)
    policies = [_policy(1, revision=1), _policy(2, revision=2)]
    points = [
        EmbeddedDecisionPoint(policies[i % 2], pool=pool, cache_size=0, max_programs=3)
        for i in range(2)
    ]
    stop = threading.Event()
    wrong: list[Any] = []

    def decide(dp: EmbeddedDecisionPoint) -> None:
        while not stop.is_set():
            decision = dp.decide(AUTHZ_DECISION, {"n": 1})
            if decision.result != decision.revision:  # a program of the other bundle
                wrong.append(decision.result)

    def switch() -> None:
        for i in range(60):
            for dp in points:
                dp.load(policies[i % 2])
                if i % 5 == 0:
                    dp.release_idle()
        stop.set()

    threads = [threading.Thread(target=decide, args=(dp,)) for dp in points for _ in range(3)]
    threads.append(threading.Thread(target=switch))
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert overlaps == [] and wrong == []
    assert pool.hits > 0
    assert len(pool) <= 4


def test_programs_dropped_inside_the_pools_lock_wait_for_it() -> None:
    """A garbage collection may free a decision point while this thread holds the pool's
    lock (any allocation can start one); its finalizer must not wait for that lock."""
    pool = ProgramPool()
    holder = [EmbeddedDecisionPoint(_policy(1), pool=pool)]

    def collect_inside_the_lock() -> None:
        with pool._lock:
            holder.clear()  # the finalizer runs here, as it would inside a collection

    t = threading.Thread(target=collect_inside_the_lock, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), "the finalizer waited for the lock its own thread held"
    assert len(pool) == 1 and pool.take(_policy(1).digest) is not None
