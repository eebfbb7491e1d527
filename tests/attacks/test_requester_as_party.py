"""The requester is also one of the parties of a vertical computation (issue 18, attack review).

An enterprise that asks for a join or a vertical LR may also hold one of its inputs: the
same legal person registered as a provider organisation too (the operator verified both
with one unified social credit code). Then:

- **On its own node it reads that party's sandbox** (refused, every role): its agreement
  seed with the other party (`mask_seeds`, made by the node process) and every relayed
  message. Modelled by a recorder on the node's sandbox session (`_NodeSideSession.call`)
  that lets every call through and keeps a copy, as the node's operator can.
  - As the **matcher** under its own job key it receives the value party's per-record
    ciphertexts under the requester's key, sealed under a key it derives from that seed:
    the requester reads the other provider's value column record by record, no noise.
  - As the **value party** it receives the cohort's exact size per group (`group_by`): an
    exact histogram of the other provider's column.
  - As the **guest or a host** of `fl.hetero_logreg` its sandbox computes its per-round
    gradient X^T·d and its weights before noise, functions of the other parties' features
    and labels (`sandbox/hetero_lr.py`, who learns what); none of that is DP.
  Refused at the request (403, the `pdx.joins` violation; no computation, no ledger entry).
- **It chooses that input's rows** (any custody): 19 people it knows the other provider
  holds plus one target. Decided on the *exact* count (the matcher's and the hetero
  guest's minimum) the refusal told the target's membership per request, whatever ε (the
  cohort review's F3). Under DP the minimum is now decided on a noised count: the join
  matcher's exact count plus its own count-noise share (the whole noise, n = 2), the
  guest's aligned count plus Laplace noise at a fifth of ε, the platform-key gate's noisy
  counts. So a platform-held own input may be a party, and the bank of the issue (its
  own labels as hetero guest, the city's features as hosts) trains and releases a model.

The seeded tests follow the cohort F3 test's method (tests/attacks/test_cohort_review.py):
the real noise sampler is seeded until it draws +k or −k, and an exact count just below
the minimum is released while one just above is refused. Through the server the platform
key's gate noise is seeded (`platform.compute.noise`); the requester-key decisions are
taken inside a sandbox process a seed set here cannot reach, so they run the real
operator code in this process (`tests.helpers.s17_own_platform.InProcessParties`).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crypto.relay import open_relay, relay_key
from exchange.models import Computation
from gateway.platform import Platform
from sandbox import cohort_party, node_side
from sandbox._registry import ProviderInput
from sandbox.coordinator import JobPublic
from sandbox.dp import SeededNoise
from sandbox.errors import IntersectionTooSmall
from sandbox.identifiers import IdKind
from sandbox.join_params import JoinClause, JoinPlan, PsiCardinalityParams
from sandbox.join_wire import ct_width, unframe
from sandbox.joins import JoinJob
from sandbox.noise_shares import NoisePlan
from sandbox.party_stats import PartyJob
from sandbox.psi import POINT
from sandbox.release import InMemoryPrivacyBudget, ReleaseGate, ReleaseObligations
from sandbox.vertical_dp import split_epsilon
from sandbox.vertical_ops import HeteroJob
from sandbox.vertical_params import HeteroParams
from tests.helpers.api import assert_problem
from tests.helpers.i17_market import verify_org
from tests.helpers.i18_wiring import (
    HETERO,
    JOIN,
    LEGAL_BASIS,
    PURPOSE,
    JoinData,
    approve_all,
    declare_key,
    join_data,
    join_network,
    register_pi,
    vertical_csvs,
)
from tests.helpers.s12_console_market import ledger_size
from tests.helpers.s17_own_platform import (
    InProcessParties,
    phones,
    seed_for_gate,
    seed_for_share,
    table,
)
from tests.test_api_computations import wait_for
from tests.test_api_contracts import active_contract, make_org

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk"))
from pdx_client.jobkeys import JobKey  # noqa: E402

SAME_ENTITY, OTHER_ENTITY = 7, 8
"""Seeds of the two unified social credit codes the operator verifies."""
DONE = ("released", "failed", "rejected", "review")
OWN_PARTY = "may not be a party of a vertical computation with another provider"
MIN = 20
"""The policy's minimum intersection (policies/joins.rego); general-3 data: ε = 0.6."""
EPSILON = 0.6
"""The `pdx.joins` violation's stable part (policies/joins.rego)."""


@pytest.fixture
def node_view(monkeypatch: pytest.MonkeyPatch) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """Every (params, blobs) a node's sandbox session is given: what its operator can read."""
    seen: list[tuple[dict[str, Any], dict[str, bytes]]] = []
    real = node_side._NodeSideSession.call

    def curious(self: Any, params: Any, blobs: Any) -> Any:
        seen.append((dict(params), dict(blobs)))
        return real(self, params, blobs)

    monkeypatch.setattr(node_side._NodeSideSession, "call", curious)
    return seen


def _own_network(
    api: TestClient, creds: dict[str, Any], data: JoinData, own: str
) -> dict[str, Any]:
    """The insurer also registered as `own` ("tel": the cohort, "bank": the values)."""
    net = join_network(api, creds, data, declare=False)
    other = "bank" if own == "tel" else "tel"
    verify_org(api, creds, net["ent_org"], SAME_ENTITY)
    verify_org(api, creds, net[f"{own}_org"], SAME_ENTITY)
    verify_org(api, creds, net[f"{other}_org"], OTHER_ENTITY)
    side = "cohort" if own == "tel" else "values"
    net[f"platform_{side}"] = net[side]
    r = api.put("/v1/nodes/me", headers=net[own], json={"kind": "embedded"})
    assert r.status_code == 200, r.text
    text = data.cohort_csv if own == "tel" else data.values_csv
    held = register_pi(api, net[own], text, f"{side} (own node)", path="/v1/nodes/datasets")
    active_contract(api, net["ent"], net[own], net[f"{own}_org"], [held["id"]], PURPOSE)
    net[side] = held["id"]
    keys = {"cohort": ("tel", "mobile"), "values": ("bank", "msisdn")}
    for name in ("cohort", "values", f"platform_{side}"):
        who, column = keys[name.removeprefix("platform_")]
        declare_key(api, net[who], net[name], column)
    return net


def _ask(
    api: TestClient, net: dict[str, Any], operator: str, params: dict[str, Any], key: JobKey
) -> Any:
    body = {
        "operator": operator,
        "inputs": [net["cohort"], net["values"]],
        "params": params,
        "purpose": PURPOSE,
        "legal_basis": LEGAL_BASIS,
        "job_key": key.public(),
    }
    return api.post("/v1/computations", headers=net["ent"], json=body)


def _computations(platform: Platform) -> int:
    with platform.session() as s:
        return int(s.scalar(select(func.count()).select_from(Computation)) or 0)


def _assert_refused(r: Any, platform: Platform, before: tuple[int, int]) -> None:
    body = assert_problem(r, 403, "forbidden")
    assert any(OWN_PARTY in reason for reason in body.get("reasons", [])), body
    assert (_computations(platform), ledger_size(platform)) == before


def _run(api: TestClient, net: dict[str, Any], comp_id: str) -> dict[str, Any]:
    approve_all(api, net, comp_id)
    done = wait_for(api, net["ent"], comp_id, *DONE)
    if done["state"] == "review":
        approve_all(api, net, comp_id)
        done = wait_for(api, net["ent"], comp_id, "released", "failed", "rejected")
    return done


def _open_value_party(
    seen: list[tuple[dict[str, Any], dict[str, bytes]]], key: JobKey
) -> list[Fraction]:
    """The matcher's node operator + the requester: every value the other provider sent."""
    params, blobs = next((p, b) for p, b in seen if p.get("step") == "matcher.start")
    job = JobPublic.from_request(params["job"], {})
    party = params["party"]
    (seed,) = json.loads(blobs["mask_seeds"]).values()
    sealing = relay_key(bytes.fromhex(seed), job.job_id.encode())
    aad = f"pdx:join:value.pairs:{job.job_id}".encode()
    plan = JoinPlan.from_params(params["plan"])
    fields = plan.query.fields()
    sizes = {"providers": int(party["providers"]), "min_cohort": int(party["min_cohort"])}
    noise = PartyJob(job.job_id, key.n, **sizes, dp=party.get("dp")).plan(plan.query)
    width, n = ct_width(key.n), key.n
    values: list[Fraction] = []
    pairs = [b["pairs"] for p, b in seen if p.get("step") == "matcher.pairs"]
    for batch, message in enumerate(pairs):
        header, body = unframe(message)
        count = int(header["count"])
        cts = open_relay(sealing, batch, aad, body[count * POINT :])
        for i in range(count):
            for f, name in enumerate(fields):
                at = (i * len(fields) + f) * width
                m = int(key._sk.raw_decrypt(int.from_bytes(cts[at : at + width], "big")))
                m = m - n if m > n // 2 else m
                if name.startswith("sum:"):
                    values.append(noise.units[f] * m if noise is not None else Fraction(m, 100))
    return values


# -- a two-provider join ----------------------------------------------------------------------


def test_the_requester_may_not_be_the_matcher_on_its_own_node(
    capi: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    node_view: list[tuple[dict[str, Any], dict[str, bytes]]],
) -> None:
    data = join_data(61, cohort=60, values=70, common=40)
    net = _own_network(capi, creds, data, "tel")
    key = JobKey.generate()
    before = (_computations(platform), ledger_size(platform))
    params = {"join": JOIN, "value": "amount", "clip": [0, 100], "decimals": 2}
    r = _ask(capi, net, "psi.sum", params, key)
    if r.status_code == 201:  # the code before the fix: run it and read the other side
        done = _run(capi, net, r.json()["id"])
        assert done["state"] == "released", done["error"]
        read = _open_value_party(node_view, key)
        theirs = sorted(min(max(a, Fraction(0)), Fraction(100)) for a in data.amount.values())
        off = max((abs(a - b) for a, b in zip(sorted(read), theirs, strict=True)), default=0)
        pytest.fail(
            f"accepted; the requester read {len(read)} of the bank's {len(theirs)} amounts, "
            f"record by record (each within {float(off):.4f}; total {float(sum(read)):.2f} "
            f"against {float(sum(theirs)):.2f}), where the release carries Laplace noise "
            "of scale 500 per share"
        )
    _assert_refused(r, platform, before)
    assert node_view == []
    # Held by the platform it may be the matcher (its node reads nothing; the minimum is
    # decided on the noised count: the seeded tests below).
    r = _ask(capi, {**net, "cohort": net["platform_cohort"]}, "psi.sum", params, key)
    assert r.status_code == 201, r.text
    # Keyed on the operator's verification: another legal person's node may be the matcher.
    verify_org(capi, creds, net["tel_org"], OTHER_ENTITY + 1)
    r = _ask(capi, net, "psi.sum", params, key)
    assert r.status_code == 201, r.text


def test_the_requester_as_value_party_on_its_own_node_may_not_group_by_the_cohort(
    capi: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    node_view: list[tuple[dict[str, Any], dict[str, bytes]]],
) -> None:
    data = join_data(62, cohort=60, values=70, common=40)
    net = _own_network(capi, creds, data, "bank")
    key = JobKey.generate()
    before = (_computations(platform), ledger_size(platform))
    grouped = {"join": JOIN, "columns": ["amount"], "group_by": "tier", "groups": ["A", "B"],
               "clip": [0, 100], "decimals": 2}  # fmt: skip
    exact = Counter(data.tier.values())
    r = _ask(capi, net, "stats.sum", grouped, key)
    if r.status_code == 201:  # the code before the fix: the node reads the cohort's groups
        done = _run(capi, net, r.json()["id"])
        assert done["state"] == "released", done["error"]
        counts = [unframe(b["blinded"])[0]["counts"] for p, b in node_view
                  if p.get("step") == "value.respond"]  # fmt: skip
        pytest.fail(
            f"accepted; the requester's node read the telecom's exact tier sizes {counts} "
            f"(exact: A {exact['A']}, B {exact['B']}), where a count carries DP noise"
        )
    _assert_refused(r, platform, before)
    assert node_view == []


# -- vertical logistic regression -------------------------------------------------------------


@pytest.mark.parametrize("own", ["guest", "host"])
def test_the_requester_may_not_run_a_hetero_lr_party_on_its_own_node(
    capi: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    node_view: list[tuple[dict[str, Any], dict[str, bytes]]],
    own: str,
) -> None:
    """On its node it would read its sandbox's gradient per round and weights before noise.

    (On the code before the fix its rows also chose the alignment, which the guest
    refused below the minimum exactly.) Its dataset: 19 people the other party holds, and
    a target.
    """
    guest_csv, host_csv, _ = vertical_csvs(64)  # people 10..79 in both
    net = join_network(capi, creds, join_data(64), declare=False)
    who, other = ("tel", "bank") if own == "guest" else ("bank", "tel")
    verify_org(capi, creds, net["ent_org"], SAME_ENTITY)
    verify_org(capi, creds, net[f"{who}_org"], SAME_ENTITY)
    r = capi.put("/v1/nodes/me", headers=net[who], json={"kind": "embedded"})
    assert r.status_code == 200, r.text
    g_rows, h_rows = guest_csv.splitlines()[1:], host_csv.splitlines()[1:]
    theirs = h_rows[:70] if own == "guest" else g_rows[10:]
    outsider = (g_rows[0] if own == "guest" else h_rows[-1]).split(",")[0]
    known, member = [r.split(",")[0] for r in theirs[:19]], theirs[19].split(",")[0]
    header = "tel,f0,f1,label\n" if own == "guest" else "tel,g0,g1\n"
    cells = ",0.5,-0.25,{}" if own == "guest" else ",0.5,-0.25"
    theirs_csv = guest_csv if own == "host" else host_csv
    theirs_ds = register_pi(capi, net[other], theirs_csv, f"{other} data")["id"]
    active_contract(capi, net["ent"], net[other], net[f"{other}_org"], [theirs_ds], PURPOSE)
    declare_key(capi, net[other], theirs_ds, "tel")
    outcomes = {}
    for target in (member, outsider):
        rows = [p + cells.format(i % 2) for i, p in enumerate([*known, target])]
        text = header + "\n".join(rows) + "\n"
        mine = register_pi(capi, net[who], text, f"probe {target}", path="/v1/nodes/datasets")
        active_contract(capi, net["ent"], net[who], net[f"{who}_org"], [mine["id"]], PURPOSE)
        declare_key(capi, net[who], mine["id"], "tel")
        inputs = [mine["id"], theirs_ds] if own == "guest" else [theirs_ds, mine["id"]]
        before = (_computations(platform), ledger_size(platform))
        body = {"operator": "fl.hetero_logreg", "inputs": inputs, "params": HETERO,
                "purpose": PURPOSE, "legal_basis": LEGAL_BASIS,
                "job_key": JobKey.generate().public()}  # fmt: skip
        r = capi.post("/v1/computations", headers=net["ent"], json=body)
        if r.status_code == 201:  # the code before the fix
            done = _run(capi, net, r.json()["id"])
            outcomes[target] = (done["state"], (done.get("error") or {}).get("code"))
            continue
        _assert_refused(r, platform, before)
    assert not outcomes, (
        f"accepted with the requester's {own} on its node; a subscriber's probe "
        f"{outcomes.get(member)}, an outsider's {outcomes.get(outsider)}"
    )
    assert node_view == []


# -- platform-held: the requester's rows choose the intersection, the noise decides ----------


def _probe_outcome(
    capi: TestClient, platform: Platform, net: dict[str, Any], body: dict[str, Any], seed: int
) -> tuple[str, str | None, dict[str, Any] | None]:
    """(state, error code, released output) of one request, the gate's noise seeded."""
    platform.compute.noise = SeededNoise(np.random.default_rng(seed))
    r = capi.post("/v1/computations", headers=net["ent"], json=body)
    assert r.status_code == 201, r.text  # on the code before this change: 403
    done = _run(capi, net, r.json()["id"])
    code = (done.get("error") or {}).get("code")
    out = None
    if done["state"] == "released":
        res = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"])
        out = res.json()["output"]
    return done["state"], code, out


def test_a_platform_held_own_value_party_runs_and_the_noise_decides(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """Finding 3: 19 subscribers it knows plus a target, as its own platform-held dataset.

    The gate's count noise is seeded to −3 for the subscriber's probe (exact 20) and +3
    for the outsider's (exact 19): the subscriber's is refused and the outsider's released
    as 22, the opposite of what the exact count would say. Under its own job key the
    probe runs too (the matcher's decision: the in-process tests below).
    """
    data = join_data(65, cohort=60, values=70, common=40)
    net = join_network(capi, creds, data, declare=False)
    verify_org(capi, creds, net["ent_org"], SAME_ENTITY)
    verify_org(capi, creds, net["bank_org"], SAME_ENTITY)
    declare_key(capi, net["tel"], net["cohort"], "mobile")
    subscribers = sorted(data.tier)
    outsider = next(p for p in sorted(data.amount) if p not in data.tier)
    known, member = subscribers[:19], subscribers[19]
    scale = 1.0 / EPSILON  # one count measure, sensitivity 1 (sandbox.release)
    outcomes = {}
    for name, target, draw in (("member", member, -3), ("outsider", outsider, 3)):
        rows = "".join(f"{p},1.00\n" for p in [*known, target])
        ds = register_pi(capi, net["bank"], "msisdn,amount\n" + rows, f"probe {name}")["id"]
        active_contract(capi, net["ent"], net["bank"], net["bank_org"], [ds], PURPOSE)
        declare_key(capi, net["bank"], ds, "msisdn")
        body = {
            "operator": "psi.cardinality",
            "inputs": [net["cohort"], ds],
            "params": {"join": JOIN},
            "purpose": PURPOSE,
            "legal_basis": LEGAL_BASIS,
        }
        outcomes[name] = _probe_outcome(capi, platform, net, body, seed_for_gate(scale, draw))
        if name == "member":  # under the requester's key it runs as well
            r = _ask(capi, {**net, "values": ds}, "psi.cardinality", {"join": JOIN},
                     JobKey.generate())  # fmt: skip
            assert r.status_code == 201, r.text
            keyed = _run(capi, net, r.json()["id"])
            assert keyed["state"] in ("released", "rejected"), keyed
            if keyed["state"] == "rejected":
                assert keyed["error"]["code"] == "join-intersection-too-small"
    assert outcomes["member"][:2] == ("rejected", "join-intersection-too-small"), outcomes
    state, _, out = outcomes["outsider"]
    assert state == "released" and out is not None and out["intersection_size"] == 22, outcomes


def test_a_platform_held_own_hetero_guest_runs_and_the_noise_decides(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """Finding 4: the same probe as the hetero guest (its own labels, the other's features).

    The aligned count's Laplace noise (a fifth of ε = 0.6: scale 1/0.12) is seeded to −3
    for the subscriber's probe (exact 20) and +3 for the outsider's (exact 19).
    """
    guest_csv, host_csv, _ = vertical_csvs(64)  # people 10..79 in both
    net = join_network(capi, creds, join_data(64), declare=False)
    verify_org(capi, creds, net["ent_org"], SAME_ENTITY)
    verify_org(capi, creds, net["tel_org"], SAME_ENTITY)
    g_rows, h_rows = guest_csv.splitlines()[1:], host_csv.splitlines()[1:]
    known = [r.split(",")[0] for r in h_rows[:19]]
    member, outsider = h_rows[19].split(",")[0], g_rows[0].split(",")[0]
    host = register_pi(capi, net["bank"], host_csv, "bank features")["id"]
    active_contract(capi, net["ent"], net["bank"], net["bank_org"], [host], PURPOSE)
    declare_key(capi, net["bank"], host, "tel")
    scale = 1.0 / split_epsilon(EPSILON)[0]
    outcomes = {}
    for name, target, draw in (("member", member, -3), ("outsider", outsider, 3)):
        rows = [f"{p},{0.5 * i:.2f},-0.25,{i % 2}" for i, p in enumerate([*known, target])]
        text = "tel,f0,f1,label\n" + "\n".join(rows) + "\n"
        mine = register_pi(capi, net["tel"], text, f"probe {name}")
        assert mine["custody"] == "platform"
        active_contract(capi, net["ent"], net["tel"], net["tel_org"], [mine["id"]], PURPOSE)
        declare_key(capi, net["tel"], mine["id"], "tel")
        body = {"operator": "fl.hetero_logreg", "inputs": [mine["id"], host], "params": HETERO,
                "purpose": PURPOSE, "legal_basis": LEGAL_BASIS}  # fmt: skip
        outcomes[name] = _probe_outcome(capi, platform, net, body, seed_for_gate(scale, draw))
    assert outcomes["member"][:2] == ("rejected", "join-intersection-too-small"), outcomes
    state, _, out = outcomes["outsider"]
    assert state == "released" and out is not None and out["dp_epsilon"] == EPSILON, outcomes


# -- under the requester's key: the decision inside the parties' sandboxes --------------------

CLAUSE = JoinClause(left_key="mobile", right_key="msisdn", kind=IdKind.PHONE)
LAPLACE = {"epsilon": 1.0, "delta": 0.0, "mechanism": "laplace"}
GAUSSIAN = {"epsilon": 1.0, "delta": 1e-6, "mechanism": "gaussian"}


@pytest.mark.parametrize(("exact", "draw", "released"), [(19, 3, True), (21, -3, False)])
def test_the_join_matcher_decides_on_its_own_noise_share(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exact: int, draw: int, released: bool
) -> None:
    """Requester-held key: exact 19 + the matcher's +3 is released, exact 21 − 3 refused.

    On the code before the change the matcher refused on the exact intersection: 19 was
    refused and 21 released whatever the noise (each parameter fails on the decision).
    """
    subscribers = phones(0, 40)
    (tmp_path / "tel.csv").write_text("mobile\n" + "\n".join(subscribers) + "\n")
    own = [*subscribers[:exact], *phones(500, 10)]
    (tmp_path / "own.csv").write_text("msisdn,amount\n" + "".join(f"{p},1\n" for p in own))
    key = JobKey.generate()
    pj = PartyJob("own-join", key.n, providers=2, min_cohort=MIN, dp=LAPLACE)
    plan = PsiCardinalityParams(join=CLAUSE).plan()
    lattice = pj.plan(plan.query)
    assert lattice is not None and lattice.shares == 1  # the matcher's share: all the noise
    rng = np.random.default_rng(seed_for_share(lattice, draw))
    monkeypatch.setattr(cohort_party, "NOISE_RNG", rng)
    job = JoinJob("psi.cardinality", plan, ProviderInput("org-tel", "ds-tel", tmp_path / "tel.csv"),
                  ProviderInput("org-own", "ds-own", tmp_path / "own.csv"),
                  sandbox=InProcessParties(), job_id=pj.job_id, batch=16,  # type: ignore[arg-type]
                  party=pj)  # fmt: skip
    gate = ReleaseGate(InMemoryPrivacyBudget())
    ob = ReleaseObligations(min_cohort=MIN, dp_epsilon=1.0)
    if not released:
        with pytest.raises(IntersectionTooSmall):
            job.run_under_party_key(gate, ob)
        return
    opened = key.decrypt(job.run_under_party_key(gate, ob).review())
    # released: exact + the matcher's +3 + the value party's own (unseeded) share
    assert isinstance(opened["intersection_size"], (int, float))


@pytest.mark.parametrize(
    ("exact", "draw", "minimum", "released"),
    [(19, 3, 20, True), (21, -3, 20, False), (0, 6, 5, True)],
)
def test_the_hetero_guest_decides_on_a_noised_aligned_count(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    exact: int,
    draw: int,
    minimum: int,
    released: bool,
) -> None:
    """Requester-held key: the guest's aligned count plus Laplace noise at a fifth of ε.

    19 + 3 is trained and released, 21 − 3 refused; an alignment of nobody that the noise
    lets through (0 + 6 ≥ 5) is released too (its weights are noise), not failed, so
    failing could not tell an empty alignment either. On the code before the change the
    guest refused on the exact count (19 and 0 refused, 21 released).
    """
    common = phones(0, 40)
    (tmp_path / "host.csv").write_text(table("tel,g0,g1", common, seed=1))
    own = [*common[:exact], *phones(500, 6)]
    (tmp_path / "guest.csv").write_text(table("tel,f0,f1,label", own, seed=2, label=True))
    key = JobKey.generate()
    pj = PartyJob("own-lr", key.n, providers=2, min_cohort=minimum, dp=GAUSSIAN)
    count_eps = split_epsilon(GAUSSIAN["epsilon"])[0]  # type: ignore[arg-type]
    counted = NoisePlan.build(("rows",), clip=None, epsilon=count_eps, delta=0.0,
                              mechanism="laplace", providers=1)  # fmt: skip
    monkeypatch.setattr(
        cohort_party, "NOISE_RNG", np.random.default_rng(seed_for_share(counted, draw))
    )
    params = HeteroParams.model_validate({**HETERO, "iterations": 2})
    job = HeteroJob(params, [ProviderInput("org-own", "ds-own", tmp_path / "guest.csv"),
                             ProviderInput("org-b", "ds-b", tmp_path / "host.csv")],
                    sandbox=InProcessParties(), job_id=pj.job_id,  # type: ignore[arg-type]
                    key_bits=1024, min_rows=minimum, party=pj)  # fmt: skip
    gate = ReleaseGate(InMemoryPrivacyBudget())
    ob = ReleaseObligations(min_cohort=minimum, dp_epsilon=1.0)
    if not released:
        with pytest.raises(IntersectionTooSmall):
            job.run_under_party_key(gate, ob)
        return
    release = job.run_under_party_key(gate, ob)
    assert release.epsilon_spent == 1.0  # the split costs nothing extra
    opened = key.decrypt(release.review())
    assert set(opened["weights"]) == {"ds-own", "ds-b"} and job.rows == exact


# -- the headline use case ------------------------------------------------------------


def test_a_bank_trains_on_its_own_labels_with_two_city_providers_features(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """The bank's loan outcomes (its own, platform-held) as guest; two city providers' hosts.

    On the code before this change the request was refused (403, `requester_own`).
    """
    bank_org, bank = make_org(capi, creds, "Riverside Bank lending", "enterprise")
    own_org, own = make_org(capi, creds, "Riverside Bank data", "provider")
    city = [make_org(capi, creds, name, "provider") for name in ("City Utilities", "City SI")]
    verify_org(capi, creds, bank_org, SAME_ENTITY)
    verify_org(capi, creds, own_org, SAME_ENTITY)
    for i, (org, _) in enumerate(city):
        verify_org(capi, creds, org, OTHER_ENTITY + i)
    customers = phones(1000, 90)
    residents = [customers[10:], customers[5:85]]  # 75 of the customers in both
    tables = [(own, own_org, table("tel,f0,f1,label", customers, seed=3, label=True))]
    for i, ((org, headers), people, c) in enumerate(zip(city, residents, "gh", strict=True)):
        tables.append((headers, org, table(f"tel,{c}0,{c}1", people, seed=4 + i)))
    inputs = []
    for headers, org, text in tables:
        ds = register_pi(capi, headers, text, f"{org} table")
        assert ds["custody"] == "platform"
        active_contract(capi, bank, headers, org, [ds["id"]], PURPOSE)
        declare_key(capi, headers, ds["id"], "tel")
        inputs.append(ds["id"])
    params = {"kind": "phone", "keys": ["tel"] * 3, "label": "label",
              "features": [["f0", "f1"], ["g0", "g1"], ["h0", "h1"]], "iterations": 3}  # fmt: skip
    body = {"operator": "fl.hetero_logreg", "inputs": inputs, "params": params,
            "purpose": PURPOSE, "legal_basis": LEGAL_BASIS}  # fmt: skip
    r = capi.post("/v1/computations", headers=bank, json=body)
    assert r.status_code == 201, r.text  # before: 403, the requester's own input
    comp = r.json()
    assert comp["obligations"]["dp_epsilon"] == EPSILON
    for headers in (own, *(h for _, h in city)):
        a = capi.post(f"/v1/computations/{comp['id']}/approve", headers=headers, json={})
        assert a.status_code == 200, a.text
    done = wait_for(capi, bank, comp["id"], *DONE)
    assert done["state"] == "released", done["error"]
    out = capi.get(f"/v1/computations/{comp['id']}/result", headers=bank).json()["output"]
    assert out["operator"] == "fl.hetero_logreg" and out["dp_epsilon"] == EPSILON
    assert {d: set(w) for d, w in out["weights"].items()} == {
        inputs[0]: {"f0", "f1"},
        inputs[1]: {"g0", "g1"},
        inputs[2]: {"h0", "h1"},
    }


def test_a_mean_over_its_own_platform_held_cohort_grouped_by_its_own_column(
    capi: TestClient, creds: dict[str, Any]
) -> None:
    """Issue 18's joint statistics: another provider's column over the enterprise's cohort.

    The enterprise's customers (phone, tier) are its own, platform-held (one verified legal
    person with the requester); the mean of the bank's `amount` over them, grouped by the
    enterprise's `tier`, is released under the requester's key and nobody sees a member.
    On its own node the same request is refused (the matcher test above).
    """
    data = join_data(67, cohort=160, values=160, common=120)
    net = join_network(capi, creds, data)
    verify_org(capi, creds, net["ent_org"], SAME_ENTITY)
    verify_org(capi, creds, net["tel_org"], SAME_ENTITY)
    verify_org(capi, creds, net["bank_org"], OTHER_ENTITY)
    key = JobKey.generate()
    params = {"columns": ["amount"], "group_by": "tier", "groups": ["A", "B"],
              "clip": [0, 100], "decimals": 2, "join": JOIN}  # fmt: skip
    r = _ask(capi, net, "stats.mean", params, key)
    assert r.status_code == 201, r.text
    done = _run(capi, net, r.json()["id"])
    assert done["state"] == "released", done["error"]
    result = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"]).json()
    opened = key.decrypt(result)
    released = {g["group"]: g for g in opened["groups"]}
    assert {"A", "B"} <= set(released), opened
    for tier in "AB":
        g = released[tier]
        # ε = 0.6 over 3 fields: count noise of scale 5 per share, two shares.
        assert abs(g["rows"] - data.count(tier)) < 20 * 5, (tier, g, data.count(tier))
        assert g["exact"] == {} and 0 <= g["values"]["mean(amount)"] <= 100
    served = json.dumps(result)  # counts and ciphertexts: no member's phone in any form
    assert not any(p[-8:] in served for p in data.common)
