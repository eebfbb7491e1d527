"""A private join over two providers' own nodes: nothing the platform holds decrypts it.

Separate processes, as `test_party_held_keys`: the real server (`pdx run`), a telecom's
and a bank's PySyft Datasites over HTTP (the cohort on one, the balances on the other),
and a requester with only `sdk/` importable. The requester generates its job key, asks
for `psi.sum` over the two node-held datasets, both providers approve, it decrypts.

On the code before this change the server refused `job_key` on a join (422) and ran
every join under a key it generated and sealed in its own keystore, so the requester
process fails at its request here; with a join over HTTP nodes and no job key it now
refuses the request instead of computing for its own key.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest

from tests.attacks.test_party_held_keys import _large_integers
from tests.helpers.i15_keys import NodeProcess, files_under, search
from tests.helpers.i18_wiring import JOIN, LEGAL_BASIS, PURPOSE, join_data
from tests.helpers.party_cluster import PartyServer
from tests.helpers.s13_hetero_keys import party_key_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory,
    shared_party_server: PartyServer,
    shared_party_nodes: list[NodeProcess],
) -> Iterator[dict[str, Any]]:
    data = join_data(51, cohort=160, values=160, common=120)  # far above the minimum 20
    parties = [
        ("Metro Telecom", data.cohort_csv, "mobile"),
        ("Lakeside Bank", data.values_csv, "msisdn"),
    ]

    def request(inputs: list[str]) -> dict[str, Any]:
        return {
            "operator": "psi.sum",
            "inputs": inputs,
            "params": {"join": JOIN, "value": "amount", "clip": [0, 100], "decimals": 2},
            "purpose": PURPOSE,
            "legal_basis": LEGAL_BASIS,
        }

    tmp = tmp_path_factory.mktemp("join-party-keys")
    with party_key_run(
        tmp, shared_party_server, shared_party_nodes, "Northbridge Insurance", parties, request
    ) as run:
        yield {**run, "data": data}


def test_the_requester_decrypts_a_noisy_join_the_platform_cannot(
    scenario: dict[str, Any],
) -> None:
    facts, data = scenario["facts"], scenario["data"]
    out = facts["result"]["output"]
    assert out["format"] == "pdx-encrypted-aggregate/1" and out["join_operator"] == "psi.sum"
    opened = facts["opened"]
    g = opened["groups"][0]
    assert opened["operator"] == "psi.sum" and g["exact"] == {}
    # ε = 0.6 over 3 fields, Δ = 100: Laplace scale 500 per share, two shares.
    assert abs(g["values"]["sum(amount)"] - float(data.sum_over())) < 20 * 500
    assert abs(opened["intersection_size"] - data.count()) < 20 * 5
    p, q = int(facts["p"]), int(facts["q"])
    needles = {"p": p, "q": q, "lambda": (p - 1) * (q - 1)}
    server = scenario["server"]
    platform_files = list(files_under(server.home, scenario["server_tmp"]))
    assert search(platform_files, needles) == []
    assert search([scenario["server_core"]], needles) == []
    found = search([scenario["requester_core"]], needles)  # control: the search works
    assert any(h.startswith("p: ") for h in found) and any(h.startswith("q: ") for h in found)
    n = int(facts["n"])
    numbers = _large_integers(platform_files)
    assert n in numbers and all(math.gcd(x, n) in (1, n) for x in numbers)
