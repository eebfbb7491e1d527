"""Joins with the enterprise's own cohort, its side run in the SDK (issue 18), through the app.

The enterprise's phone list never reaches the platform: its SDK (`pdx_client.psi`)
blinds it, the bank's sandbox (`sandbox.cohort_party`) matches, and the platform relays
counts and opaque bytes (`sandbox.cohort_joins`, `exchange.computations.join_steps`).
Counts only: sums and means over the requester's cohort are refused (the review's
findings, tests/attacks/test_cohort_review.py). On the code before issue 18 every
request here is refused: `params.cohort` is an unknown field (422), there is no
/join-step route, no `pdx_client.psi` module, and a join needs two providers' datasets.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pdx_client import psi  # noqa: E402  (the tree's SDK, put on the path by the helpers)
from pdx_client.jobkeys import JobKey  # noqa: E402
from sqlalchemy import func, select

from audit.models import AuditRecord
from crypto import _h2c_p256
from exchange.computations.fl_rounds import ComputationFlRound
from exchange.models import Computation, PrivacyBudgetAccount
from gateway.platform import Platform
from gateway.settings import Settings
from sandbox._registry import ProviderInput
from sandbox.cohort_joins import JOIN_STEP_FORMAT, CohortJoinJob
from sandbox.errors import CohortTooSmall, InvalidParameters
from sandbox.identifiers import IdKind, JobDomain, normalise
from sandbox.join_params import (
    JoinPlan,
    PsiCardinalityParams,
    PsiIntersectionParams,
    RequesterCohort,
)
from sandbox.operators import StatsParams, default_sandbox
from sandbox.party_stats import PartyJob
from tests.helpers.api import assert_problem
from tests.helpers.i18_wiring import LEGAL_BASIS, PURPOSE
from tests.helpers.s15_sdk_psi import CohortData, cohort_data, cohort_network, node_held_network
from tests.test_api_computations import wait_for
from tests.test_join_job_keys import _everything_stored

DONE = ("released", "failed", "rejected", "review")


@pytest.fixture(scope="module")
def job_key() -> JobKey:
    return JobKey.generate()


def _ask(
    capi: TestClient, net: dict[str, Any], op: str, params: dict[str, Any], key: JobKey | None
) -> Any:
    body: dict[str, Any] = {
        "operator": op,
        "inputs": [net["ds"]],
        "params": params,
        "purpose": PURPOSE,
        "legal_basis": LEGAL_BASIS,
    }
    if key is not None:
        body["job_key"] = key.public()
    return capi.post("/v1/computations", headers=net["ent"], json=body)


def _cohort(data: CohortData, size: int | None = None) -> dict[str, Any]:
    return {"key": "msisdn", "kind": "phone", "size": size or len(data.cohort)}


def _run(
    capi: TestClient,
    net: dict[str, Any],
    op: str,
    params: dict[str, Any],
    key: JobKey,
    party: psi.CohortParty,
) -> dict[str, Any]:
    r = _ask(capi, net, op, params, key)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    r = capi.post(f"/v1/computations/{comp_id}/approve", headers=net["bank"], json={})
    assert r.status_code == 200, r.text
    psi.drive(net["sdk"].session, comp_id, party, timeout=120)
    done = wait_for(capi, net["ent"], comp_id, *DONE)
    if done["state"] == "review":
        capi.post(f"/v1/computations/{comp_id}/approve", headers=net["bank"], json={})
        done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected")
    return done


# -- correctness, and what each side is sent ---------------------------------------------


def _sandbox_job(
    tmp: Path, data: CohortData, key: JobKey, params: Any, op: str, *, size: int | None = None
) -> CohortJoinJob:
    """The bank's side in its bubblewrap sandbox, relayed as the platform relays it."""
    values = tmp / "values.csv"
    values.write_text(data.values_csv)
    plan = params.plan() if hasattr(params, "plan") else params
    party = PartyJob("job-x", key.n, providers=1, min_cohort=20, dp=None)
    return CohortJoinJob(op, plan, ProviderInput("org-b", "ds-b", values),
                         sandbox=default_sandbox(tmp), job_id="job-x", party=party)  # fmt: skip


def test_cardinality_and_count_equal_the_plaintext_join_before_noise(
    tmp_path: Path, job_key: JobKey
) -> None:
    """No DP (the values before noise): exactly the plaintext join, formatting noise and all."""
    data = cohort_data(1)
    cohort = RequesterCohort(key="msisdn", kind=IdKind.PHONE, size=len(data.cohort))
    for op, params in (
        ("psi.cardinality", PsiCardinalityParams(cohort=cohort)),
        ("stats.count", JoinPlan(
            StatsParams(cohort=cohort).query("stats.count"), cohort.clause(), cohort)),
    ):  # fmt: skip
        job = _sandbox_job(tmp_path, data, job_key, params, op)
        seen: list[dict[str, Any]] = []
        sdk = psi.CohortParty(data.cohort, "phone", record=seen.append)
        doc = job.document(job.exchange(lambda _k, d, sdk=sdk: sdk.reply(d)))
        opened = job_key.decrypt(doc)
        # A count needs no value: no ciphertext, key or field count travels to the SDK.
        assert all(not {"cts", "n_j", "fields"} & set(d) for d in seen)
        assert opened["operator"] == op and sdk.rows == 240
        assert opened["intersection_size"] == len(data.common) == 150


def test_psi_cardinality_with_the_enterprises_own_cohort_through_the_server(
    capi: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    settings: Settings,
    job_key: JobKey,
) -> None:
    data = cohort_data(2)
    net = cohort_network(capi, creds, data)
    seen: list[dict[str, Any]] = []
    party = psi.CohortParty(data.cohort, "phone", record=seen.append)
    done = _run(capi, net, "psi.cardinality", {"cohort": _cohort(data)}, job_key, party)
    assert done["state"] == "released", done["error"]
    eps = done["obligations"]["dp_epsilon"]
    assert eps is not None and done["epsilon_spent"] == eps
    assert done["obligations"]["min_intersection"] == 20
    assert done["security_model"]["cohort"]["size"] == len(data.cohort)
    assert "requester (SDK)" in done["security_model"]["who_learns_what"]
    result = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"]).json()
    opened = job_key.decrypt(result)
    g = opened["groups"][0]
    assert opened["operator"] == "psi.cardinality" and opened["decrypted_by"] == "requester"
    assert g["exact"] == {}  # noised in the bank's sandbox before it was encrypted
    assert abs(opened["intersection_size"] - 150) < 20 / eps
    assert party.rows == 240  # |Y|: what the SDK learnt before the release
    ops = [d["op"] for d in seen]
    assert ops[0] == "blind" and "pairs" in ops and ops[-1] == "return"
    _assert_nothing_disclosed(seen, data)
    # Each reply is a ledger entry and an audit record, in one transaction; no step is left.
    with platform.session() as s:
        posted = s.scalars(
            select(AuditRecord).where(AuditRecord.event_type == "computation.join_step_posted")
        ).all()
        assert len(posted) == len(seen)
        assert s.scalars(select(ComputationFlRound)).all() == []
    ledger = [t["event"] for t in done["transitions"]]
    assert ledger.count("join_step_posted") == len(seen), ledger
    # The platform stored none of the enterprise's identifiers, in any spelling (the
    # search does reach what it stores: the job key's public modulus is found).
    everything = _everything_stored(platform, settings)
    assert format(job_key.n, "x") in everything
    canonical = {normalise(IdKind.PHONE, p) for p in data.cohort} - {None}
    assert len(canonical) == 200 and not any(str(p) in everything for p in canonical)
    assert not any(p in everything for p in data.cohort)
    # GET /v1/operators says who learns what with a cohort of the requester's own, and
    # that psi.sum refuses one.
    ops = capi.get("/v1/operators", headers=net["ent"], params={"limit": 100}).json()["items"]
    learns = next(o for o in ops if o["name"] == "psi.cardinality")["learns"]
    sdk_learns = learns["with params.cohort (the requester's own identifiers), requester (SDK)"]
    assert sdk_learns.startswith("|Y|")
    sum_learns = next(o for o in ops if o["name"] == "psi.sum")["learns"]
    assert sum_learns["with params.cohort (the requester's own identifiers)"].startswith("refused")
    # The SDK's own verb does the same (a fresh key, the bank approving).
    key2 = JobKey.generate()
    got = _compute_with_sdk(capi, net, data, key2)
    assert abs(got["intersection_size"] - 150) < 20 * 1 / eps


def test_sums_and_means_over_the_requesters_own_cohort_are_refused_at_the_request(
    capi: TestClient, creds: dict[str, Any], platform: Platform, job_key: JobKey
) -> None:
    """Review F1/F2: the values would travel through the SDK (scalable) to J's holder.

    403 with the stable problem type and obligation, before anything is written: no
    computation row, no ε charged to the provider's budget.
    """
    data = cohort_data(13)
    net = cohort_network(capi, creds, data)
    value = {"clip": [0, 100], "decimals": 2}
    with platform.session() as s:
        before = s.scalar(select(func.count()).select_from(Computation))
    for op, params in (
        ("psi.sum", {"cohort": _cohort(data), "value": "amount", **value}),
        ("stats.sum", {"cohort": _cohort(data), "columns": ["amount"], **value}),
        ("stats.mean", {"cohort": _cohort(data), "columns": ["amount"], **value}),
    ):
        r = _ask(capi, net, op, params, job_key)
        problem = assert_problem(r, 403, "forbidden")
        assert problem["obligation"] == "cohort_counts_only", problem
    with platform.session() as s:
        assert s.scalar(select(func.count()).select_from(Computation)) == before
        account = s.get(PrivacyBudgetAccount, net["ds"])
        assert account is None or account.epsilon_spent == 0


def test_the_providers_sandbox_refuses_a_sum_or_mean_plan(tmp_path: Path, job_key: JobKey) -> None:
    """Should a request get past the check, `cohort.start` in the bank's sandbox refuses it."""
    data = cohort_data(14, cohort=40, values=50, common=30)
    cohort = RequesterCohort(key="msisdn", kind=IdKind.PHONE, size=len(data.cohort))
    for op in ("stats.sum", "stats.mean"):
        q = StatsParams(cohort=cohort, columns=["amount"], clip=(0, 100), decimals=2).query(op)
        job = _sandbox_job(tmp_path, data, job_key, JoinPlan(q, cohort.clause(), cohort), op)
        sdk = psi.CohortParty(data.cohort, "phone")
        with pytest.raises(InvalidParameters, match="counts only"):
            job.exchange(lambda _k, d, sdk=sdk: sdk.reply(d))
        assert sdk.rows is None  # refused before the SDK was asked anything


def _compute_with_sdk(
    capi: TestClient, net: dict[str, Any], data: CohortData, key: JobKey
) -> dict[str, Any]:
    """`Enterprise.compute(..., cohort=...)`, the bank approving from another thread."""
    import threading

    stop = threading.Event()

    def approve() -> None:
        while not stop.is_set():
            r = capi.get("/v1/computations", headers=net["bank"])
            for c in r.json().get("items", []):
                if c["state"] == "awaiting_approval":
                    capi.post(f"/v1/computations/{c['id']}/approve", headers=net["bank"], json={})
            stop.wait(0.1)

    t = threading.Thread(target=approve, daemon=True)
    t.start()
    try:
        out = net["sdk"].compute(
            "psi.cardinality", [net["ds"]], {"cohort": {"key": "msisdn", "kind": "phone"}},
            PURPOSE, job_key=key, cohort=data.cohort, timeout=120, legal_basis=LEGAL_BASIS,
        )  # fmt: skip
    finally:
        stop.set()
        t.join()
    result: dict[str, Any] = out.output
    return result


def _assert_nothing_disclosed(seen: list[dict[str, Any]], data: CohortData) -> None:
    """No identifier (any spelling), no canonical member, no plaintext amount in `seen`."""
    blob = repr(seen)
    raw = b"".join(base64.b64decode(d["points"]) for d in seen if "points" in d)
    for p in data.common:
        assert p not in blob and p.encode() not in raw
        assert f"{float(data.amount[p]):.2f}" not in blob


def test_the_transcripts_of_both_sides_hold_no_identifier_member_or_value(
    tmp_path: Path, job_key: JobKey
) -> None:
    """Every message the SDK and the bank's sandbox receive, recorded at the relay."""
    data = cohort_data(3, cohort=120, values=150, common=90)
    values = tmp_path / "values.csv"
    values.write_text(data.values_csv)
    cohort = RequesterCohort(key="msisdn", kind=IdKind.PHONE, size=len(data.cohort))
    plan = PsiCardinalityParams(cohort=cohort).plan()
    party = PartyJob("job-t", job_key.n, providers=1, min_cohort=20, dp=None)
    job = CohortJoinJob("psi.cardinality", plan, ProviderInput("org-b", "ds-b", values),
                        sandbox=default_sandbox(tmp_path), job_id="job-t", party=party)  # fmt: skip
    to_sdk: list[dict[str, Any]] = []
    to_bank: list[tuple[str, bytes]] = []
    sdk = psi.CohortParty(data.cohort, "phone", record=to_sdk.append)
    out = job.exchange(lambda _k, doc: sdk.reply(doc), lambda _to, s, d: to_bank.append((s, d)))
    assert job.document(out)["format"] == "pdx-encrypted-aggregate/1"
    _assert_nothing_disclosed(to_sdk, data)
    # No value of the bank's travels, not even encrypted: points and counts only.
    pairs = [d for d in to_sdk if d["op"] == "pairs"]
    assert pairs and all(
        set(d) == {"format", "op", "job_id", "rows", "count", "final", "points"} for d in pairs
    )
    # The bank's sandbox receives the SDK's blinded elements: not the job's PSI messages
    # (HMAC of the canonical phones), not their hash-to-curve points, not a phone.
    salt = bytes.fromhex(to_sdk[0]["salt"])
    domain = JobDomain("job-t", salt)
    bank = b"".join(d for _, d in to_bank)
    for p in data.common:
        msg = domain.message(IdKind.PHONE, p)
        point = _h2c_p256.hash_to_curve(msg, domain.dst)
        assert point is not None
        assert msg not in bank and point[0].to_bytes(32, "big") not in bank
        assert p.encode() not in bank
    assert {s for s, _ in to_bank} == {"cohort.elements", "cohort.matched"}
    # And each of the SDK's identifiers normalises as the bank's sandbox would.
    assert all(normalise(IdKind.PHONE, c) is not None for c in data.cohort)


def test_the_sdk_hashes_to_the_curve_as_the_server_does() -> None:
    dst = b"QUUX-V01-CS02-with-P256_XMD:SHA-256_SSWU_RO_"
    for msg in (b"", b"abc", b"abcdef0123456789", b"q128_" + b"q" * 128):
        assert psi.hash_to_curve(msg, dst) == _h2c_p256.hash_to_curve(msg, dst)
    # RFC 9380 J.1.1, msg = "": P.x
    x = 0x2C15230B26DBC6FC9A37051158C95B79656E17A1A920B11394CA91C44247D3E4
    assert psi.hash_to_curve(b"", dst)[0] == x


# -- attacks ------------------------------------------------------------------------------------


def test_a_cohort_below_the_minimum_intersection_is_refused(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    data = cohort_data(4)
    net = cohort_network(capi, creds, data)
    # Declared below the minimum: refused before anything is written.
    r = _ask(capi, net, "psi.cardinality", {"cohort": _cohort(data, size=5)}, job_key)
    assert_problem(r, 403)
    assert "minimum intersection" in r.json()["detail"]
    # Declared large enough, but only 5 of its members are the bank's: padding with
    # strangers does not pass the bound, checked on the exact intersection in the sandbox.
    strangers = [f"1390000{i:04d}" for i in range(60)]
    members = sorted(data.common)[:5]
    party = psi.CohortParty(members + strangers, "phone")
    padded = {"cohort": {"key": "msisdn", "kind": "phone", "size": 65}}
    done = _run(capi, net, "psi.cardinality", padded, job_key, party)
    assert done["state"] in ("rejected", "failed"), done
    assert done["error"]["code"] == "join-intersection-too-small"
    r = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"])
    assert r.status_code in (404, 409)


def test_an_undeclared_key_column_and_a_missing_job_key_are_refused(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    data = cohort_data(5)
    net = cohort_network(capi, creds, data, declare=False)
    r = _ask(capi, net, "psi.cardinality", {"cohort": _cohort(data)}, job_key)
    assert_problem(r, 403)
    assert "not declared joinable" in r.json()["detail"]
    net2 = cohort_network(capi, creds, data, tag=" 2")
    r = _ask(capi, net2, "psi.cardinality", {"cohort": _cohort(data)}, None)
    assert_problem(r, 422)


def _open_step(capi: TestClient, net: dict[str, Any], comp_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        r = capi.get(f"/v1/computations/{comp_id}/join-step", headers=net["ent"])
        if r.status_code == 200 and not r.json()["posted"]:
            out: dict[str, Any] = r.json()
            return out
        assert r.status_code in (200, 409) and time.monotonic() < deadline, r.text
        time.sleep(0.05)


def test_replayed_altered_or_foreign_replies_and_the_deadline(
    capi: TestClient, creds: dict[str, Any], platform: Platform, job_key: JobKey
) -> None:
    data = cohort_data(6, cohort=60, values=80, common=50)
    net = cohort_network(capi, creds, data)
    platform.compute.fl_round_timeout_s = 8.0  # each step's deadline (PDX_FL_ROUND_TIMEOUT_S)
    r = _ask(capi, net, "psi.cardinality", {"cohort": _cohort(data)}, job_key)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    capi.post(f"/v1/computations/{comp_id}/approve", headers=net["bank"], json={})
    step = _open_step(capi, net, comp_id)
    assert step["request"]["format"] == JOIN_STEP_FORMAT and step["step"] == 0
    party = psi.CohortParty(data.cohort, "phone")
    reply = party.reply(step["request"])
    # Another organisation (the bank itself, which sees the job) cannot read or answer.
    assert_problem(capi.get(f"/v1/computations/{comp_id}/join-step", headers=net["bank"]), 403)
    r = capi.post(f"/v1/computations/{comp_id}/join-step/0", headers=net["bank"], json=reply)
    assert_problem(r, 403)
    # A wrong step, a wrong operation, a malformed element: refused, nothing recorded.
    r = capi.post(f"/v1/computations/{comp_id}/join-step/1", headers=net["ent"], json=reply)
    assert_problem(r, 409)
    r = capi.post(f"/v1/computations/{comp_id}/join-step/0", headers=net["ent"],
                  json={"op": "pairs", "ok": True})  # fmt: skip
    assert_problem(r, 422)
    bad = {**reply, "elements": base64.b64encode(b"x" * 31).decode()}
    r = capi.post(f"/v1/computations/{comp_id}/join-step/0", headers=net["ent"], json=bad)
    assert_problem(r, 422)
    r = capi.post(f"/v1/computations/{comp_id}/join-step/0", headers=net["ent"], json=reply)
    assert r.status_code == 200, r.text
    # Twice: refused.
    r = capi.post(f"/v1/computations/{comp_id}/join-step/0", headers=net["ent"], json=reply)
    assert_problem(r, 409)
    # Then the SDK stops answering: the run fails at the deadline and keeps no step.
    step = _open_step(capi, net, comp_id)
    assert step["step"] == 1 and step["request"]["op"] == "pairs"
    done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected", timeout=60)
    assert done["state"] == "failed" and done["error"]["code"] == "join-step-timeout"
    r = capi.post(f"/v1/computations/{comp_id}/join-step/{step['step']}", headers=net["ent"],
                  json=party.reply(step["request"]))  # fmt: skip
    assert_problem(r, 409)
    with platform.session() as s:
        assert s.scalars(select(ComputationFlRound)).all() == []


def test_a_stop_answers_any_step_and_an_oversized_reason_is_refused(
    capi: TestClient, creds: dict[str, Any], platform: Platform, job_key: JobKey
) -> None:
    """The SDK refuses a step with a stop: recorded, and the run fails at once."""
    data = cohort_data(8, cohort=60, values=80, common=50)
    net = cohort_network(capi, creds, data)
    r = _ask(capi, net, "psi.cardinality", {"cohort": _cohort(data)}, job_key)
    assert r.status_code == 201, r.text
    comp_id = r.json()["id"]
    capi.post(f"/v1/computations/{comp_id}/approve", headers=net["bank"], json={})
    step = _open_step(capi, net, comp_id)
    url = f"/v1/computations/{comp_id}/join-step/{step['step']}"
    r = capi.post(url, headers=net["ent"], json={"op": "stop", "reason": "x" * 501})
    assert_problem(r, 422)
    r = capi.post(url, headers=net["ent"], json={"op": "stop", "reason": "not this provider"})
    assert r.status_code == 200, r.text
    done = wait_for(capi, net["ent"], comp_id, "released", "failed", "rejected", timeout=60)
    assert done["state"] == "failed" and done["error"]["code"] == "join-stopped"
    assert "not this provider" in done["error"]["detail"]
    with platform.session() as s:
        posted = s.scalars(
            select(AuditRecord).where(
                AuditRecord.object_id == comp_id,
                AuditRecord.event_type == "computation.join_step_posted",
            )
        ).all()
        assert [a.detail for a in posted] == [f"step={step['step']} op=stop"]


def test_an_altered_return_fails_the_job_without_a_result(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    """An SDK that duplicates a returned pair (to inflate the intersection) is refused."""
    data = cohort_data(7, cohort=60, values=80, common=50)
    net = cohort_network(capi, creds, data)

    class Inflating(psi.CohortParty):
        def reply(self, doc: dict[str, Any]) -> dict[str, Any]:
            out = super().reply(doc)
            if doc["op"] == "return":
                e = base64.b64decode(out["elements"])
                out["elements"] = base64.b64encode(e[:32] + e[:-32]).decode()
            return out

    party = Inflating(data.cohort, "phone")
    done = _run(capi, net, "psi.cardinality", {"cohort": _cohort(data)}, job_key, party)
    assert done["state"] == "failed", done
    r = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"])
    assert r.status_code in (404, 409)


def test_the_sandbox_refuses_a_short_return_and_too_many_identifiers(
    tmp_path: Path, job_key: JobKey
) -> None:
    data = cohort_data(8, cohort=40, values=50, common=30)
    values = tmp_path / "values.csv"
    values.write_text(data.values_csv)

    def job(size: int) -> CohortJoinJob:
        cohort = RequesterCohort(key="msisdn", kind=IdKind.PHONE, size=size)
        plan = PsiCardinalityParams(cohort=cohort).plan()
        party = PartyJob("job-s", job_key.n, providers=1, min_cohort=20, dp=None)
        return CohortJoinJob("psi.cardinality", plan, ProviderInput("org-b", "ds-b", values),
                             sandbox=default_sandbox(tmp_path), job_id="job-s",
                             party=party)  # fmt: skip

    class Dropping(psi.CohortParty):
        def reply(self, doc: dict[str, Any]) -> dict[str, Any]:
            out = super().reply(doc)
            if doc["op"] == "return":  # keep back one element (a member, or not)
                e = base64.b64decode(out["elements"])
                out["elements"] = base64.b64encode(e[32:]).decode()
            return out

    sdk = Dropping(data.cohort, "phone")
    with pytest.raises(InvalidParameters, match="every element"):
        job(len(data.cohort)).exchange(lambda _k, doc: sdk.reply(doc))
    # More identifiers than declared: the honest SDK refuses, and so does the sandbox.
    with pytest.raises(psi.CohortError):
        sdk = psi.CohortParty(data.cohort, "phone")
        job(10).exchange(lambda _k, doc: sdk.reply(doc))
    liar = psi.CohortParty(data.cohort, "phone")
    with pytest.raises(InvalidParameters, match="declared size"):
        job(10).exchange(lambda _k, doc: liar.reply({**doc, "size": 10_000}))
    # The exact intersection below the bound: only the refusal leaves the sandbox.
    small = psi.CohortParty(sorted(data.common)[:19] + ["13900001111"] * 3, "phone")
    with pytest.raises(CohortTooSmall):
        job(len(data.cohort)).exchange(lambda _k, doc: small.reply(doc))


# -- psi.intersection: the members of the requester's own list, only where the policy allows ------


def test_psi_intersection_matches_in_the_sdk_and_the_sandbox_learns_no_member(
    tmp_path: Path, job_key: JobKey
) -> None:
    """The standard ECDH direction, in the bank's real sandbox: the SDK learns X ∩ Y."""
    data = cohort_data(9, cohort=80, values=100, common=55)
    cohort = RequesterCohort(key="msisdn", kind=IdKind.PHONE, size=len(data.cohort))
    job = _sandbox_job(
        tmp_path, data, job_key, PsiIntersectionParams(cohort=cohort), "psi.intersection"
    )
    to_sdk: list[dict[str, Any]] = []
    to_bank: list[tuple[str, bytes]] = []
    sdk = psi.CohortParty(data.cohort, "phone", record=to_sdk.append)
    job.exchange(lambda _k, doc: sdk.reply(doc), lambda _to, s, d: to_bank.append((s, d)))
    assert sdk.members == sorted(data.common)
    assert sdk.rows == 100 and job.revealed_cohort == 80
    bank = b"".join(d for _, d in to_bank)
    for p in data.common:
        assert p.encode() not in bank
    assert {s for s, _ in to_bank} == {"cohort.elements"}
    assert all("cts" not in d for d in to_sdk)  # no value of the bank's travels


def test_psi_intersection_with_the_requesters_own_cohort_is_refused_by_the_policy(
    capi: TestClient, creds: dict[str, Any], job_key: JobKey
) -> None:
    """Members are personal information: `policies/joins.rego` allows no request them."""
    data = cohort_data(10)
    net = cohort_network(capi, creds, data)
    r = _ask(capi, net, "psi.intersection", {"cohort": _cohort(data)}, job_key)
    assert_problem(r, 403)
    assert "may not reveal who is in the intersection" in r.json()["detail"]


def test_a_node_held_dataset_runs_the_providers_side_on_its_node(
    capi: TestClient, creds: dict[str, Any], platform: Platform, job_key: JobKey
) -> None:
    """The node checks each call against the job key its provider approved, as for joins."""
    data = cohort_data(11, cohort=80, values=90, common=60)
    net = node_held_network(capi, creds, data)
    party = psi.CohortParty(data.cohort, "phone")
    done = _run(capi, net, "psi.cardinality", {"cohort": _cohort(data)}, job_key, party)
    assert done["state"] == "released", done["error"]
    assert done["inputs"][0]["custody"] == "node"
    result = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"]).json()
    eps = done["obligations"]["dp_epsilon"]
    assert abs(job_key.decrypt(result)["intersection_size"] - 60) < 20 / eps


def test_a_run_started_again_starts_the_sdks_side_again(tmp_path: Path, job_key: JobKey) -> None:
    """A recovered run opens a new sandbox (a new salt): the SDK answers with a new k1."""
    data = cohort_data(12, cohort=60, values=70, common=45)
    cohort = RequesterCohort(key="msisdn", kind=IdKind.PHONE, size=len(data.cohort))
    params = PsiCardinalityParams(cohort=cohort)
    sdk = psi.CohortParty(data.cohort, "phone")

    def interrupted(_k: int, doc: dict[str, Any]) -> dict[str, Any]:
        if doc["op"] == "pairs":
            raise RuntimeError("the worker died")
        return sdk.reply(doc)

    with pytest.raises(RuntimeError):
        _sandbox_job(tmp_path, data, job_key, params, "psi.cardinality").exchange(interrupted)
    job = _sandbox_job(tmp_path, data, job_key, params, "psi.cardinality")
    doc = job.document(job.exchange(lambda _k, d: sdk.reply(d)))
    assert job_key.decrypt(doc)["intersection_size"] == 45
