"""The requester is also one of the parties of a vertical computation (issue 18, attack review).

An enterprise that asks for a join or a vertical LR may also hold one of its inputs: the
same legal person registered as a provider organisation too (the operator verified both
with one unified social credit code). Then:

- **It chooses that input's rows** (any custody). The matcher refuses on the *exact*
  intersection (`join-intersection-too-small`), so a dataset of 19 people it knows the
  other provider holds plus one target is refused exactly when the target is not theirs
  (minimum 20): one person's membership per request, whatever ε (the cohort review's F3).
- **On its own node it reads that party's sandbox**: its agreement seed with the other
  party (`mask_seeds`, made by the node process) and every relayed message. Modelled by a
  recorder on the node's sandbox session (`_NodeSideSession.call`) that lets every call
  through and keeps a copy, as the node's operator can.
  - As the **matcher** under its own job key it receives the value party's per-record
    ciphertexts under the requester's key, sealed under a key it derives from that seed:
    the requester reads the other provider's value column record by record, no noise.
  - As the **value party** it receives the cohort's exact size per group (`group_by`): an
    exact histogram of the other provider's column.
  - As the **guest or a host** of `fl.hetero_logreg` its sandbox computes its per-round
    gradient X^T·d and its weights before noise, functions of the other parties' features
    and labels (`sandbox/hetero_lr.py`, who learns what); none of that is DP.

Now refused at the request (403, the `pdx.joins` violation; no computation, no ledger
entry); its own identifiers join as `params.cohort` (counts only). On the code before the
fix every request here was accepted (201): the join tests then run the job and fail
naming what was read.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from crypto.relay import open_relay, relay_key
from exchange.models import Computation
from gateway.platform import Platform
from sandbox import node_side
from sandbox.coordinator import JobPublic
from sandbox.join_params import JoinPlan
from sandbox.join_wire import ct_width, unframe
from sandbox.party_stats import PartyJob
from sandbox.psi import POINT
from tests.helpers.api import assert_problem
from tests.helpers.i17_market import verify_org
from tests.helpers.i18_wiring import (
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
from tests.test_api_computations import wait_for
from tests.test_api_contracts import active_contract

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk"))
from pdx_client.jobkeys import JobKey  # noqa: E402

SAME_ENTITY, OTHER_ENTITY = 7, 8
"""Seeds of the two unified social credit codes the operator verifies."""
DONE = ("released", "failed", "rejected", "review")
OWN_PARTY = "may not be a party of a vertical computation with another provider"
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
    # Held by the platform it still chooses the intersection (the last test): refused too.
    r = _ask(capi, {**net, "cohort": net["platform_cohort"]}, "psi.sum", params, key)
    _assert_refused(r, platform, before)
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


HETERO = {
    "kind": "phone",
    "keys": ["tel", "tel"],
    "label": "label",
    "features": [["f0", "f1"], ["g0", "g1"]],
    "iterations": 3,
}


@pytest.mark.parametrize("own", ["guest", "host"])
def test_the_requester_may_not_run_a_hetero_lr_party(
    capi: TestClient,
    creds: dict[str, Any],
    platform: Platform,
    node_view: list[tuple[dict[str, Any], dict[str, bytes]]],
    own: str,
) -> None:
    """Its own rows choose the alignment, which the guest refuses below the minimum exactly.

    (On its node it would also read its sandbox's gradient per round and its weights
    before noise.) Its dataset: 19 people the other party holds, and a target.
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


# -- the requester's own rows choose the intersection -----------------------------------------


def test_the_requester_may_not_be_the_value_party_it_chooses_the_intersection(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """F3 of the cohort review on a two-provider join, whatever the custody.

    The matcher refuses on the exact intersection (`join-intersection-too-small`). The
    requester's own dataset of 19 people it knows the telecom holds, plus one target, is
    refused exactly when the target is not the telecom's (minimum 20), whatever ε.
    """
    data = join_data(65, cohort=60, values=70, common=40)
    net = join_network(capi, creds, data, declare=False)
    verify_org(capi, creds, net["ent_org"], SAME_ENTITY)
    verify_org(capi, creds, net["bank_org"], SAME_ENTITY)
    declare_key(capi, net["tel"], net["cohort"], "mobile")
    subscribers = sorted(data.tier)
    outsider = next(p for p in sorted(data.amount) if p not in data.tier)
    known, member = subscribers[:19], subscribers[19]
    outcomes = {}
    for target in (member, outsider):
        rows = "".join(f"{p},1.00\n" for p in [*known, target])
        ds = register_pi(capi, net["bank"], "msisdn,amount\n" + rows, f"probe {target}")["id"]
        active_contract(capi, net["ent"], net["bank"], net["bank_org"], [ds], PURPOSE)
        declare_key(capi, net["bank"], ds, "msisdn")
        before = (_computations(platform), ledger_size(platform))
        r = _ask(capi, {**net, "values": ds}, "psi.cardinality", {"join": JOIN}, JobKey.generate())
        if r.status_code == 201:  # the code before the fix
            done = _run(capi, net, r.json()["id"])
            outcomes[target] = (done["state"], (done.get("error") or {}).get("code"))
            continue
        _assert_refused(r, platform, before)
    assert not outcomes, (
        f"accepted; the refusal tells membership: a subscriber's probe {outcomes.get(member)}, "
        f"an outsider's {outcomes.get(outsider)}"
    )
