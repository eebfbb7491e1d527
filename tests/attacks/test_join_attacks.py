"""A requester attacks private joins through the server: membership, undeclared keys, members.

Each attack goes through the real API and the policy; each is refused before any operator
runs, or (differencing) meets DP noise and a budget it cannot reset.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gateway.platform import Platform
from tests.helpers.api import assert_problem
from tests.helpers.i18_psi import phone
from tests.helpers.i18_wiring import (
    JOIN,
    PURPOSE,
    approve_all,
    ask_join,
    declare_key,
    join_data,
    join_network,
    register_pi,
)
from tests.test_api_computations import wait_for
from tests.test_api_contracts import active_contract

DONE = ("released", "failed", "rejected")


def _reasons(r: Any) -> str:
    return " | ".join(r.json().get("reasons", [])) + " " + r.json().get("detail", "")


def test_a_join_on_columns_not_declared_joinable_is_denied(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    data = join_data(21)
    net = join_network(capi, creds, data, declare=False)
    inputs = [net["cohort"], net["values"]]
    # Neither side declared its phone column joinable.
    r = ask_join(capi, net, "psi.cardinality", {"join": JOIN}, inputs)
    assert_problem(r, 403, "forbidden")
    assert "is not declared joinable" in _reasons(r)
    # One side declared it; the other declared nothing.
    declare_key(capi, net["tel"], net["cohort"], "mobile")
    r = ask_join(capi, net, "psi.cardinality", {"join": JOIN}, inputs)
    assert_problem(r, 403)
    assert f"dataset {net['values']} is not declared joinable" in _reasons(r)
    # Declared, but as another kind of identifier than the join asks for.
    r = capi.put(
        f"/v1/datasets/{net['values']}/join-keys",
        headers=net["bank"],
        json={"keys": [{"column": "msisdn", "kind": "email"}]},
    )
    assert r.status_code == 200, r.text
    r = ask_join(capi, net, "psi.sum", {"join": JOIN, "value": "amount", "clip": [0, 1]}, inputs)
    assert_problem(r, 403)
    # A column the provider declared, used as the key of the other side's column name.
    swapped = {**JOIN, "right_key": "amount"}
    r = ask_join(capi, net, "psi.cardinality", {"join": swapped}, inputs)
    assert_problem(r, 403)
    assert platform.compute.sandbox_runs == 0


def test_membership_of_one_identifier_through_a_one_row_dataset_is_refused(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    data = join_data(22)
    net = join_network(capi, creds, data)
    # A provider willing to help registers a "cohort" holding only the target's phone.
    target = sorted(data.common)[0]
    single = register_pi(capi, net["tel"], f"mobile,tier\n{target},A\n", "one subscriber")
    active_contract(capi, net["ent"], net["tel"], net["tel_org"], [single["id"]], PURPOSE)
    declare_key(capi, net["tel"], single["id"], "mobile")
    for op, params in (
        ("psi.cardinality", {"join": JOIN}),
        ("psi.sum", {"join": JOIN, "value": "amount", "clip": [0, 100]}),
        ("stats.count", {"join": JOIN}),
    ):
        r = ask_join(capi, net, op, params, [single["id"], net["values"]])
        problem = assert_problem(r, 403, "forbidden")
        assert problem["obligation"] == "min_intersection", problem
    assert platform.compute.sandbox_runs == 0


def test_the_intersection_list_cannot_be_had(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    data = join_data(23)
    net = join_network(capi, creds, data)
    inputs = [net["cohort"], net["values"]]
    members = sorted(data.common)[:5]
    # One group per identifier would list who is in the intersection.
    r = ask_join(
        capi,
        net,
        "stats.count",
        {"join": JOIN, "group_by": "mobile", "groups": members},
        inputs,
    )
    assert_problem(r, 403)
    # Summing the identifier column itself releases identifiers' digits.
    r = ask_join(capi, net, "psi.sum", {"join": JOIN, "value": "msisdn"}, inputs)
    assert_problem(r, 403)
    # No operator releases members; a parameter asking for them is refused.
    r = ask_join(capi, net, "psi.cardinality", {"join": JOIN, "reveal_members": True}, inputs)
    assert_problem(r, 422)
    r = ask_join(capi, net, "psi.intersection", {"join": JOIN}, inputs)
    assert_problem(r, 422)
    assert platform.compute.sandbox_runs == 0
    # What a permitted join releases holds no identifier.
    r = ask_join(capi, net, "psi.cardinality", {"join": JOIN}, inputs)
    assert r.status_code == 201, r.text
    approve_all(capi, net, r.json()["id"])
    done = wait_for(capi, net["ent"], r.json()["id"], *DONE)
    assert done["state"] == "released", done["error"]
    result = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"])
    assert result.status_code == 200, result.text
    assert not any(p in result.text or p[-8:] in result.text for p in data.common)


def test_differencing_two_joins_meets_noise_and_an_exhausted_budget(
    capi: TestClient, creds: dict[str, Any], platform: Platform
) -> None:
    """Join the bank with a cohort, then with the cohort plus the target: the difference."""
    data = join_data(24)
    net = join_network(capi, creds, data)
    outsider = phone(__import__("random").Random(99))
    with_target = data.cohort_csv + f"{outsider},A\n"
    plus = register_pi(capi, net["tel"], with_target, "subscriber tiers (plus one)")
    active_contract(capi, net["ent"], net["tel"], net["tel_org"], [plus["id"]], PURPOSE)
    declare_key(capi, net["tel"], plus["id"], "mobile")
    outputs = []
    for cohort in (net["cohort"], plus["id"], net["cohort"]):
        r = ask_join(capi, net, "psi.cardinality", {"join": JOIN}, [cohort, net["values"]])
        assert r.status_code == 201, r.text
        approve_all(capi, net, r.json()["id"])
        done = wait_for(capi, net["ent"], r.json()["id"], *DONE)
        assert done["state"] == "released", done["error"]
        out = capi.get(f"/v1/computations/{done['id']}/result", headers=net["ent"]).json()
        outputs.append(out["output"])
    # Every release is noised (no exact count) and charged the grade's ε (general-3: 0.6).
    for out in outputs:
        assert out["dp_epsilon"] == 0.6 and out["groups"][0]["exact"] == {}
    # The requester's share of the bank's lineage (2.0) is spent: a fourth join, whichever
    # cohort, is refused when asked, before anything runs (exchange.budgets).
    r = ask_join(capi, net, "psi.cardinality", {"join": JOIN}, [plus["id"], net["values"]])
    assert_problem(r, 409, "privacy-budget-exceeded")
