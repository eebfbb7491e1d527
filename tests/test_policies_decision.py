"""The decision point: verdicts, undefined → deny, caching, reloads, threads, reuse, logs."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import policies
from audit.decisions import DecisionLog, get_decision, list_decisions
from audit.models import AuditBase
from gateway.decision_logs import log_decision
from policies import (
    AUTHZ_DECISION,
    ActivePolicy,
    Decision,
    DecisionPoint,
    EmbeddedDecisionPoint,
    PolicyBundle,
    authz_input,
    default_bundle,
)
from policies._engine import UNDEFINED, RegoProgram
from policies.checks import collect_cases
from tests.helpers.db import BACKENDS, metadata_engine

NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC)


def _policy(bundle: PolicyBundle | None = None, revision: int = 0) -> ActivePolicy:
    bundle = bundle or default_bundle()
    return ActivePolicy(revision, bundle.digest, bundle, "test", None, "test")


def consumer_input(**context: Any) -> dict[str, Any]:
    return authz_input(
        subject={"id": "c-c", "org": "org-c", "org_kind": "enterprise", "roles": ["data-consumer"]},
        action="dataset.download",
        resource={
            "type": "dataset",
            "id": "ds-1",
            "level": "general-1",
            "open_attribute": "open",
            "owner_org": "org-p",
        },
        now=NOW,
        token_issued_at=NOW - timedelta(minutes=1),
        **context,
    )


@pytest.fixture(scope="module")
def dp() -> EmbeddedDecisionPoint:
    return EmbeddedDecisionPoint(_policy(), clock=lambda: NOW)


def test_allow_with_obligations_and_decision_log_shape(dp: EmbeddedDecisionPoint) -> None:
    d = dp.decide(AUTHZ_DECISION, consumer_input())
    assert isinstance(dp, DecisionPoint)
    assert d.allow and d.defined and d.path == AUTHZ_DECISION
    assert d.obligations["log_delivery"] is True and d.unknown_obligations() == []
    assert d.reasons == (
        "data-consumer may perform 'dataset.download' on general-1 open (无条件开放) data",
    )
    assert d.revision == 0 and d.digest == default_bundle().digest
    entry = d.log_entry()
    assert set(entry) == {"decision_id", "path", "input", "result", "bundles", "timestamp"}
    assert entry["timestamp"] == "2027-01-15T08:00:00Z"
    assert entry["bundles"] == {"pdx": {"revision": f"0:{d.digest}"}}


def test_input_builder_uses_epoch_seconds() -> None:
    body = consumer_input(
        purpose="p", legal_basis="consent:1", ip="192.0.2.1", cert_binding="bound"
    )
    assert body["context"] == {
        "time": int(NOW.timestamp()),
        "token_issued_at": int(NOW.timestamp()) - 60,
        "cert_binding": "bound",
        "purpose": "p",
        "legal_basis": "consent:1",
        "ip": "192.0.2.1",
    }


def test_undefined_is_a_denial(dp: EmbeddedDecisionPoint) -> None:
    for path in ("pdx/authz/nothing_here", "pdx/nowhere/decision"):
        d = dp.decide(path, consumer_input())
        assert not d.allow and not d.defined and d.result is None
        assert "undefined" in d.reasons[0]
        assert "result" not in d.log_entry()


def test_paths_in_any_spelling(dp: EmbeddedDecisionPoint) -> None:
    for path in ("data.pdx.authz.decision", "/pdx/authz/decision/", "pdx.authz.decision"):
        assert dp.decide(path, consumer_input()).path == AUTHZ_DECISION


def test_each_decision_has_its_own_id_even_when_cached(dp: EmbeddedDecisionPoint) -> None:
    ids = {dp.decide(AUTHZ_DECISION, consumer_input(purpose="ids")).decision_id for _ in range(50)}
    assert len(ids) == 50


def test_cache_hits_on_equal_input_in_any_key_order() -> None:
    dp = EmbeddedDecisionPoint(_policy(), cache_size=100)
    body = consumer_input()
    first = dp.decide(AUTHZ_DECISION, body)
    again = dp.decide(AUTHZ_DECISION, json.loads(json.dumps(body)))
    reordered = dp.decide(AUTHZ_DECISION, dict(reversed(list(body.items()))))
    assert (first.cached, again.cached, reordered.cached) == (False, True, True)
    assert reordered.result == first.result and reordered.allow
    later = dp.decide(AUTHZ_DECISION, {**body, "context": {**body["context"], "time": 1}})
    assert not later.cached  # time is part of the key


def test_cache_is_bounded_lru() -> None:
    dp = EmbeddedDecisionPoint(_policy(), cache_size=3)
    bodies = [consumer_input(purpose=f"p{i}") for i in range(5)]
    for body in bodies:
        dp.decide(AUTHZ_DECISION, body)
    assert len(dp.cache) == 3
    assert dp.decide(AUTHZ_DECISION, bodies[-1]).cached
    assert not dp.decide(AUTHZ_DECISION, bodies[0]).cached


def test_load_clears_the_cache_and_switches_revision() -> None:
    dp = EmbeddedDecisionPoint(_policy(), cache_size=100)
    body = consumer_input()
    assert dp.decide(AUTHZ_DECISION, body).allow
    base = default_bundle()
    matrix = json.loads(json.dumps(base.matrix))
    matrix["cells"]["general-1/open"]["actions"]["dataset.download"] = {"allow": False}
    dp.load(_policy(PolicyBundle(base.modules, matrix), revision=2))
    d = dp.decide(AUTHZ_DECISION, body)
    assert not d.cached and not d.allow and d.revision == 2
    assert any("not permitted on general-1 open" in r for r in d.reasons)


def test_time_dependent_policies_are_not_cached() -> None:
    base = default_bundle()
    clock = "package pdx.clock\nimport rego.v1\nnow := time.now_ns()\n"
    dp = EmbeddedDecisionPoint(
        _policy(PolicyBundle({**base.modules, "clock.rego": clock}, base.matrix))
    )
    body = consumer_input()
    assert [dp.decide(AUTHZ_DECISION, body).cached for _ in range(3)] == [False] * 3
    assert len(dp.cache) == 0


def test_evaluation_errors_are_denials_with_the_reason() -> None:
    base = default_bundle()
    conflict = "package pdx.authz\nimport rego.v1\nextra := 1\nextra := 2 if input.action\n"
    bad = PolicyBundle(
        {**base.modules, "authz_extra.rego": conflict}, base.matrix, ("pdx/authz/extra",)
    )
    dp = EmbeddedDecisionPoint(_policy(bad))
    d = dp.decide("pdx/authz/extra", consumer_input())
    assert not d.allow and not d.defined
    assert d.reasons[0].startswith("policy evaluation failed")


@pytest.mark.parametrize(
    ("result", "allow"),
    [
        (True, True),
        (False, False),
        ({"allow": True}, True),
        ({"allow": "yes"}, False),
        ({"allow": True, "obligations": []}, False),
        ([1], False),
        (None, False),
    ],
)
def test_only_a_well_formed_allow_allows(result: Any, allow: bool) -> None:
    class Fixed(EmbeddedDecisionPoint):
        def _evaluate(self, *args: Any) -> tuple[Any, bool]:
            return result, True

    d = Fixed(_policy(), cache_size=0).decide(AUTHZ_DECISION, {})
    assert d.allow is allow
    assert d.allow or d.reasons


def test_unknown_obligations_are_reported() -> None:
    d = Decision("id", "p", {}, {}, True, 0, "d", NOW, True, (), {"watermark": True, "max_rows": 5})
    assert d.unknown_obligations() == ["watermark"]


def test_inputs_that_are_not_json_are_refused(dp: EmbeddedDecisionPoint) -> None:
    with pytest.raises(policies.PolicyEvaluationFailed):
        dp.decide(AUTHZ_DECISION, {"x": object()})


def _case_inputs() -> list[dict[str, Any]]:
    cases, _ = collect_cases(default_bundle())
    return [dict(c.input) for c in cases if c.matrix is None]


@pytest.mark.slow
def test_reusing_one_program_matches_a_fresh_program_per_call() -> None:
    """Interpreter reuse is safe: no state from one input leaks into the next."""
    bundle = default_bundle()
    inputs = _case_inputs()
    reused = RegoProgram(bundle.policy_modules, bundle.data(), bundle.entrypoints)
    rng = random.Random(7)
    order = [rng.choice(inputs) for _ in range(150)]
    fresh_results = {}
    for body in inputs[:12]:
        fresh = RegoProgram(bundle.policy_modules, bundle.data(), bundle.entrypoints)
        fresh_results[json.dumps(body, sort_keys=True)] = fresh.evaluate(
            AUTHZ_DECISION, json.dumps(body, ensure_ascii=False)
        )
    for body in order:
        got = reused.evaluate(AUTHZ_DECISION, json.dumps(body, ensure_ascii=False))
        key = json.dumps(body, sort_keys=True)
        if key in fresh_results:
            assert got == fresh_results[key]
        assert got is not UNDEFINED


def test_threads_get_the_serial_answers() -> None:
    """Concurrent callers each use their own program; answers match serial evaluation."""
    dp = EmbeddedDecisionPoint(_policy(), cache_size=0, max_programs=4)
    inputs = _case_inputs()
    serial = [dp.decide(AUTHZ_DECISION, b).result for b in inputs]
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            i = rng.randrange(len(inputs))
            got = dp.decide(AUTHZ_DECISION, inputs[i]).result
            if got != serial[i]:
                errors.append(f"input {i}: {got} != {serial[i]}")

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_constructor_picks_remote_only_with_a_url() -> None:
    assert isinstance(policies.decision_point(_policy()), EmbeddedDecisionPoint)


# -- decision logs in the caller's session (SQLite and PostgreSQL) ----------------------


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    yield from metadata_engine(request, tmp_path, AuditBase.metadata, "decisions")


def test_decisions_are_logged_allowed_and_denied(engine: Engine, dp: EmbeddedDecisionPoint) -> None:
    allowed = dp.decide(AUTHZ_DECISION, consumer_input(purpose="x\x00y"))
    denied = dp.decide(AUTHZ_DECISION, {**consumer_input(), "action": "policy.write"})
    undefined = dp.decide("pdx/authz/none", consumer_input())
    with Session(engine) as session, session.begin():
        for d in (allowed, denied, undefined):
            log_decision(session, d, request_id="req-1")
    with Session(engine) as session:
        rows = {r.decision_id: r for r in session.scalars(select(DecisionLog))}
        assert rows[allowed.decision_id].allow is True
        assert rows[denied.decision_id].allow is False
        assert rows[undefined.decision_id].result is None
        assert rows[allowed.decision_id].subject_id == "c-c"
        assert rows[allowed.decision_id].request_id == "req-1"
        event = get_decision(session, denied.decision_id)
        assert event is not None
        opa = event.to_opa()
        assert opa["result"]["allow"] is False and opa["input"]["action"] == "policy.write"
        assert opa["bundles"] == {"pdx": {"revision": f"0:{denied.digest}"}}
        assert json.loads(rows[allowed.decision_id].input)["context"]["purpose"] == "x\x00y"
        assert {r.decision_id for r in list_decisions(session, allow=False)} == {
            denied.decision_id,
            undefined.decision_id,
        }
        assert len(list_decisions(session, subject_id="c-c", since=NOW - timedelta(seconds=1))) == 3
